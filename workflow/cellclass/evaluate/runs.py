"""Read training-run folders into tidy tables; a run's identity comes from its metrics.json, never its path."""

import json
from pathlib import Path

import pandas as pd

from cellclass.io.errors import InputError

RUN = ["experiment", "dataset", "model", "fold", "seed"]
IDENTITY = tuple(RUN)
_TEXT = {"test_set": str, "tile": str, "sample": str, "group": str, "true": str, "predicted": str}


def run_name(fold, seed, cross_validated):
    """How the findings and figures name a run: 'seed 1', or 'fold 2 seed 1' under cross-validation."""
    return f"fold {fold} seed {seed}" if cross_validated else f"seed {seed}"


def read_metrics(run_dir):
    path = Path(run_dir) / "metrics.json"
    metrics = json.loads(path.read_text())
    missing = [k for k in IDENTITY if k not in metrics]
    if missing:
        raise InputError(f"{path}: no {', '.join(missing)} recorded (a run from an older cellclass; rerun it)")
    return metrics


def read_runs(run_dirs):
    """(runs, history, predictions): metrics.json per run, every epoch, every test tile; keyed by RUN."""
    runs, histories, predictions = [], [], []
    for run_dir in map(Path, run_dirs):
        metrics = read_metrics(run_dir)
        keys = {k: metrics[k] for k in IDENTITY}
        runs.append({**metrics, "n_classes": len(metrics["classes"])})
        history = pd.read_csv(run_dir / "history.csv")
        histories.append(history.assign(**keys)[[*RUN, *history.columns]])
        table = pd.read_csv(run_dir / "predictions.tsv", sep="\t", dtype=_TEXT)
        # Keep the run's class order (metrics.json), which decides argmax ties.
        p_columns = [f"p_{c}" for c in metrics["classes"]]
        other = [c for c in table.columns if not c.startswith("p_")]
        predictions.append(table[other + p_columns].assign(**keys)[[*RUN, *other, *p_columns]])
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame(columns=RUN)
    predictions = pd.concat(predictions, ignore_index=True) if predictions else pd.DataFrame(columns=RUN)
    return pd.DataFrame(runs), history, predictions


def kept_epochs(history):
    """The rows of `history` (epochs of runs keyed by RUN) of the epoch each run kept: the model it saved and
    tested. A run's `kept` column marks it; a run from before that column kept its last epoch."""
    keys = [c for c in RUN if c in history]
    kept = history["kept"].eq(True) if "kept" in history else pd.Series(False, index=history.index)
    by_run = history.groupby(keys, sort=False)
    last = history["epoch"].eq(by_run["epoch"].transform("max"))
    return history[kept | (last & ~kept.groupby([history[k] for k in keys], sort=False).transform("any"))]
