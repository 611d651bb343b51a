"""The article's figures from evaluate's tables: accuracy across seeds, training curves, confidence, gallery.

Figures are built on matplotlib.figure.Figure without pyplot, so no GUI backend or
global figure registry is involved (Agg renders PNG) and nothing needs closing.
Each public function writes every path it is given; the suffix picks the format.
"""

import functools
import math
import os
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from cellclass import tilestore
from cellclass.atomic import atomic_path
from cellclass.evaluate import calibration

RIGHT = "tab:green"
WRONG = "tab:red"
GALLERY_ORDERS = ("confidence-wrong-first", "random")
# No timestamps and fixed SVG ids, so rerunning a rule rewrites identical files.
_METADATA = {".svg": {"Date": None}, ".pdf": {"CreationDate": None}}
_JITTER = 0.15


def _save(fig, paths):
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        path = Path(path)
        with atomic_path(path) as tmp, matplotlib.rc_context({"svg.hashsalt": "cellclass"}):
            fig.savefig(tmp, dpi=150, metadata=_METADATA.get(path.suffix.lower()))


def _labels(table):
    return table["experiment"] + "/" + table["model"]


def _colours(labels):
    """One colour per experiment/model, the same in every figure (sorted, so independent of row order)."""
    cycle = matplotlib.color_sequences["tab10"]
    return {label: cycle[i % len(cycle)] for i, label in enumerate(sorted(set(labels)))}


def _scored(runs, test_set):
    """Rows of one test set, or by default each run's own dataset's test set."""
    return runs[runs["test_set"] == runs["dataset"]] if test_set is None else runs[runs["test_set"] == test_set]


def _confidence(predictions):
    return predictions[[c for c in predictions.columns if c.startswith("p_")]].max(axis=1)


def accuracy_boxplot(runs, paths, human=None, test_set=None):
    """Test accuracy across seeds per experiment/model: box plot, jittered runs, chance and human baselines.

    `runs` is evaluate.run_table's output; `human` maps experiment -> by-eye accuracy.
    """
    scored = _scored(runs, test_set).assign(label=lambda t: _labels(t))
    labels = list(dict.fromkeys(scored["label"]))
    colours = _colours(labels)
    fig = Figure(figsize=(max(4.0, 1.1 * len(labels) + 2), 4), layout="constrained")
    ax = fig.add_subplot()
    groups = [scored[scored["label"] == label] for label in labels]
    ax.boxplot(
        [g["test_accuracy"] for g in groups],
        positions=range(len(labels)),
        tick_labels=labels,
        widths=0.5,
        showfliers=False,
        medianprops={"color": "black"},
    )
    rng = np.random.default_rng(0)
    for i, (label, group) in enumerate(zip(labels, groups)):
        x = i + rng.uniform(-_JITTER, _JITTER, len(group))
        ax.scatter(x, group["test_accuracy"], s=20, color=colours[label], zorder=3, clip_on=False)

    handles = []
    chance = [1 / g["n_classes"].max() for g in groups]
    if len(set(chance)) == 1:
        ax.axhline(chance[0], color="gray", linestyle=":")
    else:
        for i, level in enumerate(chance):
            ax.hlines(level, i - 0.4, i + 0.4, color="gray", linestyle=":")
    handles.append(Line2D([], [], color="gray", linestyle=":", label="chance"))
    experiments = [g["experiment"].iloc[0] for g in groups]
    shown_human = False
    for experiment in dict.fromkeys(experiments):
        if human and experiment in human:
            span = [i for i, e in enumerate(experiments) if e == experiment]
            ax.hlines(human[experiment], span[0] - 0.4, span[-1] + 0.4, color="black", linestyle="--")
            shown_human = True
    if shown_human:
        handles.append(Line2D([], [], color="black", linestyle="--", label="human (by eye)"))

    low = min([0.4, *chance, *scored["test_accuracy"]])
    ax.set_ylim(0.4 if low >= 0.4 else low - 0.05, 1.0)
    ax.set_ylabel("test accuracy (tiles)")
    ax.set_title("Test accuracy across seeds" + ("" if test_set is None else f" on {test_set}"))
    ax.legend(handles=handles, loc="lower left", frameon=False)
    if len(labels) > 3:
        ax.tick_params(axis="x", labelrotation=20)
    _save(fig, paths)


