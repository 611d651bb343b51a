"""A map of the cells: a seeded 2-D embedding of one run's penultimate features (UMAP; PCA for a run too small
for UMAP, and the figure says so), coloured by class, call and, on plates, by dose and role; and a gallery of
cells along the map's axes.

A map shows one run's tiles only: two runs' features are not in one coordinate system (cellclass.predict.
profiles). Under k folds each fold's test side has its own run, so an experiment gets a panel per fold (its
first seed); a prediction set gets one, its first member's.
"""

import warnings

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from cellclass.io.atomic import atomic_path
from cellclass.io.contact_sheet import to_rgb
from cellclass.io.plotting import colours, save
from cellclass.predict.profiles import feature_columns

METHODS = ("umap", "pca")
AXIS = {"umap": "UMAP", "pca": "PC"}
GALLERY_CELLS = 8  # cells per axis in the gallery
UNKNOWN = "unknown"
N_NEIGHBORS = 15  # UMAP's default neighbourhood: the cells each cell is tied to in the graph UMAP lays out
# The fewest cells UMAP maps; a smaller run gets PCA. Below 3 × (15 + 1) cells a cell's neighbourhood is over a
# third of the run, so the graph is nearly complete and says little. On generated clusters (bench/umap_map.py
# --smallest) UMAP kept neighbours no better than PCA at 16-24 cells, barely at 32, clearly from 48
# (trustworthiness 0.87 against 0.75).
UMAP_MIN_CELLS = 3 * (N_NEIGHBORS + 1)
# Below this many cells scikit-learn finds the exact nearest neighbours for UMAP: UMAP's own search is numba code
# compiled anew in each process (about 5 s below 4096 cells; NN-descent's, above, about 25 s), and scikit-learn's
# search, growing as cells², stays cheaper up to about here (bench/umap_map.py, whole map: 20,000 cells 21 s
# against 48 s, 50,000 49 s against 65 s, 100,000 even: 97 s against 108 s, but 120 CPU s against 105).
EXACT_BELOW = 50_000


def method_used(method, cells):
    """The embedding that maps a run of `cells` cells when `method` is asked for: PCA for a run too small
    for UMAP."""
    if method not in METHODS:
        raise ValueError(f"unknown map method {method!r}; choose one of {', '.join(METHODS)}")
    return "umap" if method == "umap" and cells >= UMAP_MIN_CELLS else "pca"


def method_label(used, cells, method):
    """What drew a run's map, as the figure says it: the method, and why PCA drew it when UMAP was asked for."""
    if used == "pca" and method == "umap":
        return f"PCA ({cells} cells: too few for UMAP, which needs ≥ {UMAP_MIN_CELLS})"
    return used.upper()


def embed(features, method="umap", seed=0):
    """(n, 2) coordinates of `features` (n, d), standardised first so no feature dominates by its scale.
    Seeded: the same features and seed give the same map on one machine."""
    features = np.asarray(features, np.float64)
    if len(features) < 3:  # nothing to lay out
        return np.zeros((len(features), 2))
    scaled = StandardScaler().fit_transform(features)
    if method_used(method, len(features)) == "umap":
        return _umap(scaled, seed)
    return PCA(n_components=2, random_state=seed).fit_transform(scaled)


def _umap(scaled, seed):
    """UMAP's layout of `scaled`. Its parallel numba functions are compiled anew in each process (umap-learn does
    not cache them on disk: cached parallel code has crashed), some 5 s of CPU (bench/umap_map.py)."""
    import umap  # imports numba (and TensorFlow, for ParametricUMAP): only when a map is drawn

    knn = (None, None, None)  # UMAP finds the neighbours
    if len(scaled) < EXACT_BELOW:
        distances, indices = NearestNeighbors(n_neighbors=N_NEIGHBORS - 1).fit(scaled).kneighbors()
        # UMAP's convention: each cell is its own first neighbour, at distance exactly 0.
        itself = np.arange(len(scaled))[:, None]
        knn = (np.hstack([itself, indices]), np.hstack([np.zeros_like(itself, float), distances]), None)
    # random_state makes the layout deterministic on one machine; UMAP then runs on one thread (n_jobs=1).
    reducer = umap.UMAP(n_components=2, n_neighbors=N_NEIGHBORS, random_state=seed, n_jobs=1, precomputed_knn=knn)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="precomputed_knn", category=UserWarning)  # no transform later
        return reducer.fit_transform(scaled)


