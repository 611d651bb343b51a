"""The article's attribution figures: tiles with their maps in purple, and enrichment per method.

Like cellclass.evaluate.figures, built on matplotlib.figure.Figure (Agg, no pyplot) and
saved with its helper, so reruns write identical files; each returns its Figure.
"""

import math
import os

import numpy as np
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from cellclass.io.plotting import JITTER, save

PURPLE = (0.49, 0.15, 0.62)
# Transparent at 0, opaque purple at 1: the map's value is the overlay's alpha.
ATTRIBUTION_CMAP = LinearSegmentedColormap.from_list("attribution", [(*PURPLE, 0.0), (*PURPLE, 0.9)])
STATES = {"trained": "tab:blue", "randomised": "tab:gray"}


def _paths(path_stem):
    return [f"{path_stem}.png", f"{path_stem}.svg"]


def class_initials(class_names):
    """One short tag per class that no other class shares: the shortest prefix that tells it apart
    ('C', 'A'; 'Nucleol' and 'Nucleop' where six classes start alike)."""
    names = [str(name) for name in class_names]

    def common(a, b):
        return len(os.path.commonprefix([a.lower(), b.lower()]))

    tags = {}
    for name in names:
        longest = max((common(name, other) for other in names if other != name), default=0)
        tags[name] = name[: longest + 1].capitalize() if longest < len(name) else name
    return tags


def overlay_grid(path_stem, tiles, maps, labels, *, class_names, title, columns=8):
    """Writes <path_stem>.png and .svg: each tile's channel 0 in gray with its [0, 1] map in purple on top.

    `labels` are class indices into `class_names` (or class names); each panel is
    titled with its class's initial. Channel 0 is stretched to each tile's own
    range so dim tiles stay visible.
    """
    tiles = np.asarray(tiles, dtype=np.float32)
    maps = np.clip(np.asarray(maps, dtype=np.float32), 0.0, 1.0)
    names = [str(name) for name in class_names]
    initials = class_initials(names)
    n = len(tiles)
    columns = max(1, min(columns, n))
    rows = max(1, math.ceil(n / columns))
    fig = Figure(figsize=(1.5 * columns, 1.6 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, tile, heat, label in zip(axes, tiles, maps, labels):
        name = label if isinstance(label, str) else names[int(label)]
        protein = tile[..., 0]
        ax.imshow(protein, cmap="gray", vmin=protein.min(), vmax=max(protein.max(), protein.min() + 1e-6))
        ax.imshow(heat, cmap=ATTRIBUTION_CMAP, vmin=0, vmax=1, interpolation="bilinear")
        ax.set_title(initials.get(name, name), fontsize=9)
    if n == 0:
        axes[0].text(0.5, 0.5, "no tiles", ha="center", va="center")
    fig.suptitle(title)
    return save(fig, _paths(path_stem))


def enrichment_plot(path_stem, table):
    """Writes <path_stem>.png and .svg: enrichment per method, trained and randomised side by side.

    `table` has columns method, model_state ("trained"/"randomised") and enrichment,
    and optionally experiment and model (one panel each); every row is one point
    (per tile, or a per-run summary such as a run's median). NaN rows are dropped;
    the dashed line at 1 is "no preference for the mask". The axis is logarithmic:
    enrichment is a ratio, and a tile's maximum is 1 / the mask's area share.
    """
    table = table.dropna(subset=["enrichment"])
    table = table[table["enrichment"] > 0]
    labels = (table["experiment"] + "/" + table["model"]) if {"experiment", "model"} <= set(table) else None
    if labels is not None and "mask" in table and table["mask"].nunique() > 1:
        labels = labels + ", " + table["mask"]
    panels = list(dict.fromkeys(labels)) if labels is not None else [None]
    methods = list(dict.fromkeys(table["method"]))
    fig = Figure(figsize=(max(4.0, 1.6 * len(methods) + 1.5) * max(1, len(panels)) ** 0.8, 4), layout="constrained")
    axes = fig.subplots(1, max(1, len(panels)), sharey=True, squeeze=False)[0]
    rng = np.random.default_rng(0)
    offsets = {"trained": -0.2, "randomised": 0.2}
    for ax, panel in zip(axes, panels):
        rows = table if panel is None else table[labels == panel]
        for i, method in enumerate(methods):
            for state, offset in offsets.items():
                values = rows.loc[(rows["method"] == method) & (rows["model_state"] == state), "enrichment"]
                if values.empty:
                    continue
                ax.boxplot(
                    [values.to_numpy(dtype=float)],
                    positions=[i + offset],
                    widths=0.3,
                    showfliers=False,
                    medianprops={"color": "black"},
                )
                x = i + offset + rng.uniform(-JITTER / 2, JITTER / 2, len(values))
                # Many per-tile points get smaller and fainter so the boxes stay readable.
                ax.scatter(
                    x,
                    values,
                    s=16 if len(values) < 50 else 4,
                    alpha=0.8 if len(values) < 50 else 0.3,
                    color=STATES[state],
                    zorder=3,
                    linewidths=0,
                )
        ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(methods)), [m.replace("_", " ") for m in methods], rotation=20)
        ax.set_xlim(-0.6, max(len(methods), 1) - 0.4)
        ax.set_title(panel or "")
        if methods:
            ax.set_yscale("log")
    names = table["mask"].dropna().unique() if "mask" in table else []
    mask = names[0] if len(names) == 1 else "mask"
    axes[0].set_ylabel(f"enrichment in the {mask} (1 = no preference)")
    fig.suptitle(f"Attribution inside the {mask}: trained vs randomised network")
    axes[-1].legend(handles=[Patch(color=colour, label=state) for state, colour in STATES.items()], frameon=False)
    if not methods:
        axes[0].text(0.5, 0.5, "no enrichment values", ha="center", va="center", transform=axes[0].transAxes)
    return save(fig, _paths(path_stem))