def training_curves(history, paths, window=1):
    """Training (left) and held-out (right) accuracy per epoch: every run jittered, mean ± 1 sd per experiment/model.

    `window` > 1 smooths the per-epoch mean and sd with a centred rolling mean.
    """
    history = history.assign(label=lambda t: _labels(t))
    colours = _colours(history["label"])
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    rng = np.random.default_rng(0)
    for ax, column, title in zip(axes, ["train_accuracy", "heldout_accuracy"], ["training", "held-out"]):
        for label, group in history.groupby("label", sort=True):
            colour = colours[label]
            x = group["epoch"] + rng.uniform(-_JITTER, _JITTER, len(group))
            ax.scatter(x, group[column], s=10, alpha=0.45, color=colour, linewidths=0)
            curve = (
                group.groupby("epoch")[column].agg(["mean", "std"]).rolling(window, center=True, min_periods=1).mean()
            )
            ax.plot(curve.index, curve["mean"], color=colour, label=label)
            ax.fill_between(
                curve.index, curve["mean"] - curve["std"], curve["mean"] + curve["std"], color=colour, alpha=0.2
            )
        ax.set_title(f"{title} accuracy")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("accuracy")
    axes[0].set_ylim(top=1.01)
    axes[0].legend(frameon=False, loc="lower right")
    _save(fig, paths)


def overfitting_scatter(runs, paths, test_set=None):
    """Final training accuracy against test accuracy per run; runs flagged overfit are circled and labelled."""
    scored = _scored(runs, test_set).assign(label=lambda t: _labels(t))
    colours = _colours(scored["label"])
    fig = Figure(figsize=(5.5, 5), layout="constrained")
    ax = fig.add_subplot()
    for label, group in scored.groupby("label", sort=True):
        ax.scatter(
            group["final_train_accuracy"], group["test_accuracy"], s=28, color=colours[label], label=label, zorder=3
        )
    flagged = scored[scored["overfit"]]
    if len(flagged):
        ax.scatter(
            flagged["final_train_accuracy"],
            flagged["test_accuracy"],
            s=170,
            facecolors="none",
            edgecolors="black",
            label="overfit",
            zorder=4,
        )
        # Runs on the same spot share one label instead of overprinting each other.
        for (x, y), group in flagged.groupby(["final_train_accuracy", "test_accuracy"]):
            seeds = ", ".join(str(seed) for seed in group["seed"])
            label = f"{'seeds' if len(group) > 1 else 'seed'} {seeds}"
            ax.annotate(label, (x, y), xytext=(-10, 0), textcoords="offset points", ha="right", va="center", fontsize=7)
    values = [*scored["final_train_accuracy"].dropna(), *scored["test_accuracy"]]
    low = min([0.4, *values]) - 0.02
    ax.plot([low, 1.0], [low, 1.0], color="gray", linestyle="--", linewidth=1, label="train = test")
    ax.set_xlim(low, 1.02)
    ax.set_ylim(low, 1.02)
    ax.set_xlabel("final training accuracy")
    ax.set_ylabel("test accuracy")
    ax.set_title("Overfitting: fits training data, not test data")
    ax.legend(frameon=False, loc="upper left", fontsize=8)
    _save(fig, paths)