def map_runs(profiles, per_fold):
    """The runs a map shows: the first (in table order), or with `per_fold` the first of each `fold<k>/`."""
    first = {}
    for run in profiles["run"].unique():
        first.setdefault(run.split("/")[0] if per_fold else "", run)
    return list(first.values())


def coordinates(profiles, method="umap", seed=0, per_fold=False):
    """Per shown run's tiles: run, tile, x, y and the method that placed them (the map as a tidy table, indexed
    as `profiles`)."""
    frames = []
    for run in map_runs(profiles, per_fold):
        mine = profiles[profiles["run"] == run]
        xy = embed(mine[feature_columns(mine)].to_numpy(), method, seed)
        frames.append(
            pd.DataFrame(
                {
                    "run": run,
                    "tile": mine["tile"].to_numpy(),
                    "x": xy[:, 0],
                    "y": xy[:, 1],
                    "method": method_used(method, len(mine)),
                },
                index=mine.index,
            )
        )
    return pd.concat(frames)


def method_line(coords, method):
    """The figure's line on what drew the map: one method for every run, or each run's own."""
    labels = {
        run: method_label(part["method"].iloc[0], len(part), method) for run, part in coords.groupby("run", sort=False)
    }
    if len(set(labels.values())) == 1:
        return f"map: {next(iter(labels.values()))} of standardised penultimate features"
    return "map: " + "; ".join(f"{run}: {label}" for run, label in labels.items())


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
    """Rows: the shown runs; columns: the colourings. Every point is a tile (cell). The axes and the title say
    which method drew each run (`method`: the one asked for)."""
    shown = profiles.loc[coords.index].assign(x=coords["x"], y=coords["y"], method=coords["method"])
    columns = colourings(shown)
    runs = list(coords["run"].unique())
    fig = Figure(figsize=(3.6 * len(columns), 3.2 * len(runs) + 0.5), layout="constrained")
    axes = fig.subplots(len(runs), len(columns), squeeze=False)
    for r, run in enumerate(runs):
        mine = shown[shown["run"] == run]
        label = AXIS[mine["method"].iloc[0]]
        for c, column in enumerate(columns):
            ax = axes[r][c]
            _scatter(ax, mine, column)
            ax.set_title(f"{run}: {column.replace('_', ' ')}" if run else column.replace("_", " "), fontsize=9)
            ax.set_xlabel(f"{label} 1", fontsize=8)
            ax.set_ylabel(f"{label} 2", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle(f"{title}\n{method_line(coords, method)}", fontsize=10)
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
    first = coords[coords["run"] == coords["run"].iloc[0]]
    label = AXIS[first["method"].iloc[0]]
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
    fig.suptitle(f"{title}\n{method_line(first, method)}", fontsize=9)
    return save(fig, paths)


def write_map(profiles, tile_pixels, *, table, figures, gallery, title, method="umap", seed=0, per_fold=False):
    """The map's coordinates (TSV, with each run's method), its figure and the gallery along its axes;
    `per_fold`: a panel per fold."""
    coords = coordinates(profiles, method, seed, per_fold)
    with atomic_path(table) as tmp:
        coords.to_csv(tmp, sep="\t", index=False)
    map_figure(profiles, coords, figures, title=title, method=method)
    gallery_figure(coords, tile_pixels, gallery, title=f"{title}: cells along the map's axes", method=method)
    return coords
