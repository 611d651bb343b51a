"""The evaluation stage: every table across runs, and the findings in words.

Runs are read by cellclass.evaluate.runs, scored by cellclass.evaluate.metrics, summarised by
cellclass.evaluate.stats and put into sentences by cellclass.evaluate.findings; this module joins
them into the tables that the report, the figures and a notebook read.
"""

import itertools

import numpy as np
import pandas as pd

from cellclass.evaluate import degenerate, ensemble, findings, leakage, metrics, stats
from cellclass.evaluate.runs import RUN, kept_epochs, read_calibration_parts, read_runs
from cellclass.io.atomic import atomic_path

SCORE = metrics.SCORE
GROUP = ["experiment", "dataset", "model", "test_set"]
# Training accuracy counts as "100%" from here on.
PERFECT = 0.999
INTERVAL_METRICS = ("accuracy", "balanced_accuracy")
CHANCE_MARGIN = 0.05


def training_summary(history):
    """Per run, at the epoch it kept (the model it scored the test side with; its `kept` column, else the last):
    that epoch, the inference-mode training accuracy, running (train-mode) accuracy and validation accuracy;
    and the first epoch at which the inference-mode training accuracy reached 100%."""
    history = history.sort_values([*RUN, "epoch"])
    perfect = history[history["train_eval_accuracy"] >= PERFECT]
    return (
        kept_epochs(history)
        .groupby(RUN, sort=False)
        .agg(
            kept_epoch=("epoch", "last"),
            final_train_accuracy=("train_eval_accuracy", "last"),
            final_running_train_accuracy=("train_accuracy", "last"),
            final_validation_accuracy=("validation_accuracy", "last"),
        )
        .join(perfect.groupby(RUN, sort=False)["epoch"].min().rename("first_epoch_train_100").astype(float))
        .reset_index()
    )


def test_time_augmentation(runs):
    """Per run, the test-time augmentation of its test predictions (evaluation.tta); "none" for runs that predate it."""
    return runs["tta"].fillna("none") if "tta" in runs else pd.Series("none", index=runs.index)


CALIBRATION = ("ece_before", "ece_after", "log_loss_before", "log_loss_after")


def calibration_table(runs):
    """Per (run, test set): the run's temperature, what it was fitted on ("uncalibrated" without a validation
    side) and, per tile, ECE and log loss before and after it. Runs that predate calibration have no rows."""
    rows = []
    for run in runs.to_dict("records"):
        record = run.get("calibration")
        for test_set, seen in (record["test_sets"] if isinstance(record, dict) else {}).items():
            rows.append(
                {
                    **{k: run[k] for k in RUN},
                    "test_set": test_set,
                    "temperature": record["temperature"],
                    "calibration": record["fitted_on"] or "uncalibrated",
                    **{k: seen[k] for k in CALIBRATION},
                }
            )
    return pd.DataFrame(rows, columns=[*SCORE, "temperature", "calibration", *CALIBRATION])


def run_table(predictions, history, runs, *, thresholds, resamples=999):
    """One row per (run, test set, level): every metric, the run's flags, `tta`, the test-time augmentation
    of its test predictions, and its calibration (calibration_table; before and after on the tile rows only).

    overfit: inference-mode training accuracy >= overfit_train and the tile-level
    balanced test accuracy `overfit_gap` or more below it. collapsed: a share of
    `collapse_share` or more of the tile calls is one class. at_chance: the 95%
    interval (over test groups) of the tile-level balanced accuracy reaches chance or,
    with too few groups for an interval, it is within CHANCE_MARGIN of chance.
    constant_output: many tiles, or nearly all of some test group's, got one probability vector
    (cellclass.evaluate.degenerate, with constant_tiles, constant_value and constant_groups).
    """
    table = metrics.score_table(predictions)
    table = table.merge(training_summary(history), on=RUN, how="left")
    extra = runs.assign(tta=test_time_augmentation(runs))[
        [*RUN, "validation_tiles", "class_balance", "imbalance_ratio", "tta"]
    ]
    table = table.merge(extra, on=RUN, how="left").merge(calibration_table(runs), on=SCORE, how="left")
    table.loc[table["level"] != "tile", list(CALIBRATION)] = np.nan  # measured per tile (or cell)
    table = table.fillna({"temperature": 1.0, "calibration": "uncalibrated"})  # runs from before calibration
    tile = table[table["level"] == "tile"].set_index(SCORE)["balanced_accuracy"]
    table["gap"] = table["final_train_accuracy"] - table.set_index(SCORE).index.map(tile)
    table["overfit"] = (table["final_train_accuracy"] >= thresholds["overfit_train"]) & (
        table["gap"] >= thresholds["overfit_gap"]
    )
    lows = {}
    for key, tiles in predictions.groupby(SCORE, sort=False):
        classes = metrics.classes_of(tiles)
        C, N, _ = stats.correct_counts(tiles, classes, "tile", stats.run_keys(tiles))
        lows[key] = stats.interval(C, N, resamples=resamples)[1]
    table["balanced_accuracy_low"] = table.set_index(SCORE).index.map(lows)
    tile_rows = table["level"] == "tile"
    table["collapsed"] = tile_rows & (table["top_call_share"] >= thresholds["collapse_share"])
    # Without an interval (too few test groups), "at chance" means within CHANCE_MARGIN of it.
    low = table["balanced_accuracy_low"].fillna(table["balanced_accuracy"] - CHANCE_MARGIN)
    table["at_chance"] = tile_rows & (low <= table["chance"])
    # On each run's own probabilities: its temperature would squeeze or saturate the differences between tiles.
    temperatures = calibration_table(runs).set_index(SCORE)["temperature"].to_dict()
    table = table.merge(degenerate.run_flags(predictions, temperatures), on=SCORE, how="left")
    table["constant_output"] &= tile_rows
    return metrics.with_units(table, metrics.kinds_of(runs))


