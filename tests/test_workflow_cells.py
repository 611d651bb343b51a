"""Many small single-cell images (`prepare.kind: cells`), sharded: raw crops to trained runs, evaluation and
per-image calls in one real Snakemake run. bench/scale.py runs the same at 13,600 crops."""

import json

import pandas as pd
import pytest

from cellclass.demo import synthetic as demo
from cellclass.io.datasets import from_folder
from cellclass.prepare import shards

from conftest import job_counts, nothing_to_do, samples_in, snakemake, write_config

pytestmark = pytest.mark.slow

N_CROPS, PER_JOB = 360, 60  # 6 classes of 60 crops; 8 shards
CONFIG = {
    "prepare": {"kind": "cells", "tile_size": 32, "images_per_job": PER_JOB, "on_bad_image": "skip"},
    "split": {"seed": 0, "test_fraction": 0.25},
    "augment": {"dihedral": True},
    # 8 passes in 4 epochs: the tests check the jobs, tables and calls, not accuracy (the default is 30 passes).
    "train": {"models": ["small"], "runs": 1, "epochs": 4, "budget": {"passes": 8}, "batch_size": 32, "threads": 2},
    "datasets": {"crops": {"path": "data/cells"}},
    "attribution": {"experiments": []},
    "predict": {"new": {"path": "data/new", "experiment": "crops"}},
}
BROKEN = "class2/cell_broken.png"


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cells")
    demo.write_single_cells(folder / "data/cells", N_CROPS, size=32)
    (folder / "data/cells" / BROKEN).write_bytes(b"not a png")
    demo.write_single_cells(folder / "data/new", 12, size=32, seed=9)
    write_config(folder, CONFIG)
    planned = job_counts(snakemake(folder, "-n"))
    snakemake(folder)
    return folder, planned


def test_crops_are_tiled_a_shard_per_job(cells):
    folder, planned = cells
    ids = [s.id for s in from_folder(folder / "data/cells")]
    assignment = shards.assign(ids, PER_JOB)
    assert len(assignment) == 8 and planned["tile"] == 8 and planned["predict_tile"] == 1
    assert sum(planned.values()) < len(ids) / 10  # a job per shard, not per image
    tiled = samples_in(folder / "results/crops/tiles")
    assert sorted(tiled) == sorted(ids)
    assert {sid: path.stem for sid, path in tiled.items()} == {
        sid: s for s, group in assignment.items() for sid in group
    }


def test_the_corrupt_crop_is_skipped_and_listed(cells):
    folder, _ = cells
    empty = pd.read_csv(folder / "results/crops/images_without_tiles.tsv", sep="\t")
    assert empty["sample"].tolist() == ["class2/cell_broken"]
    assert empty["reason"].iloc[0].startswith("skipped: ")
    findings = (folder / "results/evaluation/findings.html").read_text()
    assert "class2/cell_broken" in findings


def test_six_classes_are_trained_and_scored_per_cell(cells):
    folder, _ = cells
    metrics = json.loads((folder / "results/train/crops/small/fold0/seed0/metrics.json").read_text())
    assert metrics["classes"] == [f"class{k}" for k in range(6)] and metrics["input_shape"] == [32, 32, 1]
    split = pd.read_csv(folder / "results/crops/split.tsv", sep="\t")
    train_crops = (split["split"] == "train").sum()
    # Every training crop from every shard, stored once; its rotations and flips are drawn in the input pipeline.
    assert metrics["train_tiles"] == train_crops and metrics["augmented_on_the_fly"] == "dihedral"
    predictions = pd.read_csv(folder / "results/train/crops/small/fold0/seed0/predictions.tsv", sep="\t")
    assert set(predictions["sample"]) == set(split.loc[split["split"] == "test", "sample"])
    summary = pd.read_csv(folder / "results/evaluation/summary.tsv", sep="\t")
    assert {"image", "tile"} <= set(summary["level"])


def test_new_crops_get_a_call_each(cells):
    folder, _ = cells
    images = pd.read_csv(folder / "results/predict/new/images.tsv", sep="\t")
    assert len(images) == 12 and images["call"].isin([f"class{k}" for k in range(6)]).all()
    assert (images["tiles"] == 1).all()


def test_nothing_left_to_do(cells):
    folder, _ = cells
    assert nothing_to_do(snakemake(folder, "-n"))
