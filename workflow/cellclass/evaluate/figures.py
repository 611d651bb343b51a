"""The article's figures from evaluate's tables: accuracy across runs, training curves, confidence, gallery.

Figures are built on matplotlib.figure.Figure without pyplot, so no GUI backend or
global figure registry is involved (Agg renders PNG) and nothing needs closing.
Each public function writes every path it is given (the suffix picks the format) and returns the Figure.
"""

import functools
import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from cellclass.evaluate.metrics import calibration, confusion
from cellclass.evaluate.runs import kept_epochs, read_predictions, run_name
from cellclass.io import tilestore
from cellclass.io.contact_sheet import display_rgb
from cellclass.io.plotting import JITTER, colours, save

RIGHT = "tab:green"
WRONG = "tab:red"
GALLERY_ORDERS = ("confidence-wrong-first", "random")


def _labels(table):
    return table["experiment"] + "/" + table["model"]


def _colours(labels):
    """One colour per experiment/model, the same in every figure (sorted, so independent of row order)."""
    return colours(sorted(set(labels)))


def _headline(runs):
    """Rows of every run and test set at its headline level (the biological unit)."""
    return runs[runs["headline"].astype(bool)]


def _tile_rows(runs):
    return runs[runs["level"] == "tile"]


def _confidence(predictions):
    return predictions[[c for c in predictions.columns if c.startswith("p_")]].max(axis=1)


def accuracy_boxplot(runs, paths, human=None):
    """Balanced test accuracy at the headline unit across runs (seeds, and folds), one box per experiment/model and test set.

    Each box has its baselines: chance (1/K) and the majority-class rate (what always calling
    the largest class scores in plain accuracy); `human` maps experiment -> by-eye tile accuracy,
    drawn on the experiment's own test side. `runs` is the evaluation's runs table.
    """
    scored = _headline(runs).assign(label=lambda t: _labels(t))
    scored = scored.assign(box=lambda t: t["label"] + " on " + t["test_set"] + " (" + t["level"] + ")")
    boxes = list(dict.fromkeys(scored["box"]))
    colours = _colours(scored["label"])
    fig = Figure(figsize=(max(4.5, 1.5 * len(boxes) + 2), 4.5), layout="constrained")
    ax = fig.add_subplot()
    groups = [scored[scored["box"] == box] for box in boxes]
    ax.boxplot(
        [g["balanced_accuracy"] for g in groups],
        positions=range(len(boxes)),
        tick_labels=boxes,
        widths=0.5,
        showfliers=False,
        medianprops={"color": "black"},
    )
    rng = np.random.default_rng(0)
    for i, group in enumerate(groups):
        x = i + rng.uniform(-JITTER, JITTER, len(group))
        ax.scatter(x, group["balanced_accuracy"], s=20, color=colours[group["label"].iloc[0]], zorder=3, clip_on=False)
    handles = [
        Line2D([], [], color="gray", linestyle=":", label="chance (1/K)"),
        Line2D([], [], color="tab:orange", linestyle="-.", label="majority-class rate"),
    ]
    shown_human = False
    for i, group in enumerate(groups):
        row = group.iloc[0]
        ax.hlines(row["chance"], i - 0.4, i + 0.4, color="gray", linestyle=":")
        ax.hlines(row["majority_rate"], i - 0.4, i + 0.4, color="tab:orange", linestyle="-.")
        if human and row["experiment"] in human and row["test_set"] == row["dataset"]:
            ax.hlines(human[row["experiment"]], i - 0.4, i + 0.4, color="black", linestyle="--")
            shown_human = True
    if shown_human:
        handles.append(Line2D([], [], color="black", linestyle="--", label="human by eye (tiles)"))
    values = [*scored["balanced_accuracy"], *scored["chance"], *scored["majority_rate"]]
    ax.set_ylim(min([0.4, *values]) - 0.05, 1.02)
    ax.set_ylabel("balanced accuracy (headline unit)")
    ax.set_title("Test balanced accuracy across runs")
    ax.legend(handles=handles, loc="lower left", frameon=False, fontsize=8)
    if len(boxes) > 2:
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    return save(fig, paths)


def _mark_kept(ax, history, column, colours):
    """A black-edged diamond on each run's kept epoch (gid 'kept_epoch' in the SVG)."""
    kept = kept_epochs(history).dropna(subset=[column])
    if kept.empty:
        return False
    ax.scatter(
        kept["epoch"],
        kept[column],
        s=42,
        marker="D",
        facecolors=[colours[label] for label in kept["label"]],
        edgecolors="black",
        linewidths=0.9,
        zorder=4,
        gid="kept_epoch",
    )
    return True