def summary_table(predictions, table, *, human=None, resamples=999):
    """Across runs, per (experiment, model, test set, level, metric): mean, sd, min and max over runs and, for
    accuracy and balanced accuracy, the estimate with a 95% bootstrap interval over test groups and runs.

    Under cross-validation a run scores its fold's test groups; on that own test side the estimate pools each
    seed's folds (together they call every group) and averages the seeds, and n_groups / n_units count every
    fold's (stats.replicates). Elsewhere the estimate is the mean over runs. `tta` is the runs' test-time
    augmentation. `human` (by-eye tile accuracy
    per experiment) fills the tile rows of the experiment's own test side. n_units counts the units scored,
    mixed_units those left out for holding tiles of several classes; headline_reason says why the headline is
    not at a larger unit (metrics.headline_choice)."""
    human = human or {}
    rows = []
    for key, tiles in predictions.groupby(GROUP, sort=False):
        experiment, dataset, model, test_set = key
        classes = metrics.classes_of(tiles)
        runs = stats.run_keys(tiles)
        scored = table[(table[GROUP] == pd.Series(key, index=GROUP)).all(axis=1)]
        for level, at_level in scored.groupby("level", sort=False):
            C, N, _ = stats.correct_counts(tiles, classes, level, runs)
            counts = stats.replicates(C, N, runs)
            mixed, n_units = metrics.mixed_units(tiles, level)
            for metric in metrics.METRICS:
                values = at_level[metric].astype(float)
                estimate = low = high = np.nan
                if metric in INTERVAL_METRICS:
                    estimate, low, high = stats.interval(*counts, metric, resamples=resamples)
                rows.append(
                    {
                        **dict(zip(GROUP, key)),
                        "level": level,
                        "unit": at_level["unit"].iloc[0],
                        "headline": bool(at_level["headline"].iloc[0]),
                        "headline_reason": at_level["headline_reason"].iloc[0],
                        "metric": metric,
                        "n_runs": len(values),
                        "n_folds": len({fold for fold, _ in runs}),
                        # Groups of several classes are not scored per group (metrics.rollup).
                        "n_groups": tiles["group"].nunique() - (mixed if level == "group" else 0),
                        "n_units": n_units - mixed,
                        "mixed_units": mixed,
                        "mean": values.mean(),
                        "sd": values.std(ddof=1) if len(values) > 1 else np.nan,
                        "min": values.min(),
                        "max": values.max(),
                        "estimate": estimate,
                        "ci95_low": low,
                        "ci95_high": high,
                        "chance": at_level["chance"].iloc[0],
                        "majority_rate": at_level["majority_rate"].iloc[0],
                        "human": human.get(experiment, np.nan)
                        if (test_set == dataset and level == "tile" and metric == "accuracy")
                        else np.nan,
                        "tta": ",".join(sorted(set(scored["tta"]))),
                    }
                )
    return pd.DataFrame(rows)


