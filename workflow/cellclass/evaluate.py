"""Accuracy statistics across training runs: per run, per source image, across seeds.

Every function works on tidy pandas tables so the same numbers feed the report,
the figures and a notebook. One run is one (experiment, model, seed); a run is
scored on several test sets, the dataset's own test side first.
"""

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

RUN = ["experiment", "dataset", "model", "seed"]
SCORE = [*RUN, "test_set"]
GROUP = ["experiment", "dataset", "model", "test_set"]

# Training accuracy counts as "100%" from here on: Keras averages over batches,
# so a perfectly fitted epoch can print 0.9999.
PERFECT = 0.999
# A run only counts as overfitting once it has (nearly) memorised its training set.
SATURATED = 0.98
CLIP = 1e-7
_TEXT = {"test_set": str, "tile": str, "sample": str, "group": str, "true": str, "predicted": str}


def _p_columns(table):
    return [c for c in table.columns if c.startswith("p_")]


def _label(experiment, model):
    return f"{experiment}/{model}"


def collect_runs(run_dirs, experiments):
    """Read run folders `.../train/<experiment>/<model>/seed<N>` into (runs, history, predictions) tables.

    Experiment, model and seed come from the path, the dataset from `experiments`; `runs` holds metrics.json
    per run, less the per-test-set numbers that run_table recomputes from the predictions.
    """
    runs, histories, predictions = [], [], []
    for run_dir in map(Path, run_dirs):
        match = re.fullmatch(r"seed(\d+)", run_dir.name)
        if match is None:
            raise ValueError(f"{run_dir}: run folder must be named seed<N>")
        experiment, model, seed = run_dir.parent.parent.name, run_dir.parent.name, int(match[1])
        if experiment not in experiments:
            raise ValueError(f"{run_dir}: experiment {experiment!r} is not among {sorted(experiments)}")
        keys = {"experiment": experiment, "dataset": experiments[experiment], "model": model, "seed": seed}

        metrics = json.loads((run_dir / "metrics.json").read_text())
        row = {k: v for k, v in metrics.items() if k not in ("model", "seed", "test_accuracy", "test_tiles")}
        runs.append({**keys, **row, "n_classes": len(metrics["classes"])})

        history = pd.read_csv(run_dir / "history.csv")
        histories.append(history.assign(**keys)[[*RUN, *history.columns]])

        try:
            table = pd.read_csv(run_dir / "predictions.tsv", sep="\t", dtype=_TEXT)
        except pd.errors.EmptyDataError:
            continue
        # Keep the run's class order (metrics.json), which decides argmax ties.
        p_columns = [f"p_{c}" for c in metrics["classes"]]
        other = [c for c in table.columns if not c.startswith("p_")]
        predictions.append(table[other + p_columns].assign(**keys)[[*RUN, *other, *p_columns]])

    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame(columns=RUN)
    predictions = pd.concat(predictions, ignore_index=True) if predictions else pd.DataFrame(columns=SCORE)
    return pd.DataFrame(runs), history, predictions


def _true_probability(predictions):
    """Probability each tile's row gives its true class (NaN where the model lacks that class)."""
    p_columns = _p_columns(predictions)
    index = {c[len("p_") :]: i for i, c in enumerate(p_columns)}
    column = predictions["true"].map(index)
    probabilities = predictions[p_columns].to_numpy(dtype=float)
    known = column.notna().to_numpy()
    out = np.full(len(predictions), np.nan)
    out[known] = probabilities[known, column[known].astype(int).to_numpy()]
    return out


def _training_summary(history):
    history = history.sort_values([*RUN, "epoch"])
    perfect = history[history["train_accuracy"] >= PERFECT]
    return (
        history.groupby(RUN, sort=False)
        .agg(final_train_accuracy=("train_accuracy", "last"))
        .join(perfect.groupby(RUN, sort=False)["epoch"].min().rename("first_epoch_train_100").astype(float))
        .reset_index()
    )


def run_table(history, predictions, *, gap_threshold=0.2):
    """One row per (run, test set): tile and image accuracy, loss, training accuracy and an overfit flag.

    Overfit: the run fits its training set (final train accuracy >= 0.98) yet tests `gap_threshold` or more lower.
    """
    predictions = predictions.assign(
        correct=predictions["true"] == predictions["predicted"],
        loss=-np.log(np.clip(_true_probability(predictions), CLIP, 1.0)),
        # Classes of the run = its probability columns that are filled in.
        n_classes=predictions[_p_columns(predictions)].notna().sum(axis=1),
    )
    table = (
        predictions.groupby(SCORE, sort=False)
        .agg(
            n_classes=("n_classes", "max"),
            n_tiles=("correct", "size"),
            test_accuracy=("correct", "mean"),
            test_loss=("loss", "mean"),
        )
        .reset_index()
    )
    images = (
        image_table(predictions)
        .groupby(SCORE, sort=False)
        .agg(image_accuracy=("correct", "mean"), n_images=("correct", "size"))
        .reset_index()
    )
    table = table.merge(images, on=SCORE, how="left").merge(_training_summary(history), on=RUN, how="left")
    table["gap"] = table["final_train_accuracy"] - table["test_accuracy"]
    table["overfit"] = (table["final_train_accuracy"] >= SATURATED) & (table["gap"] >= gap_threshold)
    return table


