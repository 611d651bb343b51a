"""Train/validation/test split decided per group, before any augmentation.

A group's side depends only on (seed, group id): adding images never moves
existing ones, and every tile and rotated copy of one group lands on one side.
"""

import hashlib
import logging
from collections import defaultdict

import pandas as pd

from cellclass.errors import InputError

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


def unit_hash(seed, group):
    """A number in [0, 1) that is a fixed function of (seed, group)."""
    digest = hashlib.sha256(f"{seed}\0{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(samples, *, seed, test_fraction, validation_fraction=0.0, test_only=False):
    """Map each group id to 'train', 'validation' or 'test'.

    A group goes to test when its hash falls below test_fraction, to validation
    when it falls in the next validation_fraction. So that tiny datasets still
    get a usable split, a class with two or more groups but none on the test
    side sends its lowest-hash group to test (and likewise keeps one in train);
    this is the only case where adding an image can move another one.
    """
    groups_of_class = defaultdict(set)
    for sample in samples:
        groups_of_class[sample.cls].add(sample.group)
    if test_only:
        return {g: "test" for g in sorted(set().union(*groups_of_class.values()))}
    sides = {}
    for groups in groups_of_class.values():
        for group in groups:
            u = unit_hash(seed, group)
            sides[group] = "test" if u < test_fraction else "validation" if u < test_fraction + validation_fraction else "train"
    for cls, groups in sorted(groups_of_class.items()):
        ranked = sorted(groups, key=lambda g: unit_hash(seed, g))
        if len(ranked) >= 2 and not any(sides[g] == "test" for g in ranked):
            sides[ranked[0]] = "test"
            log.warning("class %s: no group hashed to test; sending %s to test", cls, ranked[0])
        if len(ranked) >= 2 and not any(sides[g] == "train" for g in ranked):
            sides[ranked[-1]] = "train"
            log.warning("class %s: no group hashed to train; sending %s to train", cls, ranked[-1])
    return dict(sorted(sides.items()))  # a stable order: Snakemake compares it as a rule parameter


def counts(manifest):
    """Tiles per class and split, as a tidy table for the log and for people."""
    table = manifest.groupby(["class", "split"]).size().unstack(fill_value=0)
    return table.reindex(columns=[s for s in SPLITS if s in table.columns], fill_value=0)


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