def training_curves(history, paths, window=1):
    """Training (left: inference mode on unaugmented training tiles) and validation (right) accuracy per epoch:
    every run jittered, mean ± 1 sd per experiment/model, and a diamond on the epoch each run kept (the best on
    the validation side, or the last). The test side is never shown here.

    `window` > 1 smooths the per-epoch mean and sd with a centred rolling mean.
    """
    history = history.assign(label=lambda t: _labels(t))
    colours = _colours(history["label"])
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    rng = np.random.default_rng(0)
    panels = ["train_eval_accuracy", "validation_accuracy"], ["training (inference mode)", "validation"]
    for ax, column, title in zip(axes, *panels):
        if history[column].isna().all():
            ax.text(
                0.5,
                0.5,
                "no validation side\n(too few groups per class)",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
        for label, group in history.dropna(subset=[column]).groupby("label", sort=True):
            colour = colours[label]
            x = group["epoch"] + rng.uniform(-JITTER, JITTER, len(group))
            ax.scatter(x, group[column], s=10, alpha=0.45, color=colour, linewidths=0)
            curve = (
                group.groupby("epoch")[column].agg(["mean", "std"]).rolling(window, center=True, min_periods=1).mean()
            )
            ax.plot(curve.index, curve["mean"], color=colour, label=label)
            ax.fill_between(
                curve.index, curve["mean"] - curve["std"], curve["mean"] + curve["std"], color=colour, alpha=0.2
            )
        marked = _mark_kept(ax, history, column, colours)
        ax.set_title(f"{title} accuracy")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("accuracy")
    axes[0].set_ylim(top=1.01)
    handles, _ = axes[0].get_legend_handles_labels()
    if marked or len(kept_epochs(history)):
        handles.append(
            Line2D(
                [],
                [],
                marker="D",
                color="gray",
                markeredgecolor="black",
                linestyle="none",
                label="epoch kept (the model)",
            )
        )
    axes[0].legend(handles=handles, frameon=False, loc="lower right")
    return save(fig, paths)


def overfitting_scatter(runs, paths):
    """Final training accuracy (inference mode) against balanced test accuracy per tile on the own test side;
    runs flagged overfit are circled and labelled."""
    scored = _tile_rows(runs)
    scored = scored[scored["test_set"] == scored["dataset"]].rename(columns={"balanced_accuracy": "test_accuracy"})
    scored = scored.assign(label=lambda t: _labels(t))
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
        cross_validated = scored["fold"].nunique() > 1
        for (x, y), group in flagged.groupby(["final_train_accuracy", "test_accuracy"]):
            label = ", ".join(run_name(f, s, cross_validated) for f, s in zip(group["fold"], group["seed"]))
            ax.annotate(label, (x, y), xytext=(-10, 0), textcoords="offset points", ha="right", va="center", fontsize=7)
    values = [*scored["final_train_accuracy"].dropna(), *scored["test_accuracy"]]
    low = min([0.4, *values]) - 0.02
    ax.plot([low, 1.0], [low, 1.0], color="gray", linestyle="--", linewidth=1, label="train = test")
    ax.set_xlim(low, 1.02)
    ax.set_ylim(low, 1.02)
    ax.set_xlabel("final training accuracy (inference mode, tiles)")
    ax.set_ylabel("balanced test accuracy (tiles)")
    ax.set_title("Overfitting: fits training data, not test data")
    ax.legend(frameon=False, loc="upper left", fontsize=8)
    return save(fig, paths)


def confidence_plots(predictions, classes, paths, bins=10):
    """Per test set (one row each): top softmax probability of right vs wrong tiles, and a reliability diagram
    with the ECE. A 2-class softmax is confident by construction; these show whether that confidence is earned.
    """
    sets = list(dict.fromkeys(predictions["test_set"])) if "test_set" in predictions else [""]
    fig = Figure(figsize=(10, 4 * len(sets)), layout="constrained")
    axes = fig.subplots(len(sets), 2, squeeze=False)
    for (left, right), name in zip(axes, sets):
        rows = predictions if not name else predictions[predictions["test_set"] == name]
        _confidence_row(left, right, rows, classes, bins, f" ({name})" if name else "")
    return save(fig, paths)


def _confidence_row(left, right, predictions, classes, bins, where):
    table, ece = calibration(predictions, classes, bins=bins)
    confidence = _confidence(predictions[["true", "predicted", *(f"p_{c}" for c in classes)]]).to_numpy()
    correct = (predictions["true"] == predictions["predicted"]).to_numpy()
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
    left.set_title(f"Confidence of right and wrong predictions{where}")
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
    right.set_title(f"Reliability (ECE = {ece:.3f}){where}")
    right.legend(frameon=False, loc="upper left")


def confusion_plot(confusions, paths):
    """Heat maps of confusion tables (metrics.confusion), one panel per test set, each cell annotated with its
    count and row share. `confusions` maps a test set's name to its table (a bare table draws one panel)."""
    if not isinstance(confusions, dict):
        confusions = {"": confusions}
    first = next(iter(confusions.values()))
    n_rows, n_columns = first.shape
    fig = Figure(figsize=((1.2 * n_columns + 2.5) * len(confusions), 1.0 * n_rows + 2.2), layout="constrained")
    axes = fig.subplots(1, len(confusions), squeeze=False)[0]
    for ax, (name, table) in zip(axes, confusions.items()):
        counts = table.to_numpy()
        totals = counts.sum(axis=1, keepdims=True)
        share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
        image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (i, j), count in np.ndenumerate(counts):
            colour = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, f"{count}\n{share[i, j]:.0%}", ha="center", va="center", color=colour, fontsize=9)
        ax.set_xticks(range(counts.shape[1]), [str(c) for c in table.columns])
        ax.set_yticks(range(counts.shape[0]), [str(c) for c in table.index])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if name:
            ax.set_title(f"tiles of {name}")
    fig.colorbar(image, ax=list(axes), label="share of true class")
    return save(fig, paths)


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


