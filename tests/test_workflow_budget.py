"""A training budget through the real workflow: stated before any job, logged with an ETA while a run trains,
and the same model as the epochs it stands for."""

import copy
import html
import json

import numpy as np
import pytest

from conftest import TINY, snakemake, write_config

pytestmark = pytest.mark.slow

CONFIG = copy.deepcopy(TINY)
CONFIG["datasets"].pop("tiny_holdout")
CONFIG["train"].pop("epochs")
CONFIG["train"].pop("epoch_tiles")
CONFIG["train"]["patience"] = None  # every epoch runs, so the log reaches 100%
CONFIG["experiments"] = {
    # 10 passes: the recipe cuts it into 10 epochs of one pass each...
    "by_budget": {"dataset": "tiny", "train": {"budget": {"passes": 10}}},
    # ...which is what these explicit keys say.
    "by_epochs": {"dataset": "tiny", "train": {"epochs": 10, "epoch_passes": 1}},
}
RUN = "results/train/{}/small/fold0/seed0"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("budget")
    write_config(folder, CONFIG)
    dry = snakemake(folder, "-n", *(f"{RUN.format(e)}/metrics.json" for e in CONFIG["experiments"]))
    snakemake(folder, "results/evaluation/findings.html")
    return folder, dry.stdout + dry.stderr


def test_the_dry_run_states_each_runs_work(finished):
    _, dry = finished
    assert "Training plan" in dry
    assert "by_budget: 1 run(s) (small x 1 fold(s) x 1 seed(s)), each on " in dry
    assert "each run trains 10 passes over the training tiles, cut into 10-30 epochs" in dry
    assert "by_epochs: 1 run(s)" in dry and "each run trains 10 epochs of 1 pass(es) over its training tiles" in dry


def test_a_budget_in_passes_trains_the_model_its_epochs_would(finished):
    import keras

    folder, _ = finished
    budget, epochs = (json.loads((folder / RUN.format(e) / "metrics.json").read_text()) for e in CONFIG["experiments"])
    assert budget["work"]["set_by"] == "budget (passes)" and budget["work"]["passes"] == 10
    assert budget["epochs"] == epochs["epochs"] == 10
    assert budget["work"]["tile_steps"] == epochs["work"]["tile_steps"]
    a, b = (keras.saving.load_model(folder / RUN.format(e) / "model.keras") for e in CONFIG["experiments"])
    for left, right in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(left, right)
    assert (folder / RUN.format("by_budget") / "predictions.tsv").read_bytes() == (
        folder / RUN.format("by_epochs") / "predictions.tsv"
    ).read_bytes()


def test_the_log_gives_progress_with_an_eta(finished):
    folder, _ = finished
    log = (folder / "logs/train/by_budget/small/fold0/seed0.log").read_text()
    assert "work set by budget (passes) (10 passes over the training tiles): 10 epochs of" in log
    progress = [line for line in log.splitlines() if "% : step" in line.replace("%:", "% :")]
    # A line every 5% of the steps (20 and the last), not one per batch.
    assert 15 <= len(progress) <= 22
    assert "training 100%" in progress[-1] and "about 0 s to go" in progress[-1]
    assert all("tiles/s" in line and "so far, about" in line for line in progress)


def test_the_findings_state_each_runs_work(finished):
    folder, _ = finished
    findings = html.unescape((folder / "results/evaluation/findings.html").read_text())
    metrics = json.loads((folder / RUN.format("by_budget") / "metrics.json").read_text())
    steps = metrics["work"]["tile_steps"]
    assert (
        f"Each run's planned work: {steps} tile-steps (10 passes over its training tiles), set by budget "
        "(passes); training took" in findings
    )
    assert "epochs x epoch length (the budget is not used)" in findings
