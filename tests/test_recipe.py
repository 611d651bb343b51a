"""The training recipe: presets and overrides, the learning-rate schedule, and the epoch a run keeps."""

import json

import numpy as np
import pandas as pd
import pytest

from cellclass.config import validate
from cellclass.learn import recipe

from conftest import train_and_score

DEMO = {"demo": {"pattern": "aggregates"}}
# What every run trained with before recipes existed: the schema's defaults then, and the code's fixed choices
# (the model's own optimizer at its default rate held constant, plain cross-entropy, the last epoch kept).
BEFORE_RECIPES = {
    "optimizer": None,
    "learning_rate": None,
    "epochs": 9,
    "schedule": "constant",
    "warmup_epochs": 0,
    "weight_decay": 0,
    "label_smoothing": 0,
    "patience": None,
    "keep_epoch": "last",
}


def train_settings(top=None, own=None):
    config = validate(
        {"train": top or {}, "datasets": {"d": DEMO}, "experiments": {"e": {"dataset": "d", "train": own or {}}}}
    )
    return config["experiments"]["e"]["train"]


def test_the_article_recipe_is_the_set_up_before_recipes():
    train = train_settings({"recipe": "article"})
    assert {key: train[key] for key in BEFORE_RECIPES} == BEFORE_RECIPES
    assert recipe.overrides(train) == {}
    assert recipe.loss(train["label_smoothing"]) == "categorical_crossentropy"  # the string compiled before
    rate = recipe.learning_rate("constant", 1e-3, epochs=9, steps_per_epoch=20, warmup_epochs=0)
    assert rate == 1e-3 and isinstance(rate, float)
    # Its epochs held every stored rotated or flipped copy: one pass of every tile in each of its 8 views.
    assert recipe.views(train) == "all" and recipe.epoch_passes(train) == 1
    unaugmented = train_settings({"recipe": "article", "augmented": False})
    assert recipe.views(unaugmented) == "random" and recipe.epoch_passes(unaugmented) == 1
    # Drawing one view per tile and batch, 8 passes show each tile in its 8 views on average.
    assert recipe.views(train_settings()) == "random" and recipe.epoch_passes(train_settings()) == 8
    assert recipe.epoch_passes(train_settings({"epoch_passes": 3})) == 3


def test_modern_is_the_default_and_a_set_key_overrides_either_preset():
    modern = train_settings()
    assert modern["recipe"] == "modern"
    assert {k: modern[k] for k in ("optimizer", "schedule", "keep_epoch", "monitor")} == {
        "optimizer": "adamw",
        "schedule": "cosine",
        "keep_epoch": "best",
        "monitor": "validation_loss",
    }
    assert modern["label_smoothing"] == 0.1 and modern["weight_decay"] == 0.05 and modern["patience"] == 5
    # Recipe at the top, one key in the experiment, and the other way round: the key set wins either way.
    article = train_settings({"recipe": "article"}, {"learning_rate": 3e-4})
    assert article["learning_rate"] == 3e-4 and article["schedule"] == "constant" and article["epochs"] == 9
    assert recipe.overrides(article) == {"learning_rate": 3e-4}
    mixed = train_settings({"epochs": 4, "optimizer": None}, {"recipe": "modern"})
    assert mixed["epochs"] == 4 and mixed["optimizer"] is None and mixed["schedule"] == "cosine"
    assert recipe.overrides(mixed) == {"epochs": 4, "optimizer": None}


@pytest.mark.parametrize(
    "bad, named",
    [
        ({"recipe": "fast"}, "recipe"),
        ({"schedule": "step"}, "schedule"),
        ({"label_smoothing": 1}, "label_smoothing"),
        ({"patience": 0}, "patience"),
    ],
)
def test_bad_recipe_keys_are_named(bad, named):
    from cellclass.io.errors import InputError

    with pytest.raises(InputError, match=rf"\btrain\.{named}:"):
        train_settings(bad)


def test_cosine_warms_up_linearly_then_decays_to_zero():
    schedule = recipe.learning_rate("cosine", 1e-3, epochs=5, steps_per_epoch=10, warmup_epochs=1)
    rate = {step: float(schedule(step)) for step in (0, 5, 10, 30, 50, 80)}
    assert rate[0] == 0 and rate[5] == pytest.approx(5e-4) and rate[10] == pytest.approx(1e-3)
    assert rate[30] == pytest.approx(5e-4, rel=1e-5)  # halfway through the 40 decay steps
    assert rate[50] == pytest.approx(0, abs=1e-9) and rate[80] == pytest.approx(0, abs=1e-9)
    constant = recipe.learning_rate("constant", 1e-3, epochs=5, steps_per_epoch=10, warmup_epochs=0.5)
    assert float(constant(0)) == 0 and [float(constant(s)) for s in (5, 20, 49)] == pytest.approx([1e-3] * 3)


