"""Read training-run folders into tidy tables; a run's identity comes from its metrics.json, never its path."""

import json
from pathlib import Path

import pandas as pd

from cellclass.io.errors import InputError

RUN = ["experiment", "dataset", "model", "fold", "seed"]
IDENTITY = tuple(RUN)
# Columns of predictions.tsv that are names, never numbers (a tile id "0012" or a class "1" stays text).
TEXT_COLUMNS = {"test_set": str, "tile": str, "sample": str, "group": str, "true": str, "predicted": str}


def run_name(fold, seed, cross_validated):
    """How the findings and figures name a run: 'seed 1', or 'fold 2 seed 1' under cross-validation."""
    return f"fold {fold} seed {seed}" if cross_validated else f"seed {seed}"


def read_metrics(run_dir, name="metrics.json"):
    """A run's record: metrics.json (the score job's), or training.json (the train job's, without the scoring)."""
    path = Path(run_dir) / name
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not a readable {name} ({error}); rerun the job that wrote it") from None
    missing = [k for k in IDENTITY if k not in metrics]
    if missing:
        raise InputError(f"{path}: no {', '.join(missing)} recorded (a run from an older cellclass; retrain it)")
    return metrics


def read_predictions(path):
    """A run's predictions.tsv: one row per test tile, its names as text and its probabilities as numbers."""
    return pd.read_csv(path, sep="\t", dtype=TEXT_COLUMNS)


def read_runs(run_dirs):
    """(runs, history, predictions): metrics.json per run, every epoch, every test tile; keyed by RUN."""
    runs, histories, predictions = [], [], []
    for run_dir in map(Path, run_dirs):
        metrics = read_metrics(run_dir)
        keys = {k: metrics[k] for k in IDENTITY}
        runs.append({**metrics, "n_classes": len(metrics["classes"])})
        history = pd.read_csv(run_dir / "history.csv")
        histories.append(history.assign(**keys)[[*RUN, *history.columns]])
        table = read_predictions(run_dir / "predictions.tsv")
        # Keep the run's class order (metrics.json), which decides argmax ties.
        p_columns = [f"p_{c}" for c in metrics["classes"]]
        other = [c for c in table.columns if not c.startswith("p_")]
        predictions.append(table[other + p_columns].assign(**keys)[[*RUN, *other, *p_columns]])
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame(columns=RUN)
    predictions = pd.concat(predictions, ignore_index=True) if predictions else pd.DataFrame(columns=RUN)
    return pd.DataFrame(runs), history, predictions


def read_calibration_parts(run_dirs):
    """Every run's calibration.tsv, keyed by RUN: per tile of its validation side's calibration part, its
    probabilities with the run's temperature applied. Runs from before the file have no rows."""
    parts = []
    for run_dir in map(Path, run_dirs):
        path = run_dir / "calibration.tsv"
        if not path.exists():
            continue
        metrics = read_metrics(run_dir)
        table = read_predictions(path)
        p_columns = [f"p_{c}" for c in metrics["classes"]]
        other = [c for c in table.columns if not c.startswith("p_")]
        parts.append(table[other + p_columns].assign(**{k: metrics[k] for k in IDENTITY})[[*RUN, *other, *p_columns]])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=RUN)


def kept_epochs(history):
    """The rows of `history` (epochs of runs keyed by RUN) of the epoch each run kept: the model it saved and
    tested. A run's `kept` column marks it; a run from before that column kept its last epoch."""
    keys = [c for c in RUN if c in history]
    kept = history["kept"].eq(True) if "kept" in history else pd.Series(False, index=history.index)
    by_run = history.groupby(keys, sort=False)
    last = history["epoch"].eq(by_run["epoch"].transform("max"))
    return history[kept | (last & ~kept.groupby([history[k] for k in keys], sort=False).transform("any"))]
