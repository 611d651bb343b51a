"""Quality reports: a dataset's table and its figure, one panel per measure with each set's images as points side
by side, outliers in red."""

import logging
import math

import numpy as np
from matplotlib.figure import Figure

from cellclass.io import tilestore
from cellclass.io.plotting import JITTER, save
from cellclass.prepare import qc

log = logging.getLogger(__name__)
COLUMNS = 5


def quality_figure(tables, paths, title):
    """`tables`: label -> QC table (one row per image, with an `unlike` column naming the measures that moved);
    the training images first. Logged measures get a log axis; a measure no image has is left out."""
    measures = [
        m
        for m in qc.comparable(next(iter(tables.values())))
        if any(m in t and t[m].notna().any() for t in tables.values())
    ]
    rows = max(1, math.ceil(len(measures) / COLUMNS))
    # A fixed grid, not constrained layout: it took 2 of the job's 3 seconds to place 20 small panels.
    fig = Figure(figsize=(2.3 * COLUMNS, 1.9 * rows + 0.5))
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.06, top=1 - 0.45 / (1.9 * rows + 0.5), hspace=0.55, wspace=0.45)
    rng = np.random.default_rng(0)  # the jitter: the same figure every run
    for i, name in enumerate(measures):
        ax = fig.add_subplot(rows, COLUMNS, i + 1)
        for x, table in enumerate(tables.values()):
            if name not in table:
                continue
            values = table[name].to_numpy(float)
            moved = table.get("unlike", "").astype(str).str.contains(qc.describe(name), regex=False).to_numpy()
            jitter = x + rng.uniform(-JITTER, JITTER, len(values))
            ax.scatter(jitter[~moved], values[~moved], s=9, color="0.35" if x == 0 else "tab:blue", alpha=0.7)
            ax.scatter(jitter[moved], values[moved], s=14, color="tab:red", marker="x")
        if qc.is_logged(name) and np.nanmin([np.nanmin(t[name]) if name in t else np.nan for t in tables.values()]) > 0:
            ax.set_yscale("log")
        ax.set_xticks(range(len(tables)), list(tables), fontsize=6)
        ax.set_xlim(-0.6, len(tables) - 0.4)
        ax.set_title(qc.describe(name), fontsize=7)
        ax.tick_params(axis="y", which="both", labelsize=5)
    fig.suptitle(
        f"{title}: one point per image; red ×: beyond {qc.LIMIT:g} robust spreads of the training images", fontsize=8
    )
    return save(fig, paths)


def report_dataset(tile_files, table_path, figure_paths, dataset):
    """A dataset's qc.parquet (every image's measures, and which are outliers of their own set) and its figure;
    outliers and a set too small to judge are logged as warnings. Returns the table."""
    table = qc.own_outliers(qc.table_of(tilestore.load_all(tile_files, tiles=False)))
    if len(table) < qc.MIN_IMAGES:
        log.warning(
            "dataset %s: %d image(s), too few to fit quality ranges (%d needed): new images are not "
            "checked against them",
            dataset,
            len(table),
            qc.MIN_IMAGES,
        )
    for row in table[table["unlike"] != ""].itertuples():
        log.warning("dataset %s: image %s is unlike the rest of its set: %s", dataset, row.image, row.unlike)
    for row in table[table["qc_note"] != ""].itertuples():
        log.warning("dataset %s: image %s: %s", dataset, row.image, row.qc_note)
    qc.write_table(table, table_path)
    quality_figure({dataset: table}, figure_paths, f"image quality of {dataset}")
    return table
