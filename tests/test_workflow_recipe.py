"""The training recipe through the real workflow: the epoch kept is chosen on the validation side, recorded,
saved as the model, and marked on the training curves."""

import copy
import json

import numpy as np
import pandas as pd
import pytest

from conftest import TINY, snakemake, write_config

pytestmark = pytest.mark.slow

CONFIG = copy.deepcopy(TINY)
CONFIG["datasets"].pop("tiny_holdout")
CONFIG["experiments"] = {"tiny": {"dataset": "tiny"}}
# Validation accuracy plateaus within a few epochs on these bright puncta, and only a strictly better epoch
# replaces the best: the kept epoch is then usually not the last, and patience 2 ends the run early.
CONFIG["train"].update(epochs=6, patience=2, monitor="validation_accuracy", epoch_tiles=400)
RUN = "results/train/tiny/small/fold0/seed0"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recipe")
    write_config(folder, CONFIG)
    snakemake(folder, "results/figures/training_curves.svg", "results/evaluation/findings.html")
    return folder


def test_the_kept_epoch_is_the_best_on_validation_and_is_recorded(finished):
    metrics = json.loads((finished / RUN / "metrics.json").read_text())
    history = pd.read_csv(finished / RUN / "history.csv")
    accuracy = history["validation_accuracy"]
    best = int(history.loc[accuracy.idxmax(), "epoch"])  # idxmax: the first of equals, as Keras keeps it
    assert metrics["epoch_selection"] == "best" and metrics["kept_epoch"] == best
    assert history["kept"].tolist() == [e == best for e in history["epoch"]]
    assert metrics["monitor_at_kept"] == pytest.approx(accuracy.max())
    if metrics["stopped_epoch"] is not None:
        assert metrics["stopped_epoch"] == best + 2 == history["epoch"].max()
    else:
        assert history["epoch"].max() == 6
    assert metrics["recipe"]["name"] == "modern" and metrics["recipe"]["overrides"] == {"epochs": 6, "patience": 2}
    runs = pd.read_csv(finished / "results/evaluation/runs.tsv", sep="\t")
    assert set(runs["kept_epoch"]) == {best}


def test_the_saved_model_is_the_kept_epochs(finished):
    """Its validation loss (label-smoothed, as Keras logs it) is the history's at the kept epoch."""
    import keras

    from cellclass.learn import inference, training
    from cellclass.learn import validation as uses

    history = pd.read_csv(finished / RUN / "history.csv").set_index("epoch")
    metrics = json.loads((finished / RUN / "metrics.json").read_text())
    shards = sorted(str(p) for p in (finished / "results/tiny/tiles").glob("*.npz"))
    sides = training.run_inputs(
        dataset="tiny",
        fold=0,
        shards=shards,
        train_shards=shards,
        manifest=finished / "results/tiny/split.tsv",
        other_test_sets={},
    )
    validation = uses.split(sides["validation"], chooses=True).epoch  # the part the curves score and choose on
    assert validation
    model = keras.saving.load_model(finished / RUN / "model.keras")
    p = inference.probabilities(model, np.concatenate([np.asarray(t.tiles) for t in validation]))
    truth = np.concatenate([np.full(len(t), metrics["classes"].index(t.meta["class"])) for t in validation])
    one_hot = np.eye(2, dtype="float32")[truth]
    loss = float(keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(one_hot, p))
    kept = metrics["kept_epoch"]
    assert loss == pytest.approx(history.loc[kept, "validation_loss"], rel=1e-3)
    assert float(np.mean(p.argmax(axis=1) == truth)) == pytest.approx(history.loc[kept, "validation_accuracy"])
    others = history.drop(index=kept)["validation_loss"]
    if len(others):  # had the last epoch been saved instead, this would tell
        assert (others - loss).abs().min() > 1e-3 * loss


def test_the_curves_mark_it_and_the_findings_say_it(finished):
    svg = (finished / "results/figures/training_curves.svg").read_text()
    assert svg.count('id="kept_epoch') == 2  # both panels: training and validation
    findings = (finished / "results/evaluation/findings.html").read_text()
    assert "tiny/small: trained with the modern recipe: AdamW (weight decay 0.05)" in findings
    assert "kept the epoch of best validation accuracy on the validation side (never the test side)" in findings
