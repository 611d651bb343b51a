"""The labelling round trip on a tiny demo: a filled label-next sheet adds cells to training, never to a test side,
leaves their images unscored by the runs that trained on them, and reruns only what it must."""

import copy
import json

import pandas as pd
import pytest

from cellclass.io import tilestore
from cellclass.predict import out_of_fold
from cellclass.prepare.extra_labels import PREFIX

from conftest import TINY, job_counts, nothing_to_do, snakemake, write_config

pytestmark = pytest.mark.slow

NEW = {"demo": {"pattern": "aggregates", "fields_per_class": 1, "seed": 5, "size": 256, "cells_per_field": 30}}
# Two short trainings (before and after the sheet), nothing explained: the round trip, not the accuracy, is tested.
BEFORE = {
    **TINY,
    "train": {**TINY["train"], "epochs": 2, "epoch_tiles": 400},
    "predict": {"tiny_new": {**NEW, "experiment": "tiny"}},
    "attribution": {"experiments": []},
}
AFTER = copy.deepcopy(BEFORE)
AFTER["datasets"]["tiny"]["extra_labels"] = "label_next.tsv"
LABELLED, SKIPPED = 6, 2  # cells per new image the user labels, and leaves empty
RERUN_NEVER = {"demo_field", "tile", "split", "augment", "segmentation_check"}


def fill_sheet(folder):
    """The sheet a user returns: the most uncertain cells of each new image, as label-next would rank them, in
    the contract's columns, `class` filled from the generator's truth (the image's known class), a few left
    empty."""
    tiles = pd.read_csv(folder / "results/predict/tiny_new/tiles.tsv", sep="\t")
    images = pd.read_csv(folder / "results/predict/tiny_new/images.tsv", sep="\t").set_index("image")
    p = [c for c in tiles if c.startswith("p_")]
    tiles["uncertainty"] = 1 - tiles[p].max(axis=1)
    rows = []
    for image, cells in tiles.groupby("image"):
        chosen = cells.sort_values("uncertainty", ascending=False).head(LABELLED + SKIPPED)
        for i, cell in enumerate(chosen.itertuples()):
            rows.append(
                {
                    "tile": cell.tile,
                    "image": image,
                    "files": images.loc[image, "files"],
                    "row": cell.row,
                    "col": cell.col,
                    "label": "",
                    "group": cell.group,
                    **{c: getattr(cell, c) for c in p},
                    "call": cell.call,
                    "novelty": cell.novelty,
                    "rank": len(rows) + 1,
                    "reason": "uncertain",
                    "class": images.loc[image, "known_class"] if i < LABELLED else "",
                }
            )
    sheet = pd.DataFrame(rows)
    sheet.to_csv(folder / "label_next.tsv", sep="\t", index=False)
    return sheet


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("roundtrip")
    write_config(folder, BEFORE)
    snakemake(folder)
    before = {
        "split": (folder / "results/tiny/split.tsv").read_bytes(),
        "metrics": json.loads((folder / "results/train/tiny/small/fold0/seed0/metrics.json").read_text()),
    }
    sheet = fill_sheet(folder)
    write_config(folder, AFTER)
    jobs = job_counts(snakemake(folder, "-n"))
    snakemake(folder)
    return folder, sheet, before, jobs


def test_only_the_extra_tiles_and_what_trains_on_them_rerun(round_trip):
    folder, _, before, jobs = round_trip
    assert jobs.get("extra_tiles") == 1 and jobs.get("train") == 1 and jobs.get("evaluate") == 1, jobs
    assert not RERUN_NEVER & set(jobs), jobs
    # The split of the dataset's own images does not move.
    assert (folder / "results/tiny/split.tsv").read_bytes() == before["split"]
    assert nothing_to_do(snakemake(folder, "-n"))


def test_the_labelled_cells_train_and_are_never_tested(round_trip):
    folder, sheet, before, _ = round_trip
    filled = sheet[sheet["class"].astype(str).str.len() > 0]
    extra = tilestore.load(folder / "results/tiny/extra/tiles.npz", tiles=False)
    stored = {tile: t.meta["class"] for t in extra for tile in t.tile_ids()}
    assert stored == {PREFIX + tile: cls for tile, cls in zip(filled["tile"], filled["class"])}
    assert all(t.meta["group"] == t.meta["sample"] and t.meta["sample"].startswith(PREFIX) for t in extra)

    metrics = json.loads((folder / "results/train/tiny/small/fold0/seed0/metrics.json").read_text())
    per_class = filled["class"].value_counts().to_dict()
    assert metrics["extra_tiles"] == per_class
    assert metrics["extra_labels"] == [str(folder / "label_next.tsv")]
    assert before["metrics"]["extra_tiles"] == {c: 0 for c in per_class}
    for cls, n in per_class.items():
        assert metrics["train_tiles_per_class"][cls] == before["metrics"]["train_tiles_per_class"][cls] + n

    predictions = pd.read_csv(folder / "results/train/tiny/small/fold0/seed0/predictions.tsv", sep="\t")
    assert not predictions["sample"].str.startswith(PREFIX).any() and not predictions["tile"].isin(stored).any()
    findings = (folder / "results/evaluation/findings.html").read_text()
    assert f"{len(filled)} extra labelled tiles" in findings and "none is in any test side" in findings


def test_a_predicted_image_with_labelled_cells_is_scored_by_no_run_that_trained_on_them(round_trip):
    folder, sheet, _, _ = round_trip
    images = pd.read_csv(folder / "results/predict/tiny_new/images.tsv", sep="\t").set_index("image")
    labelled = set(sheet.loc[sheet["class"].astype(str).str.len() > 0, "image"])
    # Every image of the set had labelled cells here, and every run trained on them: none is scored.
    assert labelled and (images.loc[sorted(labelled), "scored_by"] == out_of_fold.EVERY_RUN_SAW_ITS_CELLS).all()
    assert (images.loc[sorted(labelled), "call"] == out_of_fold.EVERY_RUN_SAW_ITS_CELLS).all()


def test_a_class_the_experiment_lacks_stops_the_run_naming_sheet_line_and_classes(round_trip):
    folder, sheet, _, _ = round_trip
    bad = sheet.copy()
    bad.loc[3, "class"] = "mitosis"
    bad.to_csv(folder / "bad_sheet.tsv", sep="\t", index=False)
    config = copy.deepcopy(AFTER)
    config["datasets"]["tiny"]["extra_labels"] = "bad_sheet.tsv"
    write_config(folder, config)
    try:
        result = snakemake(folder, "-n", check=False)
    finally:
        write_config(folder, AFTER)
    assert result.returncode != 0
    assert "bad_sheet.tsv, line 5: class 'mitosis' is not a class of the experiment (aggregates, control)" in (
        result.stdout + result.stderr
    )