COMPARISON_COLUMNS = [
    "experiment",
    "test_set",
    "level",
    "unit",
    "a",
    "b",
    "n_pairs",
    "n_folds",
    "mean_a",
    "mean_b",
    "difference",
    "ci95_low",
    "ci95_high",
    "p",
    "p_holm",
    "text",
]


def comparisons(predictions, *, kinds=None, resamples=999):
    """Every pair of models of an experiment on each of its test sets, paired by run (fold and seed), at the
    headline level and per tile.

    The effect is the paired difference in balanced accuracy (estimated as in summary_table) with a 95%
    bootstrap interval over test groups and runs (or seeds, see stats.replicates); a Wilcoxon signed-rank
    p-value over the paired runs (Holm-corrected over all comparisons) only where there are enough pairs for
    it to be able to fall below 0.05. `kinds` (experiment -> prepare.kind) names the units.
    """
    kinds = kinds or {}
    rows = []
    for (experiment, test_set), tiles in predictions.groupby(["experiment", "test_set"], sort=False):
        model_names = list(dict.fromkeys(tiles["model"]))
        classes = metrics.classes_of(tiles)
        pairs = [(a, b) for i, a in enumerate(model_names) for b in model_names[i + 1 :]]
        for level, (a, b) in itertools.product(dict.fromkeys([metrics.headline_level(tiles), "tile"]), pairs):
            of_a, of_b = tiles[tiles["model"] == a], tiles[tiles["model"] == b]
            runs = sorted(set(stats.run_keys(of_a)) & set(stats.run_keys(of_b)))
            C_a, N, _ = stats.correct_counts(of_a, classes, level, runs)
            C_b, _, _ = stats.correct_counts(of_b, classes, level, runs)
            (S_a, S), (S_b, _) = stats.replicates(C_a, N, runs), stats.replicates(C_b, N, runs)
            mean, low, high = stats.interval(S_a - S_b, S, resamples=resamples)
            rows.append(
                {
                    "experiment": experiment,
                    "test_set": test_set,
                    "level": level,
                    "unit": metrics.unit_of(level, kinds.get(experiment, "fields")),
                    "a": a,
                    "b": b,
                    "n_pairs": len(runs),
                    "n_folds": len({fold for fold, _ in runs}),
                    "mean_a": float(np.mean(stats.per_run(S_a, S))),
                    "mean_b": float(np.mean(stats.per_run(S_b, S))),
                    "difference": mean,
                    "ci95_low": low,
                    "ci95_high": high,
                    "p": stats.signed_rank(stats.per_run(C_a - C_b, N)),
                }
            )
    result = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    result["p_holm"] = stats.holm(result["p"])
    result["text"] = [findings.comparison(row) for row in result.itertuples()]
    return result


def evaluate(run_dirs, *, human, thresholds, resamples, images_without_tiles, outputs, leakage_runs=(), quality=()):
    """The evaluate job: read every run, write every table and the findings page (with the leakage check's
    controls held against the runs, when `leakage_runs` names them, and the datasets' image quality tables)."""
    runs, history, predictions = read_runs(run_dirs)
    table = run_table(predictions, history, runs, thresholds=thresholds, resamples=resamples)
    summary = summary_table(predictions, table, human=human, resamples=resamples)
    compared = comparisons(predictions, kinds=metrics.kinds_of(runs), resamples=resamples)
    ensembles = ensemble.ensemble_table(predictions, read_calibration_parts(run_dirs), metrics.kinds_of(runs))
    tables = {
        "runs": table,
        "classes": metrics.class_table(predictions),
        "history": history,
        "images": metrics.rollup(predictions, "image", mixed=True).drop(columns="unit"),
        "groups": metrics.rollup(predictions, "group", mixed=True).drop(columns="unit"),
        "summary": summary,
        "comparisons": compared,
        "ensemble_calibration": ensembles,
    }
    for name, frame in tables.items():
        with atomic_path(outputs[name]) as tmp:
            frame.to_csv(tmp, sep="\t", index=False)
    empty = findings.read_tables(images_without_tiles)
    leaked = leakage.leakage_table(leakage.read_controls(leakage_runs), summary) if leakage_runs else None
    quality_table = pd.concat([pd.read_parquet(p) for p in quality]) if quality else pd.DataFrame()
    sections = findings.evaluation_sections(
        runs, table, summary, compared, empty, predictions, leaked, ensembles, quality_table
    )
    with atomic_path(outputs["findings"]) as tmp:
        findings.write_html(tmp, sections)
    return sections