def test_optimizers_and_loss():
    import keras

    from cellclass.learn import models

    adam = models.make_optimizer("adam")
    assert type(adam) is keras.optimizers.Adam and adam.weight_decay is None
    assert float(adam.learning_rate) == pytest.approx(1e-3)
    adamw = models.make_optimizer("adamw", 2e-3, weight_decay=0.05)
    assert type(adamw) is keras.optimizers.AdamW and adamw.weight_decay == 0.05
    assert models.make_optimizer("sgd", weight_decay=0.01).weight_decay == 0.01
    smoothed = recipe.loss(0.1)
    one_hot = np.array([[1.0, 0.0]], dtype="float32")
    # Against targets (0.95, 0.05) a confident right call still costs: that is the smoothing.
    assert float(smoothed(one_hot, np.array([[0.999, 0.001]], dtype="float32"))) > 0.1


def test_the_recipe_in_words():
    used = {
        "name": "modern",
        **recipe.PRESETS["modern"],
        "optimizer": "adamw",
        "monitor": "validation_loss",
        "epochs": 9,
        "overrides": {"epochs": 9},
    }
    text = recipe.describe(used)
    assert text.startswith("the modern recipe: AdamW (weight decay 0.05), learning rate 0.001 decaying on a cosine")
    assert "label smoothing 0.1" in text and "stopping after 5 epochs" in text
    assert "the epoch of best validation loss kept" in text and text.endswith("(set in the config: epochs 9)")


@pytest.mark.slow
def test_the_best_epoch_is_kept_and_recorded(tmp_path):
    """Validation labels swapped: the better the network learns the task, the worse its validation loss, so the
    best epoch comes early and early stopping ends the run `patience` epochs later; the saved model is that
    epoch's, not the last."""
    import keras

    from cellclass.learn import inference

    from test_training import CLASSES, identity, options, write_images

    train = write_images(tmp_path, 8, seed=1, prefix="train")
    swapped = write_images(tmp_path, 2, seed=3, prefix="val")
    for tileset in swapped:
        tileset.meta["class"] = CLASSES[1 - CLASSES.index(tileset.meta["class"])]
    test = write_images(tmp_path, 2, seed=2, prefix="test")
    opts = options(models=["small"], epochs=8, patience=2, label_smoothing=0, batch_size=16, threads=1)
    metrics = train_and_score(
        identity=identity(),
        classes=CLASSES,
        train=train,
        train_eval=train,
        validation=swapped,
        test_sets={"d": test},
        out_dir=tmp_path / "run",
        options=opts,
    )
    history = pd.read_csv(tmp_path / "run/history.csv")
    best = int(history.loc[history["validation_loss"].idxmin(), "epoch"])
    assert metrics["kept_epoch"] == best and metrics["epoch_selection"] == "best"
    assert metrics["stopped_epoch"] == best + 2 == history["epoch"].max() < 8
    assert history["kept"].tolist() == [e == best for e in history["epoch"]]
    assert metrics["monitor_at_kept"] == pytest.approx(history["validation_loss"].min())
    recorded = json.loads((tmp_path / "run/metrics.json").read_text())["recipe"]
    assert recorded["name"] == "modern" and recorded["overrides"] == {"epochs": 8, "patience": 2, "label_smoothing": 0}
    # The saved model scores the validation tiles as the kept epoch did, and unlike the last.
    model = keras.saving.load_model(tmp_path / "run/model.keras")
    p = inference.probabilities(model, np.concatenate([np.asarray(t.tiles) for t in swapped])).astype(np.float64)
    truth = np.concatenate([np.full(len(t), CLASSES.index(t.meta["class"])) for t in swapped])
    saved_loss = float(np.mean(-np.log(p[np.arange(len(truth)), truth])))
    kept_row = history.set_index("epoch").loc[best]
    last_row = history.set_index("epoch").loc[history["epoch"].max()]
    assert saved_loss == pytest.approx(kept_row["validation_loss"], rel=1e-3)
    assert abs(saved_loss - last_row["validation_loss"]) > 0.01
    assert float(np.mean(p.argmax(axis=1) == truth)) == pytest.approx(kept_row["validation_accuracy"], abs=1e-6)