def image_table(predictions):
    """Roll tiles up to their source image: mean class probability, its argmax, and whether that is right.

    An image is what a human would judge, so this is the accuracy to set beside theirs.
    """
    p_columns = _p_columns(predictions)
    keys = [*SCORE, "sample"]
    images = (
        predictions.groupby(keys, sort=False)
        .agg(true=("true", "first"), n_tiles=("true", "size"), **{c: (c, "mean") for c in p_columns})
        .reset_index()
    )
    # idxmax skips the NaN columns of classes another run had; ties go to the first class, as argmax does.
    images.insert(images.columns.get_loc("true") + 1, "predicted", images[p_columns].idxmax(axis=1).str[len("p_") :])
    images.insert(images.columns.get_loc("predicted") + 1, "correct", images["true"] == images["predicted"])
    return images


def _interval(values, level=0.95):
    n = len(values)
    if n < 2:
        return np.nan, np.nan
    mean, sem = values.mean(), values.std(ddof=1) / np.sqrt(n)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sem
    # An accuracy lies in [0, 1]; the t interval of a few seeds near 1 does not know that.
    return max(mean - half, 0.0), min(mean + half, 1.0)


def summary_table(runs, human=None):
    """Across seeds, per (experiment, model, test set): mean test accuracy with a t 95% interval.

    `runs` is run_table's output; `human` (experiment -> by-eye accuracy) fills only the
    experiment's own test set, where it was measured.
    """
    human = human or {}
    rows = []
    for key, group in runs.groupby(GROUP, sort=False):
        experiment, dataset, _, test_set = key
        accuracy = group["test_accuracy"]
        low, high = _interval(accuracy)
        rows.append(
            {
                **dict(zip(GROUP, key)),
                "n_runs": len(group),
                "mean": accuracy.mean(),
                "std": accuracy.std(ddof=1),
                "ci95_low": low,
                "ci95_high": high,
                "image_accuracy": group["image_accuracy"].mean(),
                "final_train_accuracy": group["final_train_accuracy"].mean(),
                "overfit_share": group["overfit"].mean(),
                "human": human.get(experiment, np.nan) if test_set == dataset else np.nan,
            }
        )
    return pd.DataFrame(rows)


def _own_test_set(runs):
    return runs[runs["test_set"] == runs["dataset"]]


def _format_p(p):
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def compare(runs, a, b, test_set=None):
    """Mann–Whitney U test of test accuracy across seeds between (experiment, model) groups `a` and `b`.

    Rank-based, so a handful of seeds needs no normality; test_set=None scores each group on its own dataset.
    """
    scored = _own_test_set(runs) if test_set is None else runs[runs["test_set"] == test_set]
    samples = [
        scored.loc[(scored["experiment"] == experiment) & (scored["model"] == model), "test_accuracy"]
        for experiment, model in (a, b)
    ]
    n_a, n_b = len(samples[0]), len(samples[1])
    mean_a, mean_b = samples[0].mean(), samples[1].mean()
    label_a, label_b = _label(*a), _label(*b)
    where = "" if test_set is None else f" on {test_set}"
    head = f"{label_a} (mean {mean_a:.2f}, n={n_a}) vs {label_b} (mean {mean_b:.2f}, n={n_b}){where}"
    if n_a and n_b:
        result = stats.mannwhitneyu(samples[0], samples[1], alternative="two-sided")
        u, p = float(result.statistic), float(result.pvalue)
        text = f"{head}: Mann–Whitney U = {u:g}, {_format_p(p)}"
    else:
        u = p = np.nan
        text = f"{head}: no test (a group has no runs)"
    return {
        "a": label_a,
        "b": label_b,
        "n_a": n_a,
        "n_b": n_b,
        "mean_a": mean_a,
        "mean_b": mean_b,
        "U": u,
        "p": p,
        "text": text,
    }


def comparisons(runs):
    """compare() for every pair of (experiment, model) groups, each on its own dataset's test set."""
    groups = list(dict.fromkeys(zip(runs["experiment"], runs["model"])))
    columns = ["a", "b", "n_a", "n_b", "mean_a", "mean_b", "U", "p", "text"]
    return pd.DataFrame([compare(runs, a, b) for a, b in itertools.combinations(groups, 2)], columns=columns)


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
    filled = table[table["count"] > 0]
    ece = float((filled["count"] / len(confidence) * (filled["accuracy"] - filled["confidence"]).abs()).sum())
    return table, ece


def _epochs(first):
    low, high = int(first.min()), int(first.max())
    return f"epoch {low}" if low == high else f"epoch {low}–{high}"


def overfitting_sentence(runs):
    """One plain-English line per (experiment, model): did training accuracy reach 100% while test lagged?"""
    lines = []
    for (experiment, model), group in _own_test_set(runs).groupby(["experiment", "model"], sort=False):
        n, n_over = len(group), int(group["overfit"].sum())
        reached = group[group["first_epoch_train_100"].notna()]
        verdict = (
            "no run overfits" if n_over == 0 else "overfitting" if n_over == n else f"{n_over} of {n} runs overfit"
        )
        if len(reached):
            verb = "while test accuracy stayed at" if n_over else "and test accuracy was"
            body = (
                f"{len(reached)} of {n} runs reached 100% training accuracy "
                f"(first at {_epochs(reached['first_epoch_train_100'])}) "
                f"{verb} {reached['test_accuracy'].mean():.2f}"
            )
        else:
            body = (
                f"0 of {n} runs reached 100% training accuracy; mean test accuracy {group['test_accuracy'].mean():.2f}"
            )
        lines.append(f"{_label(experiment, model)}: {body} — {verdict}.")
    return "\n".join(lines)
