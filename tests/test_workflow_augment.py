"""Augmentation in the real workflow: on the fly in training, each tile stored once; only copies that resample
the raw field (augment.angles, augment.translations) are made by the augment rule."""

import copy
import json
import re

import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from conftest import TINY, job_counts, snakemake, write_config

pytestmark = pytest.mark.slow

CONFIG = copy.deepcopy(TINY)
CONFIG["augment"] = {"dihedral": True, "brightness": 0.05, "contrast": 0.1, "scale": 0.05}  # no angles
RUN = "results/train/tiny/small/fold0/seed0"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("augment")
    write_config(folder, CONFIG)
    result = snakemake(folder, f"{RUN}/metrics.json")
    return folder, result.stdout + result.stderr


def test_training_augments_on_the_fly_and_stores_each_tile_once(trained):
    folder, output = trained
    jobs = job_counts(output)
    assert jobs.get("train") == 1 and jobs.get("tile") and "augment" not in jobs
    assert not (folder / "results/tiny/augmented").exists()
    metrics = json.loads((folder / RUN / "metrics.json").read_text())
    assert metrics["augmented_on_the_fly"] == "dihedral, brightness 0.05, contrast 0.1, scale 0.05"
    assert (
        "augmented on the fly: dihedral, brightness 0.05"
        in (folder / "logs/train/tiny/small/fold0/seed0.log").read_text()
    )
    # A pass is the training tiles as stored, each once (no copies; the classes are balanced enough not to repeat).
    split = pd.read_csv(folder / "results/tiny/split.tsv", sep="\t")
    assert metrics["class_balance"] == "none"
    assert metrics["train_tiles"] == ((split["fold"] == 0) & (split["split"] == "train")).sum()
    # Bright puncta stay easy to see when turned, jittered and zoomed: a broken pipeline (tiles scrambled,
    # labels mixed up) stays near 0.5; the margin below what we see is for other CPUs' float order.
    predictions = pd.read_csv(folder / RUN / "predictions.tsv", sep="\t")
    for test_set, tiles in predictions.groupby("test_set"):
        assert balanced_accuracy_score(tiles["true"], tiles["predicted"]) >= 0.75, test_set


def test_a_jitter_change_retrains_without_tiling_or_augmenting(trained):
    folder, _ = trained
    config = copy.deepcopy(CONFIG)
    config["augment"]["brightness"] = 0.1
    write_config(folder, config)
    try:
        jobs = job_counts(snakemake(folder, "-n", f"{RUN}/metrics.json"))
    finally:
        write_config(folder, CONFIG)
    assert jobs == {"train": 1, "score": 1}  # the run retrains and is scored again; no tile or augment job


def training_inputs_by_rule(folder):
    """The rules of the jobs whose outputs the run's train job reads, from Snakemake's DAG (dot)."""
    dot = snakemake(folder, "--dag", "dot", f"{RUN}/metrics.json").stdout
    rules = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)', dot, re.M))
    (train,) = [node for node, rule in rules.items() if rule == "train"]
    return sorted(rules[a] for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M) if b == train)


def test_angles_bring_the_augment_rule_back_and_training_reads_its_copies(trained):
    folder, _ = trained
    assert "augment" not in training_inputs_by_rule(folder)  # as trained: the tile shards
    config = copy.deepcopy(CONFIG)
    config["augment"]["angles"] = [30]
    write_config(folder, config)
    try:
        jobs = job_counts(snakemake(folder, "-n", f"{RUN}/metrics.json"))
        inputs = training_inputs_by_rule(folder)
    finally:
        write_config(folder, CONFIG)
    assert jobs.get("augment", 0) >= 1 and jobs.get("train") == 1 and "tile" not in jobs
    assert inputs.count("augment") == jobs["augment"]  # training reads the rotated copies (and originals) made there
