"""A real Snakemake run with grouped k-fold cross-validation (a dataset's split.folds): every group is tested once."""

import json

import pandas as pd
import pytest

from conftest import samples_in, snakemake, write_config

pytestmark = pytest.mark.slow

FOLDS = 2


@pytest.fixture(scope="module")
def folded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("folds")
    demo = {"pattern": "aggregates", "size": 256, "cells_per_field": 30}
    write_config(
        folder,
        {
            "prepare": {"tile_size": 32},
            "split": {"seed": 0, "validation_fraction": 0.25},
            "augment": {"dihedral": True, "angles": [90]},  # copies resampled from the field: an augment job
            "train": {"models": ["small"], "runs": 1, "epochs": 2, "epoch_tiles": 320, "batch_size": 16, "threads": 1},
            "datasets": {
                "cv": {"demo": {**demo, "fields_per_class": 4, "seed": 1}, "split": {"folds": FOLDS}},
                "cv_holdout": {"demo": {**demo, "fields_per_class": 1, "seed": 2}, "test_only": True},
            },
            "experiments": {"cv": {"dataset": "cv", "test_sets": ["cv_holdout"]}},
            "attribution": {"tiles_per_class": 3, "methods": ["gradient_x_input"]},
            "predict": {"new": {"demo": {**demo, "fields_per_class": 1, "seed": 3}, "experiment": "cv"}},
            "evaluation": {"bootstrap_resamples": 199},
        },
    )
    snakemake(folder)
    return folder


def test_every_group_is_tested_in_exactly_one_fold(folded):
    split = pd.read_csv(folded / "results/cv/split.tsv", sep="\t")
    assert sorted(split["fold"].unique()) == list(range(FOLDS))
    sides = split.groupby(["fold", "group"])["split"].first().unstack("fold")
    assert ((sides == "test").sum(axis=1) == 1).all() and len(sides) == 8
    assert (sides == "validation").sum().tolist() == [2] * FOLDS  # one group per class and fold
    counts = pd.read_csv(folded / "results/cv/split_counts.tsv", sep="\t")
    assert sorted(counts["fold"].unique()) == list(range(FOLDS))
    # Resampled copies are made of exactly the images that train in some fold.
    trained = set(split.loc[split["split"] == "train", "sample"])
    augmented = set(samples_in(folded / "results/cv/augmented"))
    assert augmented == trained and len(trained) == 4  # per class and fold: 2 test, 1 validation, 1 train


def test_each_fold_is_a_run_scored_on_its_own_test_groups(folded):
    split = pd.read_csv(folded / "results/cv/split.tsv", sep="\t")
    tested = set()
    for fold in range(FOLDS):
        run = folded / f"results/train/cv/small/fold{fold}/seed0"
        metrics = json.loads((run / "metrics.json").read_text())
        assert (metrics["fold"], metrics["seed"]) == (fold, 0)
        tiles = pd.read_csv(run / "predictions.tsv", sep="\t")
        own = set(tiles.loc[tiles["test_set"] == "cv", "group"])
        assert own == set(split.loc[(split["fold"] == fold) & (split["split"] == "test"), "group"])
        assert not own & tested
        tested |= own
        assert set(tiles["test_set"]) == {"cv", "cv_holdout"}
    assert tested == set(split["group"])


def test_the_summary_pools_the_folds_and_says_so(folded):
    evaluation = folded / "results/evaluation"
    summary = pd.read_csv(evaluation / "summary.tsv", sep="\t")
    own = summary[
        (summary["test_set"] == "cv") & (summary["metric"] == "balanced_accuracy") & (summary["level"] == "tile")
    ].iloc[0]
    assert (own["n_runs"], own["n_folds"], own["n_groups"]) == (FOLDS, FOLDS, 8)
    runs = pd.read_csv(evaluation / "runs.tsv", sep="\t")
    assert sorted(runs["fold"].unique()) == list(range(FOLDS))
    page = (evaluation / "findings.html").read_text()
    assert f"over 8 test groups and {FOLDS} runs ({FOLDS} folds × 1 seed(s))" in page


def test_attribution_and_prediction_cover_every_fold(folded):
    for fold in range(FOLDS):
        assert (folded / f"results/attribution/cv/small/fold{fold}/seed0/scores.tsv").exists()
    enrichment = pd.read_csv(folded / "results/attribution/enrichment.tsv", sep="\t")
    assert sorted(enrichment["fold"].unique()) == list(range(FOLDS))
    images = pd.read_csv(folded / "results/predict/new/images.tsv", sep="\t")
    assert len(images) == 2
