"""Score one trained run from its saved model: the temperature fitted on the validation side's calibration part,
then every test side scored once and calibrated.

This is the `score` job, apart from training: what it writes depends on evaluation settings (`evaluation.tta`),
and changing them must not retrain. It reads model.keras and training.json (cellclass.learn.training) and writes
calibration.tsv, predictions.tsv and metrics.json (the training record with the calibration and the test sets).
"""

import json
import logging
from pathlib import Path

import pandas as pd

from cellclass.io.atomic import atomic_path
from cellclass.io.errors import InputError
from cellclass.learn import calibration, inference, runtime
from cellclass.learn import validation as validation_uses
from cellclass.learn.training import RECORD, labelled

log = logging.getLogger(__name__)
BATCH_SIZE = 256


def predict_images(model, tilesets, classes, *, channels, batch_size, test_set, tta="none"):
    """Per-tile predictions of the images `tilesets` as a tidy table (`tta`: see cellclass.learn.inference.TTA)."""
    rows = []
    scored = inference.per_image(
        [model], tilesets, channels=channels, n_classes=len(classes), batch_size=batch_size, tta=tta
    )
    for tileset, scores in zip(tilesets, scored):
        if not len(tileset):
            continue
        probabilities = scores[0]
        table = pd.DataFrame(probabilities, columns=[f"p_{c}" for c in classes])
        table.insert(0, "predicted", [classes[i] for i in probabilities.argmax(axis=1)])
        table.insert(0, "true", tileset.meta["class"])
        table.insert(0, "group", tileset.meta["group"])
        table.insert(0, "sample", tileset.meta["sample"])
        table.insert(0, "tile", tileset.tile_ids())
        table.insert(0, "test_set", test_set)
        rows.append(table)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def calibrate_on(model, validation, classes, **scoring):
    """(metrics.json's `calibration` of a run, calibration.tsv): the temperature fitted on the tile probabilities
    of its validation side's calibration part (scored as the test sides are, `scoring`: channels, batch size,
    test-time augmentation), and those tiles' probabilities with it applied, for the ensemble's temperature."""
    p = [f"p_{c}" for c in classes]
    seen = predict_images(model, validation, classes, test_set="validation", **scoring)
    if seen.empty:
        columns = ["tile", "sample", "group", "true", "predicted", *p]
        return calibration.record(1.0, None), pd.DataFrame(columns=columns)
    temperature = calibration.fit(seen[p].to_numpy(), seen["true"].map(classes.index).to_numpy())
    seen = seen.drop(columns="test_set").assign(**dict(zip(p, calibration.apply(seen[p].to_numpy(), temperature).T)))
    return calibration.record(temperature, len(seen), [c for c in classes if c not in set(seen["true"])]), seen


def calibrated(raw, classes, temperature):
    """(predictions, effects): the test tiles' probabilities with the run's temperature applied (the calls stay),
    and per test set the ECE and log loss per tile before and after (calibration.effect)."""
    p = [f"p_{c}" for c in classes]
    probabilities = raw[p].to_numpy()
    scaled = calibration.apply(probabilities, temperature)
    labels = raw["true"].map(classes.index).to_numpy()
    effects = {
        name: calibration.effect(probabilities[rows], scaled[rows], labels[rows])
        for name, rows in raw.groupby("test_set", sort=False).indices.items()
    }
    return raw.assign(**dict(zip(p, scaled.T))), effects


def check_test_sets(test_sets, classes):
    """Every test set has tiles, of classes the run was trained on."""
    for name, tilesets in test_sets.items():
        labelled(tilesets, classes, f"test set {name}")
        if not tilesets:
            raise InputError(f"test set {name} has no images with tiles")


def score_run(*, run_dir, classes, validation, test_sets, options, threads=1, tta="none"):
    """Score the run saved in `run_dir`; returns its metrics dict (metrics.json).

    `validation` is the run's validation side (TileSets): its calibration part (cellclass.learn.validation, the
    same cells the novelty threshold was fitted on; none chose the epoch) fits the temperature. `test_sets` maps
    a test-set name to its TileSets, each scored once, after training, and temperature-scaled (uncalibrated, 1,
    without a validation side). `tta` (evaluation.tta) is the test-time augmentation of both
    (cellclass.learn.inference.TTA). `options` are the run's train settings, as the train job had them.
    """
    import keras

    run_dir = Path(run_dir)
    record = json.loads((run_dir / RECORD).read_text())
    check_test_sets(test_sets, classes)
    runtime.configure_tensorflow(
        threads=threads,
        seed=int(record["seed"]),
        deterministic=options["deterministic"],
        mixed_precision=options["mixed_precision"],
    )
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    uses = validation_uses.split(validation, chooses=validation_uses.chooses_epoch(options))
    scoring = dict(channels=options["channels"], batch_size=BATCH_SIZE, tta=tta)
    fitted, seen = calibrate_on(model, uses.calibration, classes, **scoring)
    with atomic_path(run_dir / "calibration.tsv") as tmp:
        seen.to_csv(tmp, sep="\t", index=False)
    # The test sides are scored here, once, after training; nothing was chosen or fitted on them.
    raw = pd.concat(
        [predict_images(model, tilesets, classes, test_set=name, **scoring) for name, tilesets in test_sets.items()],
        ignore_index=True,
    )
    predictions, effects = calibrated(raw, classes, fitted["temperature"])
    for name, effect in effects.items():
        log.info(
            "temperature %.3g; on test set %s, per tile: ECE %.3f -> %.3f, log loss %.3f -> %.3f",
            fitted["temperature"],
            name,
            effect["ece_before"],
            effect["ece_after"],
            effect["log_loss_before"],
            effect["log_loss_after"],
        )
    with atomic_path(run_dir / "predictions.tsv") as tmp:
        predictions.to_csv(tmp, sep="\t", index=False)
    metrics = {**record, "test_sets": list(test_sets), "tta": tta, "calibration": {**fitted, "test_sets": effects}}
    with atomic_path(run_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    return metrics
