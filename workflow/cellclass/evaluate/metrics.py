"""Classification metrics per tile, image and group (well), computed with scikit-learn.

A run's test tiles roll up to their raw image and to their group by the mean
class probability; each level is then scored as its own set of calls. A unit
whose tiles are labelled with several classes has no class of its own: it gets
no call and is not scored at its level. The headline level is the biological
unit: the group when groups hold several images, else the image; but a level
where more than MAX_MIXED_SHARE of the units hold several classes gives way to
the next one down (group, image, tile), and the table says why.
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
# A level stays the headline while at most this share of its units hold tiles of several classes (those few
# are left out of its scores, and the findings count them); beyond it the headline moves a level down.
MAX_MIXED_SHARE = 0.1


def unit_of(level, kind="fields"):
    """What one unit at `level` is, in words: a grid tile, or a cell for single-cell crops; an image; a group."""
    if level == "tile":
        return "cell" if kind in ("cells", "nuclei") else "tile"
    return level


def kinds_of(runs):
    """Experiment -> how its training tiles were made (prepare.kind; fields for tiles made outside the workflow)."""
    if "prepare" not in runs:
        return {}
    return {
        e: ((p or {}).get("settings") or {}).get("kind", "fields") for e, p in zip(runs["experiment"], runs["prepare"])
    }


def with_units(table, kinds):
    """`table` with a `unit` column naming the unit of each row's level."""
    units = [unit_of(level, kinds.get(e, "fields")) for e, level in zip(table["experiment"], table["level"])]
    return table.assign(unit=units)


def p_columns(table):
    return [c for c in table.columns if c.startswith("p_")]


def classes_of(table):
    """The run's classes: its probability columns that are filled in, in order."""
    return [c[len("p_") :] for c in p_columns(table) if table[c].notna().any()]


def rollup(predictions, level, *, mixed=False):
    """Per-unit calls at `level`: mean class probability over the unit's tiles, its argmax, and the tile count.

    A unit whose tiles hold several true classes has no class to call: it is left out, or with `mixed` kept
    with `mixed` true and no `true` class or call (for the tables that list every unit)."""
    if level == "tile":
        return predictions.assign(unit=predictions["tile"], n_tiles=1, mixed=False)
    unit = UNIT[level]
    columns = p_columns(predictions)
    keys = [*SCORE, unit]
    carried = {"true": ("true", "first"), "n_tiles": ("true", "size"), "n_classes": ("true", "nunique")}
    if unit != "group":
        carried["group"] = ("group", "first")
    table = predictions.groupby(keys, sort=False).agg(**carried, **{c: (c, "mean") for c in columns}).reset_index()
    table["unit"] = table[unit]
    # idxmax skips the NaN columns of classes another run had; ties go to the first class, as argmax does.
    table["predicted"] = table[columns].idxmax(axis=1).str[len("p_") :]
    table["mixed"] = table.pop("n_classes") > 1
    if not mixed:
        return table[~table["mixed"]].reset_index(drop=True)
    table[["true", "predicted"]] = table[["true", "predicted"]].where(~table["mixed"], None)
    return table


def mixed_units(predictions, level):
    """(units holding tiles of several true classes, units) at `level` among `predictions`' tiles."""
    if level == "tile":
        return 0, predictions["tile"].nunique()
    classes = predictions.groupby(UNIT[level])["true"].nunique()
    return int((classes > 1).sum()), len(classes)


def scores(units, classes):
    """Every metric of one set of calls, with the baselines it should be read against (NaN without units)."""
    if units.empty:  # every unit at this level held several classes
        return {
            "n_units": 0,
            "n_groups": 0,
            **dict.fromkeys(METRICS, np.nan),
            "chance": 1 / len(classes),
            "majority_rate": np.nan,
            "top_call": "",
            "top_call_share": np.nan,
        }
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


def headline_choice(predictions):
    """(level, reason): the largest unit that has one class. 'group' when some group holds several images
    (wells, replicates), else 'image', unless more than MAX_MIXED_SHARE of its units hold several classes;
    then the next level down, to the tile. `reason` says which levels gave way and why ('' when none did)."""
    candidates = ["group", "image"] if (predictions.groupby("group")["sample"].nunique() > 1).any() else ["image"]
    passed_over = []
    for level in candidates:
        mixed, n = mixed_units(predictions, level)
        if mixed <= MAX_MIXED_SHARE * n:
            return level, "; ".join(passed_over)
        passed_over.append(f"{mixed} of {n} test {level}s hold several classes")
    return "tile", "; ".join(passed_over)


def headline_level(predictions):
    """The headline level of `predictions` (see headline_choice)."""
    return headline_choice(predictions)[0]


def score_table(predictions):
    """One row per (run, test set, level) with every metric and `mixed_units`, the units left out for holding
    several classes; `headline` marks the biological unit and `headline_reason` says why it is not higher."""
    # Chosen per model and test side, over all its runs, so every run of it has the same headline level.
    side = ["experiment", "dataset", "model", "test_set"]
    choices = {key: headline_choice(tiles) for key, tiles in predictions.groupby(side, sort=False)}
    rows = []
    for key, tiles in predictions.groupby(SCORE, sort=False):
        classes = classes_of(tiles)
        named = dict(zip(SCORE, key))
        headline, reason = choices[tuple(named[k] for k in side)]
        for level in LEVELS:
            units = rollup(tiles, level)
            rows.append(
                {
                    **named,
                    "level": level,
                    "headline": level == headline,
                    "headline_reason": reason,
                    "mixed_units": mixed_units(tiles, level)[0],
                    **scores(units, classes),
                }
            )
    return pd.DataFrame(rows)


def class_table(predictions):
    """Per (run, test set, level, class): precision, recall, F1 and support (true units of the class)."""
    rows = []
    for key, tiles in predictions.groupby(SCORE, sort=False):
        classes = classes_of(tiles)
        for level in LEVELS:
            units = rollup(tiles, level)
            if units.empty:  # every unit at this level held several classes: nothing to score
                continue
            precision, recall, f1, support = precision_recall_fscore_support(
                units["true"], units["predicted"], labels=classes, zero_division=0
            )
            for i, cls in enumerate(classes):
                rows.append(
                    {
                        **dict(zip(SCORE, key)),
                        "level": level,
                        "class": cls,
                        "precision": precision[i],
                        "recall": recall[i],
                        "f1": f1[i],
                        "support": int(support[i]),
                    }
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
