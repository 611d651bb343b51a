"""Train/validation/test split decided per group, before any augmentation.

With one fold (the default), a group's side depends only on (seed, group id):
adding images never moves existing ones. With k folds (grouped, class-stratified
cross-validation), each group is tested in exactly one fold. Either way every
tile and rotated copy of one group lands on one side of each fold.
"""

import hashlib
import logging
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pandas as pd

from cellclass.io import tilestore
from cellclass.io.atomic import atomic_path
from cellclass.io.errors import InputError

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
            sides[group] = (
                "test" if u < test_fraction else "validation" if u < test_fraction + validation_fraction else "train"
            )
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


def cross_validation(samples, *, seed, folds, validation_fraction=0.0, notes=None):
    """Grouped, class-stratified k-fold sides: a list of `folds` maps group id -> side.

    Within each class, groups ranked by their hash are dealt to folds in turn, so
    every group is tested in exactly one fold and each fold tests about 1/k of each
    class. In fold f the other groups train, except a `validation_fraction` share
    of each class's groups (at least one when two or more are left to train),
    picked by a fold-specific hash. Adding groups can re-deal folds; a sample
    sheet's fixed `split` cannot be combined with folds.
    """
    notes = [] if notes is None else notes
    groups_of_class = defaultdict(set)
    for sample in samples:
        if sample.split:
            raise InputError(
                f"{sample.id}: the sample sheet fixes its split ({sample.split}), but split.folds is {folds}; "
                "cross-validation chooses the test side itself (use split.folds: 1 for a published split)"
            )
        groups_of_class[sample.cls].add(sample.group)
    fold_of = {}
    for cls, groups in sorted(groups_of_class.items()):
        if len(groups) < folds:
            images = sum(s.cls == cls for s in samples)
            raise InputError(
                too_few_groups(
                    cls,
                    images,
                    len(groups),
                    folds,
                    validation_fraction,
                    f"split.folds {folds} tests a group of it in each fold",
                )
            )
        for rank, group in enumerate(sorted(groups, key=lambda g: unit_hash(seed, g))):
            fold_of[group] = rank % folds
    sides = []
    for fold in range(folds):
        side = {}
        for cls, groups in sorted(groups_of_class.items()):
            rest = sorted((g for g in groups if fold_of[g] != fold), key=lambda g: unit_hash(f"{seed}:{fold}", g))
            wanted = round(validation_fraction * len(groups))
            if validation_fraction > 0 and wanted == 0 and len(rest) >= 2:
                wanted = 1
                notes.append(
                    f"fold {fold}, class {cls}: too few groups for a {validation_fraction:.0%} validation share; sent {rest[0]} to validation"
                )
            wanted = min(wanted, len(rest) - 1)
            side.update({g: "test" for g in groups if fold_of[g] == fold})
            side.update({g: "validation" if i < wanted else "train" for i, g in enumerate(rest)})
        sides.append(dict(sorted(side.items())))
    return sides


def fold_sides(samples, *, seed, folds, test_fraction, validation_fraction, test_only=False, notes=None, dataset=""):
    """The sides of every fold: [assign(...)] for one fold (or a test-only dataset), else cross_validation. A
    class that no fold could train on is an InputError naming `dataset`, its groups and what the split needs."""
    try:
        if folds == 1 or test_only:
            return [
                _trainable(
                    samples,
                    assign(
                        samples,
                        seed=seed,
                        test_fraction=test_fraction,
                        validation_fraction=validation_fraction,
                        test_only=test_only,
                        notes=notes,
                    ),
                    validation_fraction,
                    test_only,
                )
            ]
        return cross_validation(samples, seed=seed, folds=folds, validation_fraction=validation_fraction, notes=notes)
    except InputError as error:
        raise InputError(f"dataset {dataset}: {error}" if dataset else str(error)) from None