@pytest.mark.slow
def test_a_killed_run_still_keeps_its_best_epoch(tmp_path, monkeypatch):
    """Killed after an epoch past the best one, then rerun: the replayed state stops it where an uninterrupted run
    stops, and it keeps the same weights."""
    import keras

    from cellclass.learn import callbacks

    from test_training import CLASSES, identity, options, write_images

    train = write_images(tmp_path, 8, seed=1, prefix="train")
    swapped = write_images(tmp_path, 2, seed=3, prefix="val")
    for tileset in swapped:
        tileset.meta["class"] = CLASSES[1 - CLASSES.index(tileset.meta["class"])]
    opts = options(models=["small"], epochs=8, patience=2, batch_size=16, threads=1)

    def train_run(name):
        return train_and_score(
            identity=identity(),
            classes=CLASSES,
            train=train,
            train_eval=train,
            validation=swapped,
            test_sets={"d": train[:2]},
            out_dir=tmp_path / name,
            options=opts,
        )

    whole = train_run("whole")
    assert whole["stopped_epoch"] - whole["kept_epoch"] == 2 and whole["stopped_epoch"] > 2

    class Killed(Exception):
        pass

    save = callbacks.Checkpoint.on_epoch_end

    def save_then_die(self, epoch, logs=None):
        save(self, epoch, logs)
        if epoch + 1 == whole["stopped_epoch"] - 1:
            raise Killed

    monkeypatch.setattr(callbacks.Checkpoint, "on_epoch_end", save_then_die)
    with pytest.raises(Killed):
        train_run("killed")
    monkeypatch.undo()
    saved = sorted(p.name for p in (tmp_path / "killed/backup").glob("epoch*.keras"))
    assert f"epoch{whole['kept_epoch']}.keras" in saved  # the best epoch's file is kept beside the last
    resumed = train_run("killed")
    assert {k: resumed[k] for k in ("kept_epoch", "stopped_epoch", "epochs")} == {
        k: whole[k] for k in ("kept_epoch", "stopped_epoch", "epochs")
    }
    for a, b in zip(
        keras.saving.load_model(tmp_path / "whole/model.keras").get_weights(),
        keras.saving.load_model(tmp_path / "killed/model.keras").get_weights(),
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_run_killed_after_its_last_epoch_still_keeps_its_best(tmp_path, monkeypatch):
    """Every epoch trained and saved, killed before the outputs: the rerun trains nothing and still puts the
    best epoch's weights back."""
    import keras

    from cellclass.learn import callbacks

    from test_training import CLASSES, identity, options, write_images

    train = write_images(tmp_path, 8, seed=1, prefix="train")
    swapped = write_images(tmp_path, 2, seed=3, prefix="val")
    for tileset in swapped:  # validation labels swapped: the validation loss is best early, not at the end
        tileset.meta["class"] = CLASSES[1 - CLASSES.index(tileset.meta["class"])]
    # The swapped validation side is all wrong from the first epoch on; no later epoch beats the first.
    opts = options(models=["small"], epochs=4, patience=None, batch_size=16, threads=1, monitor="validation_accuracy")

    def train_run(name):
        return train_and_score(
            identity=identity(),
            classes=CLASSES,
            train=train,
            train_eval=train,
            validation=swapped,
            test_sets={"d": train[:2]},
            out_dir=tmp_path / name,
            options=opts,
        )

    whole = train_run("whole")
    assert whole["kept_epoch"] == 1 and whole["epochs"] == 4

    class Killed(Exception):
        pass

    save = callbacks.Checkpoint.on_epoch_end

    def save_then_die(self, epoch, logs=None):
        save(self, epoch, logs)
        if epoch + 1 == 4:
            raise Killed

    monkeypatch.setattr(callbacks.Checkpoint, "on_epoch_end", save_then_die)
    with pytest.raises(Killed):
        train_run("killed")
    monkeypatch.undo()
    resumed = train_run("killed")
    assert resumed["kept_epoch"] == whole["kept_epoch"]
    for a, b in zip(
        keras.saving.load_model(tmp_path / "whole/model.keras").get_weights(),
        keras.saving.load_model(tmp_path / "killed/model.keras").get_weights(),
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_without_a_validation_side_the_last_epoch_is_kept_and_said(tmp_path):
    from test_training import run

    metrics = run(tmp_path, validation=False, epochs=3)
    assert metrics["epoch_selection"] == "last: no validation side"
    assert metrics["kept_epoch"] == 3 and metrics["stopped_epoch"] is None and metrics["monitor_at_kept"] is None
    assert metrics["calibration"]["temperature"] == 1.0 and metrics["calibration"]["fitted_on"] is None
    assert metrics["calibration"]["note"] == "no validation side: uncalibrated"
    effect = metrics["calibration"]["test_sets"]["d"]
    assert effect["ece_before"] == effect["ece_after"] and effect["log_loss_before"] == effect["log_loss_after"]
    assert pd.read_csv(tmp_path / "run/history.csv")["kept"].tolist() == [False, False, True]