def _gallery_figure(predictions, tile_loader, n, order, seed, columns):
    chosen = _pick(predictions, n, order, seed)
    columns = max(1, min(columns, len(chosen)))
    rows = max(1, math.ceil(len(chosen) / columns))
    fig = Figure(figsize=(1.8 * columns, 2.1 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, row in zip(axes, chosen.itertuples()):
        ax.imshow(
            display_rgb(tile_loader(row.test_set, row.tile)), cmap="gray", vmin=0, vmax=1, interpolation="nearest"
        )
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
    return save(_gallery_figure(predictions, tile_loader, n, order, seed, columns), paths)


def tile_loader(tile_files):
    """Loader for gallery(): finds a tile among `tile_files` (the rule's declared shard files) by the
    dataset and sample recorded with it; tiles are read from the memory-mapped shards on demand."""
    where = {}
    for path in map(str, tile_files):
        for tileset in tilestore.load(path):
            where[(tileset.meta.get("dataset", ""), tileset.meta["sample"])] = (path, tileset)

    @functools.cache
    def index_of(test_set, sample):
        if (test_set, sample) not in where:
            raise KeyError(f"no tiles of sample {sample!r} in test set {test_set!r} among the declared inputs")
        return {tile_id: i for i, tile_id in enumerate(where[(test_set, sample)][1].tile_ids())}

    def loader(test_set, tile_id):
        sample = tile_id.split("@", 1)[0]
        index = index_of(test_set, sample)
        path, tileset = where[(test_set, sample)]
        if tile_id not in index:
            raise KeyError(f"tile {tile_id!r} is not in {path}")
        return np.asarray(tileset.tiles[index[tile_id]], dtype=np.float32)

    return loader


def run_figures(*, prediction_files, classes, tile_files, outputs, plots):
    """Confidence and confusion of one (experiment, model), pooling its runs, one panel row per test set;
    the gallery shows one run on the experiment's own test side, as the article did."""
    import pandas as pd

    tables = [read_predictions(p) for p in prediction_files]
    pooled = pd.concat(tables, ignore_index=True)
    confidence_plots(pooled, classes, list(outputs.confidence), bins=plots["calibration_bins"])
    sets = list(dict.fromkeys(pooled["test_set"]))
    confusion_plot(
        {name: confusion(pooled[pooled["test_set"] == name], classes) for name in sets}, list(outputs.confusion)
    )
    own = tables[0][tables[0]["test_set"] == sets[0]]
    gallery(own, tile_loader(tile_files), list(outputs.gallery), n=plots["gallery_size"], order=plots["gallery_order"])
