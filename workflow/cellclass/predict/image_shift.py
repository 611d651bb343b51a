"""New images unlike the training images before any network sees them: their quality measures (cellclass.prepare.qc)
against the training images'.

A network that learned "puncta or not" has no feature for magnification, stain
strength or focus, so its own novelty score cannot see those shifts; the raw
images' measures can. An image more than qc.LIMIT robust spreads from the
training images' median on any measure is unlike them, with the measures named.
"""

import logging

import numpy as np
import pandas as pd

from cellclass.io import tilestore
from cellclass.prepare import qc
from cellclass.share import package

log = logging.getLogger(__name__)

SHIFTED = "abstain (image unlike the training images)"


def training_table(reference):
    """The training images' QC table: a dataset's qc.parquet, or the one a model package carries (None if it
    carries none: exported before quality measures)."""
    if package.is_package(reference):
        return package.read_quality(reference)
    return pd.read_parquet(reference)


def compare(training, new):
    """`new` with each image's largest robust distance from the training images (qc_distance) and the measures
    beyond the limit in words (unlike, '' where none), and a note when no comparison could be made."""
    if training is None:
        return new.assign(qc_distance=np.nan, unlike=""), (
            "the model package carries no quality measures of its training images (export it again to get them)"
        )
    reference = qc.Reference(training)
    if not reference.usable:
        return new.assign(qc_distance=np.nan, unlike=""), (
            f"the training set has {reference.images} image(s), too few to fit quality ranges ({qc.MIN_IMAGES} "
            "needed): new images were not checked against them"
        )
    return new.join(reference.judge(new)), ""


def report(tile_files, reference, table_path, figure_paths, name):
    """A prediction set's qc.parquet (each image's measures, distance and the measures that moved) and its figure
    beside the training images; returns the table and the note of compare."""
    from cellclass.prepare import qc_figures

    training = training_table(reference)
    judged, note = compare(training, qc.table_of(tilestore.load_all(tile_files, tiles=False)))
    if note:
        log.warning("prediction set %s: %s", name, note)
    for row in judged[judged["unlike"] != ""].itertuples():
        log.warning("prediction set %s: image %s is unlike the training images: %s", name, row.image, row.unlike)
    qc.write_table(judged.assign(qc_check=note or "compared with the training images"), table_path)
    tables = {"training": training, name: judged} if training is not None else {name: judged}
    qc_figures.quality_figure(tables, figure_paths, f"image quality of {name} against its training images")
    return judged, note


def shifted_images(table, on):
    """Image id -> the measures that moved, for the images unlike the training images (none when `on` is False:
    abstain.image_shift off names them but still calls them)."""
    if table is None or not on:
        return {}
    moved = table[table["unlike"] != ""]
    return dict(zip(moved["image"], moved["unlike"]))