def confidence_plots(predictions, classes, paths, bins=10):
    """Top softmax probability of right vs wrong tiles, and a reliability diagram with the ECE.

    A 2-class softmax is confident by construction; these show whether that confidence is earned.
    """
    table, ece = calibration(predictions, classes, bins=bins)
    confidence = _confidence(predictions[["true", "predicted", *(f"p_{c}" for c in classes)]]).to_numpy()
    correct = (predictions["true"] == predictions["predicted"]).to_numpy()
    fig = Figure(figsize=(10, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    edges = np.linspace(1 / len(classes), 1.0, 21)
    for chosen, colour, name in [(correct, RIGHT, "right"), (~correct, WRONG, "wrong")]:
        left.hist(
            confidence[chosen],
            bins=edges,
            histtype="step",
            linewidth=1.8,
            color=colour,
            label=f"{name} ({chosen.sum()})",
        )
    left.set_xlabel("top softmax probability")
    left.set_ylabel("tiles")
    left.set_title("Confidence of right and wrong predictions")
    left.legend(frameon=False, loc="best")

    filled = table[table["count"] > 0]
    width = table["bin_high"].iloc[0] - table["bin_low"].iloc[0]
    right.bar(
        filled["bin_low"],
        filled["accuracy"],
        width=width,
        align="edge",
        color="tab:blue",
        edgecolor="white",
        label="accuracy",
    )
    right.plot([0, 1], [0, 1], color="gray", linestyle="--", label="perfect calibration")
    right.scatter(filled["confidence"], filled["accuracy"], color="black", s=12, zorder=3, label="mean confidence")
    right.set_xlim(0, 1)
    right.set_ylim(0, 1)
    right.set_xlabel("top softmax probability")
    right.set_ylabel("accuracy")
    right.set_title(f"Reliability (ECE = {ece:.3f})")
    right.legend(frameon=False, loc="upper left")
    _save(fig, paths)


def confusion_plot(confusion_df, paths):
    """Heat map of a confusion table (evaluate.confusion), each cell annotated with its count and row share."""
    counts = confusion_df.to_numpy()
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    fig = Figure(figsize=(1.2 * counts.shape[1] + 2.5, 1.0 * counts.shape[0] + 1.8), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(counts):
        colour = "white" if share[i, j] > 0.5 else "black"
        ax.text(j, i, f"{count}\n{share[i, j]:.0%}", ha="center", va="center", color=colour, fontsize=9)
    ax.set_xticks(range(counts.shape[1]), [str(c) for c in confusion_df.columns])
    ax.set_yticks(range(counts.shape[0]), [str(c) for c in confusion_df.index])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, label="share of true class")
    _save(fig, paths)


def _pick(predictions, n, order, seed):
    table = predictions.assign(
        confidence=_confidence(predictions), correct=predictions["true"] == predictions["predicted"]
    )
    if order == "confidence-wrong-first":
        return table.sort_values(["correct", "confidence", "tile"], ascending=[True, False, True], kind="stable").head(
            n
        )
    if order == "random":
        return table.sample(n=min(n, len(table)), random_state=seed)
    raise ValueError(f"gallery order must be one of {GALLERY_ORDERS}, not {order!r}")


def _display(tile):
    """1 channel as gray, 2 as green (ch0) + magenta (ch1), 3 or more as RGB of the first three."""
    tile = np.clip(np.asarray(tile, dtype=np.float32), 0.0, 1.0)
    if tile.shape[-1] == 1:
        return tile[..., 0]
    if tile.shape[-1] == 2:
        return np.stack([tile[..., 1], tile[..., 0], tile[..., 1]], axis=-1)
    return tile[..., :3]


def _gallery_figure(predictions, tile_loader, n, order, seed, columns):
    chosen = _pick(predictions, n, order, seed)
    columns = max(1, min(columns, len(chosen)))
    rows = max(1, math.ceil(len(chosen) / columns))
    fig = Figure(figsize=(1.8 * columns, 2.1 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, row in zip(axes, chosen.itertuples()):
        ax.imshow(_display(tile_loader(row.test_set, row.tile)), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(
            f"{row.confidence:.0%} {row.predicted}\ntrue: {row.true}", color=RIGHT if row.correct else WRONG, fontsize=8
        )
    if chosen.empty:
        axes[0].text(0.5, 0.5, "no test tiles", ha="center", va="center")
    return fig


def gallery(predictions, tile_loader, paths, n=24, order="confidence-wrong-first", seed=0, columns=6):
    """Test tiles titled '<confidence> <predicted>' / 'true: <class>', green if right, red if wrong.

    tile_loader(test_set, tile_id) -> (h, w, C) in [0, 1]; the default order shows the most confident mistakes first.
    """
    _save(_gallery_figure(predictions, tile_loader, n, order, seed, columns), paths)


def tile_loader_from_files(results_dir, cache_size=8):
    """Loader for gallery(): reads `<results_dir>/<test_set>/tiles/<sample>.npz`, keeping recent files cached."""
    results_dir = Path(results_dir)

    @functools.lru_cache(maxsize=cache_size)
    def load_sample(test_set, sample):
        tileset = tilestore.load(results_dir / test_set / "tiles" / f"{sample}.npz")
        return {tile_id: i for i, tile_id in enumerate(tileset.tile_ids())}, tileset.tiles

    def loader(test_set, tile_id):
        index, tiles = load_sample(test_set, tile_id.split("@", 1)[0])
        if tile_id not in index:
            raise KeyError(f"tile {tile_id!r} is not in {results_dir / test_set / 'tiles'}")
        return tiles[index[tile_id]].astype(np.float32)

    return loader
