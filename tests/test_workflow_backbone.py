"""The whole workflow with a keras.applications backbone loaded from an offline weights file, a frozen warm-up,
dihedral test-time augmentation in evaluation and prediction, and attribution on the backbone."""

import json
import os

import h5py
import keras
import numpy as np
import pandas as pd
import pytest

from conftest import TINY, job_counts, snakemake, write_config

pytestmark = pytest.mark.slow

MODEL = "mobilenetv3small"
NEW = {"demo": {"pattern": "aggregates", "fields_per_class": 1, "seed": 5, "size": 256, "cells_per_field": 30}}
RUN = f"results/train/tiny/{MODEL}/fold0/seed0"


def weights_file(folder):
    """Keras' cached ImageNet file of MobileNetV3Small, as a user copies it to an offline machine: here the RGB
    network's own initial weights (nothing is downloaded), saved in that legacy HDF5 format under that name."""
    from keras.src.legacy.saving import legacy_h5_format

    from cellclass.learn import models

    keras.utils.set_random_seed(3)
    rgb = models._application(models.MODELS[MODEL], (64, 64, 3), None)
    path = folder / "weights" / models.MODELS[MODEL].weights_file
    path.parent.mkdir()
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, rgb)
    return path, rgb.get_weights()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("backbone")
    path, rgb_weights = weights_file(folder)
    config = {
        **TINY,
        # 64 px tiles: the backbone's last map is 2x2, so Grad-CAM has more than one cell.
        "prepare": {**TINY["prepare"], "tile_size": 64},
        "train": {
            **TINY["train"],
            "models": [MODEL],
            "epochs": 2,
            "epoch_tiles": 320,
            "model_options": {MODEL: {"weights": str(path.relative_to(folder)), "freeze_epochs": 1}},
        },
        "evaluation": {"tta": "dihedral", "bootstrap_resamples": 99},
        "attribution": {"methods": ["gradient_x_input", "grad_cam"], "tiles_per_class": 4},
        "predict": {"tiny_new": {**NEW, "experiment": "tiny"}},
    }
    write_config(folder, config)
    result = snakemake(folder)
    (folder / "snakemake.out").write_text(result.stdout + result.stderr)
    return folder, path, rgb_weights


def test_the_backbone_trains_from_the_offline_file_frozen_then_fine_tuned(finished):
    folder, path, rgb_weights = finished
    metrics = json.loads((folder / RUN / "metrics.json").read_text())
    assert metrics["model"] == MODEL and metrics["epochs"] == 2 and metrics["input_shape"] == [64, 64, 2]
    log = (folder / f"logs/train/tiny/{MODEL}/fold0/seed0.log").read_text()
    assert "epochs 1-1: backbone frozen, training the head" in log and "epochs 2-2: fine-tuning every layer" in log
    history = pd.read_csv(folder / RUN / "history.csv")
    assert history["epoch"].tolist() == [1, 2] and history["validation_accuracy"].notna().all()
    model = keras.models.load_model(folder / RUN / "model.keras", compile=False)
    assert model.get_layer("backbone").trainable
    # Fine-tuned from the file: started from its weights (the adapted first kernel is 2/3 of the RGB sum, an
    # unlikely value for a fresh build), then moved.
    kernel = model.get_layer("backbone").get_weights()[0]
    start = np.repeat(rgb_weights[0].mean(axis=2, keepdims=True) * 1.5, 2, axis=2)
    assert 0 < np.abs(kernel - start).max() < 0.1 * np.abs(start).max()
    # The file is an input of the train job: replacing it retrains.
    os.utime(path)
    assert job_counts(snakemake(folder, "-n")).get("train") == 1


def test_test_predictions_average_the_eight_dihedral_views(finished):
    from cellclass.io import tilestore
    from cellclass.learn import calibration, inference

    folder, _, _ = finished
    metrics = json.loads((folder / RUN / "metrics.json").read_text())
    assert metrics["tta"] == "dihedral"
    predictions = pd.read_csv(folder / RUN / "predictions.tsv", sep="\t", dtype={"tile": str})
    own = predictions[predictions["test_set"] == "tiny"].head(6)
    by_id = {
        tid: t.tiles[i]
        for path in sorted((folder / "results/tiny/tiles").glob("*.npz"))
        for t in tilestore.load(path)
        for i, tid in enumerate(t.tile_ids())
    }
    x = np.stack([by_id[tid] for tid in own["tile"]]).astype(np.float32)
    model = keras.models.load_model(folder / RUN / "model.keras", compile=False)
    recorded = own[["p_aggregates", "p_control"]].to_numpy()
    # Recorded calibrated: the run's temperature applied to the mean over the views.
    temperature = metrics["calibration"]["temperature"]
    tta = calibration.apply(inference.probabilities(model, x, tta="dihedral"), temperature)
    np.testing.assert_allclose(recorded, tta, atol=1e-5)
    one_view = calibration.apply(inference.probabilities(model, x), temperature)
    assert np.abs(recorded - one_view).max() > 1e-6  # one view alone gives other numbers


def test_every_table_says_tta_was_used(finished):
    folder, _, _ = finished
    runs = pd.read_csv(folder / "results/evaluation/runs.tsv", sep="\t")
    summary = pd.read_csv(folder / "results/evaluation/summary.tsv", sep="\t")
    assert set(runs["tta"]) == {"dihedral"} and set(summary["tta"]) == {"dihedral"}
    assert (
        "over its 8 dihedral views (evaluation.tta: dihedral)"
        in (folder / "results/evaluation/findings.html").read_text()
    )
    for table in ("tiles", "images", "groups"):
        calls = pd.read_csv(folder / f"results/predict/tiny_new/{table}.tsv", sep="\t")
        assert set(calls["tta"]) == {"dihedral"}, table
    images = pd.read_csv(folder / "results/predict/tiny_new/images.tsv", sep="\t")
    assert len(images) == 2 and ((images["p_aggregates"] + images["p_control"]) - 1).abs().max() < 1e-5


def test_attribution_explains_the_backbone(finished):
    folder, _, _ = finished
    maps = np.load(folder / f"results/attribution/tiny/{MODEL}/fold0/seed0/maps.npz")
    for state in ("trained", "randomised"):
        for method in ("gradient_x_input", "grad_cam"):
            values = maps[f"{state}/{method}"].astype(np.float32)
            assert values.shape[1:] == (64, 64) and np.isfinite(values).all(), (state, method)
            assert values.min() >= 0 and values.max() <= 1
    # Per pixel, so no two pixels need share a value; Grad-CAM's 2x2 map upsampled still varies across the tile.
    assert all(np.ptp(m) > 0 for m in maps["trained/gradient_x_input"].astype(np.float32))
    assert any(np.ptp(m) > 0 for m in maps["trained/grad_cam"].astype(np.float32))
    scores = pd.read_csv(folder / f"results/attribution/tiny/{MODEL}/fold0/seed0/scores.tsv", sep="\t")
    assert set(scores["method"]) == {"gradient_x_input", "grad_cam"}
    for method in ("gradient_x_input", "grad_cam"):
        assert (folder / f"results/figures/tiny/{MODEL}/attribution_{method}.png").stat().st_size > 1000
