"""Training runs on real tile files: accuracy on a learnable task, resume, determinism, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, log_loss

from cellclass.config import validate
from cellclass.io import tilestore
from cellclass.io.errors import InputError
from cellclass.io.tilestore import TileSet

from conftest import train_and_score

pytestmark = pytest.mark.slow
CLASSES = ["aggregates", "control"]


def write_images(folder, n_images, seed, tiles_per_image=24, size=16, prefix="img"):
    """A shard file of images whose 'aggregates' tiles carry a few bright spots (learnable in seconds), read back
    as its memory-mapped TileSets."""
    rng = np.random.default_rng(seed)
    tilesets = []
    for i in range(n_images):
        cls = CLASSES[i % 2]
        tiles = rng.normal(0.3, 0.05, (tiles_per_image, size, size, 2)).astype(np.float32)
        if cls == "aggregates":
            for tile in tiles:
                for _ in range(3):
                    y, x = rng.integers(2, size - 2, 2)
                    tile[y - 1 : y + 2, x - 1 : x + 2, 0] = 1.0
        meta = {"sample": f"{cls}/{prefix}{i}", "class": cls, "group": f"{prefix}{i}", "files": [f"{prefix}{i}.tif"]}
        tilesets.append(TileSet(np.clip(tiles, 0, 1), np.arange(tiles_per_image), np.zeros(tiles_per_image), meta))
    tilestore.save(folder / f"{prefix}.npz", tilesets)
    return tilestore.load(folder / f"{prefix}.npz")


def options(**overrides):
    config = validate({"train": overrides, "datasets": {"d": {"demo": {"pattern": "aggregates"}}}})
    return config["experiments"]["d"]["train"]


def identity(seed=0, model="small"):
    return {"experiment": "e", "dataset": "d", "model": model, "seed": seed}


def run(tmp_path, name="run", seed=0, validation=True, validation_images=2, **overrides):

    train = write_images(tmp_path, 8, seed=1, prefix="train")
    val = write_images(tmp_path, validation_images, seed=3, prefix="val") if validation else []
    test = write_images(tmp_path, 4, seed=2, prefix="test")
    opts = options(**{"models": ["small"], "epochs": 3, "batch_size": 16, "threads": 1, **overrides})
    return train_and_score(
        identity=identity(seed),
        classes=CLASSES,
        train=train,
        train_eval=train,
        validation=val,
        test_sets={"d": test},
        out_dir=tmp_path / name,
        options=opts,
    )


def test_a_run_learns_and_writes_its_outputs(tmp_path):
    run(tmp_path, validation_images=4)  # 2 images (groups) a class: one chooses the epoch, the other calibrates
    out = tmp_path / "run"
    scored = pd.read_csv(out / "predictions.tsv", sep="\t")
    # Chance is 0.5; the margin below this machine's 1.0 holds for other CPUs' float order.
    assert balanced_accuracy_score(scored["true"], scored["predicted"]) >= 0.75
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == [
        "epoch",
        "train_loss",
        "train_accuracy",
        "train_eval_loss",
        "train_eval_accuracy",
        "validation_loss",
        "validation_accuracy",
        "kept",
    ]
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history[["train_eval_accuracy", "validation_accuracy"]].notna().all().all()
    written = json.loads((out / "metrics.json").read_text())
    assert {k: written[k] for k in ("experiment", "dataset", "model", "seed")} == identity()
    assert written["validation_tiles"] == 4 * 24 and written["class_balance"] == "none"
    uses = written["validation_uses"]
    assert uses["epoch"] == {"tiles": 48, "images": 2, "groups": 2} and uses["calibration"] == uses["epoch"]
    assert uses["shared"]["images"] == 0 and uses["notes"] == []
    assert written["train_tiles_per_class"] == {"aggregates": 96, "control": 96}
    predictions = pd.read_csv(out / "predictions.tsv", sep="\t")
    assert len(predictions) == 4 * 24
    assert {"tile", "sample", "group", "true", "predicted", "p_aggregates", "p_control"} <= set(predictions.columns)
    np.testing.assert_allclose(predictions[["p_aggregates", "p_control"]].sum(axis=1), 1, atol=1e-4)
    assert json.loads((out / "metrics.json").read_text())["classes"] == CLASSES
    # Temperature-scaled on the validation side; the test side says what that did, per tile.
    calibrated = written["calibration"]
    assert calibrated["temperature"] > 0 and calibrated["fitted_on"] == "validation side's calibration part, 48 tiles"
    # Its tiles, calibrated, for the ensemble's temperature: none of them chose the epoch.
    part = pd.read_csv(out / "calibration.tsv", sep="\t")
    assert len(part) == 48 and part["sample"].nunique() == 2 and set(part["true"]) == set(CLASSES)
    np.testing.assert_allclose(part[["p_aggregates", "p_control"]].sum(axis=1), 1, atol=1e-4)
    # The novelty threshold's sample: the same 48 tiles, far fewer than a 99th percentile needs.
    assert written["novelty"]["threshold_tiles"] == 48 and written["novelty"]["threshold_tiles_needed"] == 1000
    assert "rests on 48 held-out tiles" in written["novelty"]["threshold_note"]
    effect = calibrated["test_sets"]["d"]
    assert effect["tiles"] == 4 * 24 and all(np.isfinite(v) for v in effect.values())
    assert effect["log_loss_after"] == pytest.approx(
        log_loss(predictions["true"], predictions[["p_aggregates", "p_control"]], labels=CLASSES), rel=1e-3, abs=1e-6
    )
    assert (out / "model.keras").stat().st_size > 0
    assert not (out / "backup").exists()


def test_same_seed_same_model_on_cpu(tmp_path):
    run(tmp_path, "a")
    run(tmp_path, "b")
    a = pd.read_csv(tmp_path / "a" / "predictions.tsv", sep="\t")
    b = pd.read_csv(tmp_path / "b" / "predictions.tsv", sep="\t")
    np.testing.assert_array_equal(a["p_control"].to_numpy(), b["p_control"].to_numpy())


def test_channel_selection_changes_the_input(tmp_path):
    metrics = run(tmp_path, channels=[0])
    assert metrics["input_shape"] == [16, 16, 1]


def test_bad_inputs_fail_before_training(tmp_path):

    train = write_images(tmp_path, 4, seed=1, prefix="train")
    only_control = [t for t in train if t.meta["class"] == "control"]
    common = dict(validation=[], out_dir=tmp_path / "x", options=options(models=["small"]))

    def train_run(model="small", classes=CLASSES, files=train, tests=None):
        train_and_score(
            identity=identity(model=model),
            classes=classes,
            train=files,
            train_eval=files,
            test_sets={"d": train} if tests is None else tests,
            **common,
        )

    with pytest.raises(InputError, match="aggregates have no training tiles"):
        train_run(files=only_control)
    with pytest.raises(InputError, match="test set d has no images"):
        train_run(tests={"d": []})
    with pytest.raises(InputError, match="unknown model 'vgg'"):
        train_run(model="vgg")
    with pytest.raises(InputError, match="class 'aggregates', which the training data does not have"):
        train_run(classes=["control", "x"])


def test_class_balance_is_chosen_by_the_imbalance():
    from cellclass.learn import training

    assert training.class_balance([110, 10, 10], "auto") == ("sampling", 11.0)
    assert training.class_balance([30, 10], "auto") == ("none", 3.0)
    assert training.class_balance([30, 10], "weights")[0] == "weights"
    assert training.class_balance([300, 10], "none")[0] == "none"


def test_balanced_sampling_repeats_small_classes():
    from cellclass.learn import pipeline

    # class 0: 100 tiles; class 1: 10; class 2: 30
    labels = [0] * 100 + [1] * 10 + [2] * 30
    assert pipeline.class_repeats(labels, 3).tolist() == [1, 10, 3]


def test_an_imbalanced_run_samples_its_classes_evenly(tmp_path):
    from cellclass.learn import pipeline, training

    big = write_images(tmp_path, 12, seed=1, prefix="train")
    train = [t for t in big if t.meta["class"] == "control"]
    train += [t for t in big if t.meta["class"] == "aggregates"][:1]
    labels = training.labelled(train, CLASSES, "training data")
    generate, _ = pipeline.batches(train, labels, n_classes=2, batch_size=16, shuffle=True, balance=True)
    seen = np.concatenate([y.argmax(axis=1) for _, y in generate()])
    assert np.bincount(seen).tolist() == [6 * 24, 6 * 24]
    metrics = train_and_score(
        identity=identity(),
        classes=CLASSES,
        train=train,
        train_eval=train,
        validation=[],
        test_sets={"d": big[:2]},
        out_dir=tmp_path / "run",
        options=options(models=["small"], epochs=1, batch_size=16, threads=1),
    )
    assert metrics["class_balance"] == "sampling" and metrics["imbalance_ratio"] == 6.0
    assert metrics["train_tiles"] == 2 * 6 * 24
    history = pd.read_csv(tmp_path / "run/history.csv")
    assert history["validation_accuracy"].isna().all()  # no validation side: nothing stands in for it


def test_config_rejects_unknown_model_and_too_small_tiles():
    with pytest.raises(InputError, match="unknown model 'vgg'"):
        options(models=["vgg"])
    with pytest.raises(InputError, match="model 'alexnet' needs tiles of at least"):
        validate(
            {
                "prepare": {"tile_size": 32},
                "train": {"models": ["alexnet"]},
                "datasets": {"d": {"demo": {"pattern": "aggregates"}}},
            }
        )


KILLABLE = """
import sys, pathlib
sys.path.insert(0, {tests!r})
from test_training import run
run(pathlib.Path({folder!r}), epochs=6)
"""


def test_killed_run_resumes_from_its_last_epoch(tmp_path):
    script = KILLABLE.format(tests=os.path.dirname(__file__), folder=str(tmp_path))
    first = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    epochs_so_far = tmp_path / "run" / "backup" / "history.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (epochs_so_far.exists() and len(epochs_so_far.read_text().splitlines()) >= 3):
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (tmp_path / "run" / "metrics.json").exists()  # nothing half-done taken as complete
    second = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Epoch 1/6" not in second.stdout + second.stderr
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5, 6]


def test_a_minutes_budget_is_resolved_once_recorded_and_rerun_exactly_as_tile_steps(tmp_path):
    """The run measures its speed, turns the minutes into tile-steps and records them; a run given those
    tile-steps trains the same model."""
    timed = run(tmp_path, "timed", epochs=None, budget={"minutes": 0.1})
    work = timed["work"]
    assert work["set_by"] == "budget (minutes)" and work["measured_tiles_per_second"] > 0
    assert work["tile_steps"] <= 6 * work["measured_tiles_per_second"]  # 0.1 minutes, scoring time taken out
    again = run(tmp_path, "again", epochs=None, budget={"tile_steps": work["tile_steps"]})
    assert again["work"]["tile_steps"] == work["tile_steps"] and again["epochs"] == timed["epochs"]
    a = pd.read_csv(tmp_path / "timed" / "predictions.tsv", sep="\t")
    b = pd.read_csv(tmp_path / "again" / "predictions.tsv", sep="\t")
    np.testing.assert_array_equal(a["p_control"].to_numpy(), b["p_control"].to_numpy())


def test_a_resumed_run_keeps_the_work_it_resolved_first(tmp_path):
    """A killed run's backup holds the work resolved at its start; the resumed run trains that, not what a new
    measurement of a minutes budget would give."""
    opts = options(models=["small"], epochs=None, budget={"minutes": 30}, batch_size=16)
    backup = tmp_path / "run" / "backup"
    backup.mkdir(parents=True)
    asked = {key: opts[key] for key in ("budget", "epochs", "epoch_tiles", "epoch_passes", "batch_size")}
    first = {
        "epochs": 10,
        "epoch_tiles": 48,
        "epoch_passes": None,
        "tile_steps": 480,
        "passes": 2.5,
        "set_by": "budget (minutes)",
        "measured_tiles_per_second": 123.0,
        "asked": asked,
    }
    (backup / "work.json").write_text(json.dumps(first))
    metrics = run(tmp_path, epochs=None, budget={"minutes": 30})
    assert metrics["work"]["tile_steps"] == 480 and metrics["work"]["measured_tiles_per_second"] == 123.0
    assert metrics["epochs"] == 10


def test_a_budget_smaller_than_a_batch_of_this_runs_tiles_fails_clearly(tmp_path):
    with pytest.raises(InputError, match="less than one batch"):
        run(tmp_path, epochs=None, budget={"passes": 0.05}, batch_size=16)


def test_xla_and_mixed_precision_say_what_was_used(tmp_path):
    metrics = run(tmp_path, xla=True, mixed_precision=True)
    assert metrics["precision"] == "float32"
    assert any("mixed_precision asked for, but there is no GPU" in note for note in metrics["notes"])
    # Keras leaves XLA out under op determinism (train.deterministic, on here); the run says so.
    assert metrics["xla"] is False
    assert any(
        "train.xla asked for, but XLA was not used (Keras does not use XLA while TensorFlow's op "
        "determinism is on" in note
        for note in metrics["notes"]
    )
    free = run(tmp_path, "free", xla=True, deterministic=False)
    assert free["xla"] is True or any("train.xla asked for" in note for note in free["notes"])
