"""Train/validation/test split decided per group, before any augmentation.

A group's side depends only on (seed, group id): adding images never moves
existing ones, and every tile and rotated copy of one group lands on one side.
"""

import hashlib
import logging
from collections import defaultdict

import pandas as pd

from cellclass import tilestore
from cellclass.atomic import atomic_path
from cellclass.errors import InputError

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


def unit_hash(seed, group):
    """A number in [0, 1) that is a fixed function of (seed, group)."""
    digest = hashlib.sha256(f"{seed}\0{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(samples, *, seed, test_fraction, validation_fraction=0.0, test_only=False, notes=None):
    """Map each group id to 'train', 'validation' or 'test'.

    A group goes to test when its hash falls below test_fraction, to validation
    when it falls in the next validation_fraction. A sample sheet's `split`
    column fixes a group's side instead (a published split). So that small
    datasets still get a usable split, a class with two or more hashed groups
    but none on the test side sends its lowest-hash group to test and keeps one
    in train, and a class with three or more sends one to validation; this is
    the only case where adding an image can move another one. Such moves are
    appended to `notes` (planning runs on every Snakemake call, so the split
    job, not the planner, reports them).
    """
    notes = [] if notes is None else notes
    groups_of_class = defaultdict(set)
    fixed = {}
    for sample in samples:
        groups_of_class[sample.cls].add(sample.group)
        if sample.split:
            fixed[sample.group] = sample.split
    if test_only:
        return {g: "test" for g in sorted(set().union(*groups_of_class.values()))}
    sides = dict(fixed)
    for groups in groups_of_class.values():
        for group in groups - fixed.keys():
            u = unit_hash(seed, group)
            sides[group] = "test" if u < test_fraction else "validation" if u < test_fraction + validation_fraction else "train"
    for cls, groups in sorted(groups_of_class.items()):
        ranked = sorted(groups - fixed.keys(), key=lambda g: unit_hash(seed, g))
        if len(ranked) >= 2 and not any(sides[g] == "test" for g in groups):
            sides[ranked[0]] = "test"
            notes.append(f"class {cls}: no group hashed to test; sent {ranked[0]} to test")
        if len(ranked) >= 2 and not any(sides[g] == "train" for g in groups):
            sides[ranked[-1]] = "train"
            notes.append(f"class {cls}: no group hashed to train; sent {ranked[-1]} to train")
        spare = [g for g in ranked if sides[g] == "train"]
        if validation_fraction > 0 and len(spare) >= 2 and not any(sides[g] == "validation" for g in groups):
            sides[spare[0]] = "validation"
            notes.append(f"class {cls}: no group hashed to validation; sent {spare[0]} to validation")
    return dict(sorted(sides.items()))  # a stable order: Snakemake compares it as a rule parameter


def image_table(tilesets, sides):
    """One row per raw image: its group, class, side, tile count and, if it gave no tiles, why."""
    rows = []
    for tileset in tilesets:
        meta = tileset.meta
        reason = "" if len(tileset.rows) else tilestore.empty_reason(tileset)
        rows.append(
            {
                "sample": meta["sample"],
                "group": meta["group"],
                "class": meta["class"],
                "split": sides[meta["group"]],
                "tiles": len(tileset.rows),
                "reason": reason,
            }
        )
    return pd.DataFrame(rows, columns=["sample", "group", "class", "split", "tiles", "reason"])


def counts(images):
    """Per class and split: images, images that gave no tiles, and tiles (a tidy table)."""
    table = (
        images.assign(without=images["tiles"] == 0)
        .groupby(["class", "split"], sort=True)
        .agg(images=("sample", "size"), images_without_tiles=("without", "sum"), tiles=("tiles", "sum"))
        .reset_index()
    )
    order = {side: i for i, side in enumerate(SPLITS)}
    return table.sort_values(["class", "split"], key=lambda c: c.map(order) if c.name == "split" else c, ignore_index=True)


def check(manifest, dataset, test_only=False):
    """A training dataset needs every class on the train side and tiles on the test side."""
    if test_only:
        if manifest.empty:
            raise InputError(f"dataset {dataset}: no tiles at all (every image skipped or without cells)")
        return
    for cls, rows in manifest.groupby("class"):
        if not (rows["split"] == "train").any():
            raise InputError(f"dataset {dataset}: class '{cls}' has no training tiles")
    if not (manifest["split"] == "test").any():
        raise InputError(f"dataset {dataset}: the split has no test tiles; add images or raise split.test_fraction")


def manifest_rows(tileset, side):
    """Manifest rows (tile, source image, group, class, split) of one tile file."""
    meta = tileset.meta
    return pd.DataFrame(
        {
            "tile": tileset.tile_ids(),
            "sample": meta["sample"],
            "source": ";".join(meta["files"]),
            "group": meta["group"],
            "class": meta["class"],
            "split": side,
            "row": tileset.rows,
            "col": tileset.cols,
        }
    )


def write_split(tile_files, sides, *, dataset, test_only, notes, manifest_path, counts_path, empty_path):
    """The split job: manifest of every tile, counts per class and side, and the images that gave no tiles."""
    tilesets = [tilestore.load(path, tiles=False) for path in tile_files]
    for note in notes:
        log.warning("dataset %s: %s", dataset, note)
    images = image_table(tilesets, sides)
    manifest = pd.concat([manifest_rows(t, sides[t.meta["group"]]) for t in tilesets], ignore_index=True)
    check(manifest, dataset, test_only=test_only)
    table = counts(images)
    empty = images[images["tiles"] == 0].drop(columns="tiles")
    empty.insert(0, "dataset", dataset)
    for row in empty.itertuples():
        log.warning("dataset %s: %s (%s side) gave no tiles: %s", dataset, row.sample, row.split, row.reason)
    log.info("dataset %s, per class and split:\n%s", dataset, table.to_string(index=False))
    for frame, path in ((manifest, manifest_path), (table, counts_path), (empty, empty_path)):
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, sep="\t", index=False)
