"""The leakage check: what a random split of tiles, which ignores images and groups, would have claimed.

A control run per experiment (its first model, seed 0) trains and tests on such a split, so tiles of one image
or well sit on both sides. Its test score beside the grouped split's is the case for splitting by group. Only
the tile level means anything for the control: its images and groups are on both sides of the split.
"""

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn.metrics import balanced_accuracy_score

from cellclass.evaluate.runs import read_runs
from cellclass.io.atomic import atomic_path
from cellclass.io.errors import InputError
from cellclass.io.plotting import JITTER, save

COLUMNS = [
    "experiment",
    "dataset",
    "model",
    "unit",
    "random_split",
    "grouped_split",
    "headline_unit",
    "grouped_split_headline",
    "gap",
    "random_test_tiles",
    "grouped_runs",
]


def leakage_table(controls, summary):
    """One row per experiment: the control's balanced accuracy per tile (scikit-learn, over its random test
    tiles), the grouped-split runs' estimate of the same model on the dataset's own test side per tile and at
    the headline unit (summary.tsv), and the gap per tile (random minus grouped).

    `controls` is the control runs' predictions (runs.read_runs); `summary` the evaluation's summary table.
    """
    rows = []
    ba = summary[(summary["metric"] == "balanced_accuracy") & (summary["test_set"] == summary["dataset"])]
    for (experiment, dataset, model), tiles in controls.groupby(["experiment", "dataset", "model"], sort=False):
        grouped = ba[(ba["experiment"] == experiment) & (ba["model"] == model)]
        tile, top = grouped[grouped["level"] == "tile"], grouped[grouped["headline"].astype(bool)]
        if tile.empty or top.empty:
            raise InputError(
                f"the evaluation's summary has no balanced accuracy of {experiment}/{model} on its "
                "own test side to hold the leakage control against; rerun the evaluate job"
            )
        tile, top = tile.iloc[0], top.iloc[0]
        random = balanced_accuracy_score(tiles["true"], tiles["predicted"])
        rows.append(
            {
                "experiment": experiment,
                "dataset": dataset,
                "model": model,
                "unit": tile["unit"],
                "random_split": random,
                "grouped_split": tile["estimate"],
                "headline_unit": top["unit"],
                "grouped_split_headline": top["estimate"],
                "gap": random - tile["estimate"],
                "random_test_tiles": len(tiles),
                "grouped_runs": int(tile["n_runs"]),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def read_controls(run_dirs):
    """The control runs' test predictions, keyed as runs.read_runs keys them."""
    return read_runs(run_dirs)[2]


def leakage_figure(runs, table, paths):
    """Per experiment: the grouped-split runs' balanced accuracy at the headline unit and per tile (boxes over
    runs, points per run) beside the random tile split's control (one star: one run, no box)."""
    fig = Figure(figsize=(max(4.5, 3.2 * len(table) + 1.5), 4.5), layout="constrained")
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    ticks, labels, values = [], [], []
    for i, row in enumerate(table.itertuples()):
        own = runs[
            (runs["experiment"] == row.experiment) & (runs["model"] == row.model) & (runs["test_set"] == row.dataset)
        ]
        columns = [
            (own[own["headline"].astype(bool)], f"split by {row.headline_unit}\nper {row.headline_unit}"),
            (own[own["level"] == "tile"], f"split by {row.headline_unit}\nper {row.unit}"),
        ]
        base = 4 * i
        for k, (scored, label) in enumerate(columns):
            accuracy = scored["balanced_accuracy"].astype(float)
            ax.boxplot([accuracy], positions=[base + k], widths=0.5, showfliers=False, medianprops={"color": "black"})
            ax.scatter(
                base + k + rng.uniform(-JITTER, JITTER, len(accuracy)),
                accuracy,
                s=20,
                color="tab:blue",
                zorder=3,
                clip_on=False,
            )
            ticks.append(base + k)
            labels.append(label)
            values += list(accuracy)
        ax.scatter([base + 2], [row.random_split], s=120, marker="*", color="tab:red", zorder=3, clip_on=False)
        ticks.append(base + 2)
        labels.append(f"random {row.unit} split\nper {row.unit}")
        chance = own["chance"].iloc[0] if len(own) else np.nan
        ax.hlines(chance, base - 0.4, base + 2.4, color="gray", linestyle=":")
        ax.text(
            base + 1, 1.03, f"{row.experiment}/{row.model}: gap {row.gap:+.2f} per {row.unit}", ha="center", fontsize=8
        )
        values += [row.random_split, chance]
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set_ylim(min([0.4, *[v for v in values if np.isfinite(v)]]) - 0.05, 1.08)
    ax.set_ylabel("test balanced accuracy")
    ax.set_title("What a random tile split would have claimed")
    ax.legend(
        handles=[
            Line2D([], [], color="tab:blue", marker="o", linestyle="", label="grouped split, a run"),
            Line2D(
                [],
                [],
                color="tab:red",
                marker="*",
                markersize=10,
                linestyle="",
                label="random tile split (one control run)",
            ),
            Line2D([], [], color="gray", linestyle=":", label="chance (1/K)"),
        ],
        loc="lower left",
        frameon=False,
        fontsize=8,
    )
    return save(fig, paths)


def write_leakage(run_dirs, *, summary_path, runs_path, table_path, figure_paths):
    """The leakage job: the table of each control against its grouped-split runs, and its figure."""
    summary = pd.read_csv(summary_path, sep="\t", dtype={"test_set": str, "dataset": str})
    runs = pd.read_csv(runs_path, sep="\t", dtype={"test_set": str, "dataset": str})
    table = leakage_table(read_controls(run_dirs), summary)
    with atomic_path(table_path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    leakage_figure(runs, table, figure_paths)
    return table
