"""A map of the cells: a seeded 2-D embedding of one run's penultimate features (UMAP where umap-learn is
installed, else PCA), coloured by class, call and, on plates, by dose and role; and a gallery of cells along
the map's axes.

A map shows one run's tiles only: two runs' features are not in one coordinate system (cellclass.predict.
profiles). Under k folds each fold's test side has its own run, so an experiment gets a panel per fold (its
first seed); a prediction set gets one, its first member's.
"""

import importlib.util

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from cellclass.io.atomic import atomic_path
from cellclass.io.contact_sheet import to_rgb
from cellclass.io.plotting import colours, save
from cellclass.predict.profiles import feature_columns

METHODS = ("auto", "umap", "pca")
GALLERY_CELLS = 8  # cells per axis in the gallery
UNKNOWN = "unknown"


def method_of(method):
    """The embedding `method` stands for: auto is UMAP where umap-learn is installed, else PCA."""
    if method == "auto":
        return "umap" if importlib.util.find_spec("umap") else "pca"
    return method


def embed(features, method="auto", seed=0):
    """(n, 2) coordinates of `features` (n, d), standardised first so no feature dominates by its scale."""
    features = np.asarray(features, np.float64)
    if len(features) < 3:  # nothing to lay out; PCA and UMAP need a few points
        return np.zeros((len(features), 2))
    scaled = StandardScaler().fit_transform(features)
    if method_of(method) == "umap":
        import umap

        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(features) - 1), random_state=seed)
        return reducer.fit_transform(scaled)
    return PCA(n_components=2, random_state=seed).fit_transform(scaled)


def map_runs(profiles, per_fold):
    """The runs a map shows: the first (in table order), or with `per_fold` the first of each `fold<k>/`."""
    first = {}
    for run in profiles["run"].unique():
        first.setdefault(run.split("/")[0] if per_fold else "", run)
    return list(first.values())


def coordinates(profiles, method="auto", seed=0, per_fold=False):
    """Per shown run's tiles: run, tile, x, y (the map as a tidy table, indexed as `profiles`)."""
    frames = []
    for run in map_runs(profiles, per_fold):
        mine = profiles[profiles["run"] == run]
        xy = embed(mine[feature_columns(mine)].to_numpy(), method, seed)
        frames.append(pd.DataFrame({"run": run, "tile": mine["tile"].to_numpy(), "x": xy[:, 0], "y": xy[:, 1]},
                                   index=mine.index))
    return pd.concat(frames)


def colourings(profiles):
    """What the panels are coloured by: the known class (where any is known), the run's call and, on a plate,
    the dose and the well's role."""
    chosen = []
    if "true_class" in profiles and profiles["true_class"].notna().any():
        chosen.append("true_class")
    chosen.append("call")
    for column in ("dose", "role"):
        if column in profiles and profiles[column].notna().any():
            chosen.append(column)
    return chosen


def map_figure(profiles, coords, paths, *, title, method):
    """Rows: the shown runs; columns: the colourings. Every point is a tile (cell)."""
    shown = profiles.loc[coords.index].assign(x=coords["x"], y=coords["y"])
    columns = colourings(shown)
    runs = list(coords["run"].unique())
    fig = Figure(figsize=(3.6 * len(columns), 3.2 * len(runs) + 0.5), layout="constrained")
    axes = fig.subplots(len(runs), len(columns), squeeze=False)
    label = "UMAP" if method_of(method) == "umap" else "PC"
    for r, run in enumerate(runs):
        mine = shown[shown["run"] == run]
        for c, column in enumerate(columns):
            ax = axes[r][c]
            _scatter(ax, mine, column)
            ax.set_title(f"{run}: {column.replace('_', ' ')}" if run else column.replace("_", " "), fontsize=9)
            ax.set_xlabel(f"{label} 1", fontsize=8)
            ax.set_ylabel(f"{label} 2", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    return save(fig, paths)


def _scatter(ax, table, column):
    size = max(2.0, min(12.0, 3000 / max(len(table), 1)))
    if column == "dose":
        dosed = table[table["dose"].notna() & (table["dose"] > 0)]
        ax.scatter(table["x"], table["y"], s=size, c="lightgray", linewidths=0, label="no dose")
        points = ax.scatter(dosed["x"], dosed["y"], s=size, c=np.log10(dosed["dose"]), cmap="viridis", linewidths=0)
        ax.figure.colorbar(points, ax=ax, label="log10 dose")
        return
    values = table[column].fillna(UNKNOWN).astype(str)
    # A class keeps its colour in every panel (known class and call); unknown is gray.
    named = set(values) | (set(table["call"].astype(str)) if column in ("true_class", "call") else set())
    palette = {**colours(sorted(named - {UNKNOWN})), UNKNOWN: "lightgray"}
    for value, colour in palette.items():
        part = table[values == value]
        if part.empty:
            continue
        ax.scatter(part["x"], part["y"], s=size, color=colour, linewidths=0, label=value)
    ax.legend(fontsize=7, markerscale=2, frameon=False)


def gallery_picks(coords, cells=GALLERY_CELLS):
    """Per axis (x, y) of the first shown run, the index labels of `cells` tiles at evenly spaced ranks."""
    first = coords[coords["run"] == coords["run"].iloc[0]]
    picks = {}
    for axis in ("x", "y"):
        order = first.sort_values(axis).index.to_numpy()
        picks[axis] = order[np.unique(np.linspace(0, len(order) - 1, min(cells, len(order))).round().astype(int))]
    return picks


def gallery_figure(coords, tile_pixels, paths, *, title, method):
    """Cells at evenly spaced places along each axis of the map (low to high), to read what an axis means.
    `tile_pixels(tile id)` gives a tile's (h, w, C) pixels in [0, 1]."""
    picks = gallery_picks(coords)
    label = "UMAP" if method_of(method) == "umap" else "PC"
    width = max(len(p) for p in picks.values())
    fig = Figure(figsize=(1.3 * width, 3.4), layout="constrained")
    axes = fig.subplots(2, width, squeeze=False)
    for r, (axis, rows) in enumerate(picks.items()):
        for c in range(width):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(rows):
                ax.set_axis_off()
                continue
            cell = coords.loc[rows[c]]
            ax.imshow(to_rgb(tile_pixels(cell["tile"])[None])[0], interpolation="nearest")
            ax.set_title(f"{cell[axis]:.1f}", fontsize=7)
            if c == 0:
                ax.set_ylabel(f"{label} {r + 1}\nlow → high", fontsize=8)
    fig.suptitle(title, fontsize=9)
    return save(fig, paths)


def write_map(profiles, tile_pixels, *, table, figures, gallery, title, method="auto", seed=0, per_fold=False):
    """The map's coordinates (TSV), its figure and the gallery along its axes; `per_fold`: a panel per fold."""
    coords = coordinates(profiles, method, seed, per_fold)
    with atomic_path(table) as tmp:
        coords.assign(method=method_of(method)).to_csv(tmp, sep="\t", index=False)
    map_figure(profiles, coords, figures, title=title, method=method)
    gallery_figure(coords, tile_pixels, gallery, title=f"{title}: cells along the map's axes", method=method)
    return coords
