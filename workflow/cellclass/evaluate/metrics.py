"""Classification metrics per tile, image and group (well), computed with scikit-learn.

A run's test tiles roll up to their raw image and to their group by the mean
class probability; each level is then scored as its own set of calls. The
headline level is the biological unit: the group when groups hold several
images, else the image.
"""

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from cellclass.evaluate.runs import RUN
from cellclass.learn.calibration import ece  # the one ECE: training reports it before and after calibration

LEVELS = ("tile", "image", "group")
SCORE = [*RUN, "test_set"]
# The column that names a unit at each level.
UNIT = {"tile": "tile", "image": "sample", "group": "group"}
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "ece", "roc_auc")


def unit_of(level, kind="fields"):
    """What one unit at `level` is, in words: a grid tile, or a cell for single-cell crops; an image; a group."""
    if level == "tile":
        return "cell" if kind in ("cells", "nuclei") else "tile"
    return level


def kinds_of(runs):
    """Experiment -> how its training tiles were made (prepare.kind; fields for tiles made outside the workflow)."""
    if "prepare" not in runs:
        return {}
    return {e: ((p or {}).get("settings") or {}).get("kind", "fields") for e, p in zip(runs["experiment"], runs["prepare"])}


def with_units(table, kinds):
    """`table` with a `unit` column naming the unit of each row's level."""
    units = [unit_of(level, kinds.get(e, "fields")) for e, level in zip(table["experiment"], table["level"])]
    return table.assign(unit=units)


def p_columns(table):
    return [c for c in table.columns if c.startswith("p_")]


def classes_of(table):
    """The run's classes: its probability columns that are filled in, in order."""
    return [c[len("p_") :] for c in p_columns(table) if table[c].notna().any()]


def rollup(predictions, level):
    """Per-unit calls at `level`: mean class probability over the unit's tiles, its argmax, and the tile count."""
    if level == "tile":
        return predictions.assign(unit=predictions["tile"], n_tiles=1)
    unit = UNIT[level]
    columns = p_columns(predictions)
    keys = [*SCORE, unit]
    carried = {"true": ("true", "first"), "n_tiles": ("true", "size")}
    if unit != "group":
        carried["group"] = ("group", "first")
    table = predictions.groupby(keys, sort=False).agg(**carried, **{c: (c, "mean") for c in columns}).reset_index()
    table["unit"] = table[unit]
    # idxmax skips the NaN columns of classes another run had; ties go to the first class, as argmax does.
    table["predicted"] = table[columns].idxmax(axis=1).str[len("p_") :]
    return table


def scores(units, classes):
    """Every metric of one set of calls, with the baselines it should be read against."""
    y, called = units["true"].to_numpy(), units["predicted"].to_numpy()
    probabilities = units[[f"p_{c}" for c in classes]].to_numpy(dtype=float)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    present = [c for c in classes if (y == c).any()]
    top_share = pd.Series(called).value_counts(normalize=True)
    row = {
        "n_units": len(units),
        "n_groups": units["group"].nunique(),
        "accuracy": accuracy_score(y, called),
        "balanced_accuracy": balanced_accuracy_score(y, called) if present else np.nan,
        "macro_f1": f1_score(y, called, labels=present, average="macro", zero_division=0),
        "log_loss": log_loss(y, probabilities, labels=classes),
        "ece": ece(probabilities.max(axis=1), y == called),
        "roc_auc": np.nan,
        "chance": 1 / len(classes),
        "majority_rate": pd.Series(y).value_counts(normalize=True).max(),
        "top_call": top_share.index[0],
        "top_call_share": float(top_share.iloc[0]),
    }
    if len(present) == len(classes):  # AUC needs every class among the true labels
        if len(classes) == 2:
            row["roc_auc"] = roc_auc_score(y == classes[1], probabilities[:, 1])
        else:
            row["roc_auc"] = roc_auc_score(y, probabilities, multi_class="ovr", labels=classes)
    return row


def headline_level(predictions):
    """'group' when some group holds several images (wells, replicates), else 'image'."""
    return "group" if (predictions.groupby("group")["sample"].nunique() > 1).any() else "image"


def score_table(predictions):
    """One row per (run, test set, level) with every metric; `headline` marks the biological unit."""
    rows = []
    for key, tiles in predictions.groupby(SCORE, sort=False):
        classes = classes_of(tiles)
        headline = headline_level(tiles)
        for level in LEVELS:
            units = rollup(tiles, level)
            rows.append({**dict(zip(SCORE, key)), "level": level, "headline": level == headline, **scores(units, classes)})
    return pd.DataFrame(rows)


def class_table(predictions):
    """Per (run, test set, level, class): precision, recall, F1 and support (true units of the class)."""
    rows = []
    for key, tiles in predictions.groupby(SCORE, sort=False):
        classes = classes_of(tiles)
        for level in LEVELS:
            units = rollup(tiles, level)
            precision, recall, f1, support = precision_recall_fscore_support(
                units["true"], units["predicted"], labels=classes, zero_division=0
            )
            for i, cls in enumerate(classes):
                rows.append(
                    {**dict(zip(SCORE, key)), "level": level, "class": cls, "precision": precision[i],
                     "recall": recall[i], "f1": f1[i], "support": int(support[i])}
                )
    return pd.DataFrame(rows)


def confusion(predictions, classes):
    """Tile counts with true class as rows and predicted class as columns (every class listed)."""
    extra = [c for c in pd.unique(predictions["true"]) if c not in classes]
    table = pd.crosstab(predictions["true"], predictions["predicted"])
    table = table.reindex(index=[*classes, *extra], columns=list(classes), fill_value=0)
    table.index.name, table.columns.name = "true", "predicted"
    return table


def calibration(predictions, classes, bins=10):
    """Reliability table of top-class confidence in `bins` equal bins, and the expected calibration error.

    ECE = sum over bins of (n_bin / N) |accuracy - confidence|: how far the softmax's claimed hit rate is off.
    """
    confidence = predictions[[f"p_{c}" for c in classes]].to_numpy(dtype=float).max(axis=1)
    correct = (predictions["true"] == predictions["predicted"]).to_numpy(dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bins are (low, high]; a confidence of exactly 0 joins the first.
    which = np.digitize(confidence, edges[1:-1], right=True)
    table = pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:]})
    table["count"] = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        table["confidence"] = np.bincount(which, confidence, minlength=bins) / table["count"]
        table["accuracy"] = np.bincount(which, correct, minlength=bins) / table["count"]
    return table, ece(confidence, correct.astype(bool), bins)
