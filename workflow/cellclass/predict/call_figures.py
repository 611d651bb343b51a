"""Figures of predictions on new images: tile calls drawn on each field, and the calls of a whole image set."""

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from cellclass.io.plotting import colours, save

_MAX_SIDE = 1000  # display pixels: large fields are shown downsampled


def call_overlay(field, tiles, image_row, classes, tile_size, paths):
    """The field's first channel in gray with each tile (or cell crop) outlined in its call's colour (opacity:
    confidence)."""
    step = max(1, int(np.ceil(max(field.shape[:2]) / _MAX_SIDE)))
    shown = field[::step, ::step, 0]
    low, high = np.percentile(shown, [0.5, 99.5])
    height, width = shown.shape
    fig = Figure(figsize=(6, 6 * height / width + 0.6), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(np.clip((shown - low) / max(high - low, 1e-6), 0, 1), cmap="gray", interpolation="nearest")
    class_colours = colours(classes)
    for tile in tiles.itertuples(index=False):
        row, col, size = tile.row, tile.col, tile_size
        confidence = getattr(tile, f"p_{tile.call}")
        ax.add_patch(
            Rectangle(
                (col / step - 0.5, row / step - 0.5),
                size / step,
                size / step,
                fill=True,
                facecolor=(*class_colours[tile.call], 0.25 * confidence),
                edgecolor=(*class_colours[tile.call], confidence),
                linewidth=1.2,
            )
        )
    ax.set_axis_off()
    call = image_row["call"]
    detail = "" if call not in classes else f" (p={image_row[f'p_{call}']:.2f} ± {image_row['spread']:.2f})"
    ax.set_title(f"{image_row['image']}: {call}{detail}", fontsize=9)
    handles = [Line2D([], [], color=class_colours[c], linewidth=3, label=c) for c in classes]
    ax.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(classes), frameon=False, fontsize=8
    )
    return save(fig, paths)


MAX_IMAGE_BARS = 200  # above this, a bar per image is unreadable (and 10^5 of them would not fit in memory)


def calls_plot(images, classes, paths):
    """One bar per image: the ensemble's probability of its call, with the members' spread, in the call's colour;
    for a set of more than MAX_IMAGE_BARS images, how many images got each call instead."""
    if len(images) > MAX_IMAGE_BARS:
        return calls_count_plot(images, classes, paths)
    class_colours = colours(classes)
    fig = Figure(figsize=(max(4.0, 0.3 * len(images) + 2), 4), layout="constrained")
    ax = fig.add_subplot()
    called = images[images["call"].isin(classes)]
    x = np.arange(len(images))
    positions = x[images["call"].isin(classes).to_numpy()]
    heights = [row[f"p_{row['call']}"] for _, row in called.iterrows()]
    ax.bar(positions, heights, yerr=called["spread"], color=[class_colours[c] for c in called["call"]], capsize=2)
    for i in x[~images["call"].isin(classes).to_numpy()]:
        ax.text(i, 0.02, images["call"].iloc[i], rotation=90, va="bottom", ha="center", fontsize=7, color="gray")
    ax.axhline(1 / len(classes), color="gray", linestyle=":")
    ax.set_xticks(x, images["image"], rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability of the call\n(mean ± spread over seeds)")
    handles = [Rectangle((0, 0), 1, 1, color=class_colours[c], label=c) for c in classes]
    ax.legend(handles=handles, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(classes))
    return save(fig, paths)


def calls_count_plot(images, classes, paths):
    """One bar per call (each class, then any other call: abstained, no cells found, not scored): the images
    that got it."""
    counts = images["call"].value_counts()
    calls = [c for c in classes if c in counts] + sorted(c for c in counts.index if c not in classes)
    class_colours = colours(classes)
    fig = Figure(figsize=(max(4.0, 0.6 * len(calls) + 2), 4), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(range(len(calls)), [counts[c] for c in calls], color=[class_colours.get(c, "lightgray") for c in calls])
    ax.set_xticks(range(len(calls)), calls, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("images")
    ax.set_title(f"calls of {len(images)} images (one bar per image up to {MAX_IMAGE_BARS})", fontsize=9)
    return save(fig, paths)