def _trainable(samples, sides, validation_fraction, test_only):
    """`sides`, once every class of a training dataset has a group on the training side."""
    if test_only:
        return sides
    groups = defaultdict(set)
    for sample in samples:
        groups[sample.cls].add(sample.group)
    for cls, mine in sorted(groups.items()):
        if not any(sides[g] == "train" for g in mine):
            images = sum(s.cls == cls for s in samples)
            away = " and ".join(sorted({sides[g] for g in mine}))
            raise InputError(
                too_few_groups(
                    cls,
                    images,
                    len(mine),
                    1,
                    validation_fraction,
                    f"the split sent {'them' if len(mine) > 1 else 'it'} to the {away} "
                    f"side: no run could learn '{cls}'",
                )
            )
    return sides


def needed_groups(folds, validation_fraction):
    """What the split needs of each class's groups, in words: one to train and one to test (under k folds, k:
    one tested in each fold), and with a validation share enough to leave two to train besides the test ones."""
    if folds == 1:
        words, n, tested = "at least 2 groups of each class: 1 to train, 1 to test", 2, lambda n: 1
    else:
        words, n, tested = (
            f"at least {folds} groups of each class: one tested in each fold while the others train",
            folds,
            lambda n: -(-n // folds),
        )
    base = n
    while validation_fraction > 0 and n - tested(n) < 2:  # a validation group is carved from two or more trained
        n += 1
    if n > base:
        words += f" ({n} with a validation group, split.validation_fraction {validation_fraction:g})"
    return words


def too_few_groups(cls, images, groups, folds, validation_fraction, why):
    """The message for a class with too few groups (images, or a sheet's or plate's groups) for the split."""
    counted = f"{images} image{'s' if images != 1 else ''} " + (
        f"(group{'s' if groups != 1 else ''})" if groups == images else f"in {groups} group{'s' if groups != 1 else ''}"
    )
    return (
        f"class '{cls}' has {counted}, and {why}. The split needs {needed_groups(folds, validation_fraction)}."
        f" Add images of '{cls}'"
        + ("" if folds == 1 else "; or lower split.folds")
        + "; or list the images in a sample sheet (datasets.<name>.sheet: path, class, group, split) whose "
        f"`split` column fixes each group's side (with split.folds 1), e.g. train to train on '{cls}' "
        f"without testing it; or leave '{cls}' out of the dataset (a test_only dataset tests only the "
        "classes a run trained on)"
    )


def tile_sides(tilesets, *, seed, test_fraction, validation_fraction=0.0, notes=None):
    """Tile id -> side of a random split of tiles that ignores images and groups: the leakage check's control.

    It is the grouped split (assign) with every tile its own group, so tiles of one image, and of one well,
    land on both sides: exactly the leak a grouped split prevents. Augmented copies share their original's id
    (TileSet.tile_ids(op=False)) and so its side. Deterministic in (seed, tile id); a class with a few tiles
    still gets a test and a training tile (and a validation tile from three on), as assign does for groups.
    """
    tiles = [
        SimpleNamespace(cls=t.meta["class"], group=tile, split=None) for t in tilesets for tile in t.tile_ids(op=False)
    ]
    return assign(
        tiles, seed=f"{seed}:tiles", test_fraction=test_fraction, validation_fraction=validation_fraction, notes=notes
    )


def image_table(tilesets, sides):
    """One row per raw image and fold: its group, class, side, tile count and, if it gave no tiles, why."""
    rows = []
    for fold, fold_sides_ in enumerate(sides):
        for tileset in tilesets:
            meta = tileset.meta
            reason = "" if len(tileset.rows) else tilestore.empty_reason(tileset)
            rows.append(
                {
                    "fold": fold,
                    "sample": meta["sample"],
                    "group": meta["group"],
                    "class": meta["class"],
                    "split": fold_sides_[meta["group"]],
                    "tiles": len(tileset.rows),
                    "reason": reason,
                }
            )
    return pd.DataFrame(rows, columns=["fold", "sample", "group", "class", "split", "tiles", "reason"])


def counts(images):
    """Per fold, class and split: images, images that gave no tiles, and tiles (a tidy table)."""
    table = (
        images.assign(without=images["tiles"] == 0)
        .groupby(["fold", "class", "split"], sort=True)
        .agg(images=("sample", "size"), images_without_tiles=("without", "sum"), tiles=("tiles", "sum"))
        .reset_index()
    )
    order = {side: i for i, side in enumerate(SPLITS)}
    return table.sort_values(
        ["fold", "class", "split"], key=lambda c: c.map(order) if c.name == "split" else c, ignore_index=True
    )


def check(manifest, dataset, test_only=False):
    """A training dataset needs, in every fold, every class on the train side and tiles on the test side."""
    if test_only:
        if manifest.empty:
            raise InputError(f"dataset {dataset}: no tiles at all (every image skipped or without cells)")
        return
    for fold, in_fold in manifest.groupby("fold"):
        where = f"dataset {dataset}" + (f", fold {fold}" if manifest["fold"].max() > 0 else "")
        for cls, rows in in_fold.groupby("class"):
            if not (rows["split"] == "train").any():
                raise InputError(
                    f"{where}: class '{cls}' has no training tiles: its training images gave none "
                    "(images_without_tiles.tsv says why)"
                )
        if not (in_fold["split"] == "test").any():
            raise InputError(f"{where}: the split has no test tiles; add images or raise split.test_fraction")


def manifest(tilesets, sides):
    """Manifest rows (fold, tile, source image, group, class, split, position) of every tile, per fold."""

    def per_tile(values):
        return np.repeat(np.array(values, dtype=object), [len(t) for t in tilesets])

    tiles = pd.DataFrame(
        {
            "tile": [tile for t in tilesets for tile in t.tile_ids()],
            "sample": per_tile([t.meta["sample"] for t in tilesets]),
            "source": per_tile([";".join(t.meta["files"]) for t in tilesets]),
            "group": per_tile([t.meta["group"] for t in tilesets]),
            "class": per_tile([t.meta["class"] for t in tilesets]),
            "row": np.concatenate([np.asarray(t.rows, int) for t in tilesets] or [np.empty(0, int)]),
            "col": np.concatenate([np.asarray(t.cols, int) for t in tilesets] or [np.empty(0, int)]),
        }
    )
    folds = []
    for fold, by_group in enumerate(sides):
        table = tiles.assign(split=tiles["group"].map(by_group))
        table.insert(0, "fold", fold)
        folds.append(table)
    return pd.concat(folds, ignore_index=True)


def write_split(shard_files, sides, *, dataset, test_only, notes, manifest_path, counts_path, empty_path):
    """The split job: manifest of every tile, counts per class and side, and the images that gave no tiles.

    `sides` holds one group -> side map per fold; every table has a fold column (0 for a single split).
    """
    tilesets = tilestore.load_all(shard_files, tiles=False)
    for note in notes:
        log.warning("dataset %s: %s", dataset, note)
    images = image_table(tilesets, sides)
    rows = manifest(tilesets, sides)
    check(rows, dataset, test_only=test_only)
    table = counts(images)
    empty = images[images["tiles"] == 0].drop(columns="tiles")
    empty.insert(0, "dataset", dataset)
    for row in empty.itertuples():
        if row.fold == 0:
            log.warning("dataset %s: %s gave no tiles: %s", dataset, row.sample, row.reason)
    log.info("dataset %s, per class and split:\n%s", dataset, table.to_string(index=False))
    for frame, path in ((rows, manifest_path), (table, counts_path), (empty, empty_path)):
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, sep="\t", index=False)


def sides_in_fold(manifest_path, fold):
    """Sample id -> side in one fold, from a dataset's split.tsv (images without tiles are not in it)."""
    manifest = pd.read_csv(manifest_path, sep="\t", usecols=["fold", "sample", "split"], dtype={"sample": str})
    in_fold = manifest[manifest["fold"] == int(fold)].drop_duplicates("sample")
    return dict(zip(in_fold["sample"], in_fold["split"]))
