"""The ensemble's calibration on the test side, per tile: the mean over members of their calibrated probabilities
(what prediction calls with, cellclass.predict.call_tables) against the mean member's own.

Only members that share a test side are averaged: the seeds of one fold. Each fold gets a row; under
cross-validation a row with fold "all" pools the folds' ensembles tile by tile (a tile of the own test side
once; a tile of a test set outside the split once per fold). Members calibrated one by one and then averaged
can be under-confident: where they disagree the mean is pulled towards uniform. Where it is so on the
validation side's calibration part (which the seeds of a fold share: cellclass.learn.validation), one ensemble
temperature is fitted there (calibration.ensemble_fit) and the table shows what it does to the test side; a
pooled row's temperature is fitted on the folds' ensembles pooled, the one to apply to an ensemble of every run.
"""

import numpy as np
import pandas as pd

from cellclass.evaluate import metrics
from cellclass.evaluate.runs import read_calibration_parts
from cellclass.learn import calibration

MODEL = ["experiment", "dataset", "model"]
COLUMNS = [
    *MODEL,
    "test_set",
    "fold",
    "folds",
    "level",
    "unit",
    "members",
    "test_tiles",
    "test_images",
    "accuracy",
    "mean_confidence",
    "under_confident",
    "ece",
    "log_loss",
    "member_ece",
    "member_log_loss",
    "calibration_tiles",
    "calibration_images",
    "ensemble_temperature",
    "ensemble_temperature_note",
    "tempered_ece",
    "tempered_log_loss",
]


def member_mean(tiles, p):
    """(per tile, the mean over members (seeds) of the probability columns `p`, with its image and true class;
    the number of members). Only tiles that every member scored are kept."""
    if tiles.empty:
        return pd.DataFrame(columns=["tile", "sample", "true", *p]), 0
    members = tiles["seed"].nunique()
    table = tiles.groupby("tile", sort=False).agg(
        sample=("sample", "first"), true=("true", "first"), scored_by=("seed", "nunique"), **{c: (c, "mean") for c in p}
    )
    return table[table.pop("scored_by") == members].reset_index(), members


def measured(tiles, classes, temperature=1.0):
    """ECE, log loss, mean confidence and accuracy per tile of `tiles`' probabilities, at `temperature`."""
    probabilities = calibration.apply(tiles[[f"p_{c}" for c in classes]].to_numpy(np.float64), temperature)
    labels = tiles["true"].map(classes.index).to_numpy()
    confidence, accuracy = calibration.confidence_and_accuracy(probabilities, labels)
    return {**calibration.scores(probabilities, labels), "mean_confidence": confidence, "accuracy": accuracy}


def numbers(ensemble, part, member_scores, classes):
    """One row's numbers: the ensemble's on the test side, the mean member's, and the ensemble temperature
    fitted on the calibration part `part` (members' mean there) with what it does to the test side."""
    fitted = calibration.ensemble_fit(
        part[[f"p_{c}" for c in classes]].to_numpy(np.float64), part["true"].map(classes.index).to_numpy()
    )
    seen, tempered = measured(ensemble, classes), measured(ensemble, classes, fitted["temperature"])
    return {
        "test_tiles": len(ensemble),
        "test_images": ensemble["sample"].nunique(),
        "accuracy": seen["accuracy"],
        "mean_confidence": seen["mean_confidence"],
        "under_confident": seen["mean_confidence"] < seen["accuracy"],
        "ece": seen["ece"],
        "log_loss": seen["log_loss"],
        "member_ece": float(np.mean([s["ece"] for s in member_scores])),
        "member_log_loss": float(np.mean([s["log_loss"] for s in member_scores])),
        "calibration_tiles": fitted["tiles"],
        "calibration_images": part["sample"].nunique(),
        "ensemble_temperature": fitted["temperature"],
        "ensemble_temperature_note": fitted["note"],
        "tempered_ece": tempered["ece"],
        "tempered_log_loss": tempered["log_loss"],
    }


def ensemble_table(predictions, parts, kinds=None):
    """Per (experiment, model, test set) and fold, plus fold "all" under cross-validation: the ensemble's
    calibration per tile (COLUMNS). `predictions`: every run's test tiles (runs.read_runs); `parts`: every run's
    calibration part (runs.read_calibration_parts); `kinds` (experiment -> prepare.kind) names the unit."""
    kinds = kinds or {}
    rows = []
    for key, tiles in predictions.groupby([*MODEL, "test_set"], sort=False):
        classes = metrics.classes_of(tiles)
        p = [f"p_{c}" for c in classes]
        head = {
            **dict(zip([*MODEL, "test_set"], key)),
            "level": "tile",
            "unit": metrics.unit_of("tile", kinds.get(key[0], "fields")),
        }
        of_model = parts[(parts[MODEL] == pd.Series(key[:3], index=MODEL)).all(axis=1)] if len(parts) else parts
        folds = []
        for fold, at_fold in tiles.groupby("fold", sort=True):
            ensemble, members = member_mean(at_fold, p)
            part, _ = member_mean(of_model[of_model["fold"] == fold], p)
            member_scores = [measured(run, classes) for _, run in at_fold.groupby("seed")]
            folds.append((ensemble, part, member_scores))
            rows.append(
                {
                    **head,
                    "fold": fold,
                    "folds": 1,
                    "members": members,
                    **numbers(ensemble, part, member_scores, classes),
                }
            )
        if len(folds) > 1:
            ensembles, part_list, scores = zip(*folds)
            rows.append(
                {
                    **head,
                    "fold": "all",
                    "folds": len(folds),
                    "members": rows[-1]["members"],
                    **numbers(
                        pd.concat(ensembles, ignore_index=True),
                        pd.concat(part_list, ignore_index=True),
                        [s for fold_scores in scores for s in fold_scores],
                        classes,
                    ),
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def pooled_rows(table):
    """The row per (experiment, model, test set) that speaks for every fold: fold "all", or the only fold."""
    keys = [*MODEL, "test_set"]
    single = table.groupby(keys, sort=False)["fold"].transform("nunique") == 1
    return table[single | table["fold"].astype(str).eq("all")]


def temperature_for(run_dirs):
    """The ensemble temperature of the runs in `run_dirs` (prediction's members) and what it was fitted on
    (calibration.ensemble_fit's record): each fold's seeds averaged on its calibration part, tile by tile, and
    the folds pooled. Prediction applies it to the members' mean: calibration.ensemble(scores, temperature)."""
    parts = read_calibration_parts(run_dirs)
    classes = metrics.classes_of(parts)
    p = [f"p_{c}" for c in classes]
    means = [member_mean(at_fold, p)[0] for _, at_fold in parts.groupby("fold", sort=True)] if len(parts) else []
    pooled = pd.concat(means, ignore_index=True) if means else pd.DataFrame(columns=["true", *p])
    return calibration.ensemble_fit(
        pooled[p].to_numpy(np.float64).reshape(len(pooled), len(p)), pooled["true"].map(classes.index).to_numpy()
    )
