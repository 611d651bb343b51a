"""Figures of a screening plate: per-well scores laid out as on the plate, and the dose-response with its fit."""

import numpy as np
from matplotlib.figure import Figure

from cellclass.assay.dose_response import logistic4
from cellclass.io.plotting import save

ROLE_COLOURS = {"negative_control": "tab:blue", "positive_control": "tab:red", "sample": "black"}


def plate_heatmap(wells, plate, paths):
    """One plate's wells as on the plate (rows A.., columns 1..), coloured by score; controls marked - and +."""
    on_plate = wells[wells["plate"] == plate]
    positive = on_plate["positive_class"].iloc[0]
    rows = max(int(on_plate["row"].max()) + 1, 8 if on_plate["row"].max() >= 4 else 4)
    columns = max(int(on_plate["column"].max()) + 1, 12 if on_plate["column"].max() >= 6 else 6)
    grid = np.full((rows, columns), np.nan)
    grid[on_plate["row"].astype(int), on_plate["column"].astype(int)] = on_plate["score"]
    fig = Figure(figsize=(1.0 + 0.45 * columns, 1.2 + 0.45 * rows), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=1)
    ax.set_facecolor("0.85")  # wells without images
    marks = {"negative_control": "−", "positive_control": "+"}
    for r in on_plate.itertuples():
        if r.role in marks:
            colour = "white" if (r.score if np.isfinite(r.score) else 0) < 0.5 else "black"
            ax.text(r.column, r.row, marks[r.role], ha="center", va="center", color=colour, fontsize=11)
    ax.set_xticks(range(columns), [str(c + 1) for c in range(columns)], fontsize=7)
    ax.set_yticks(range(rows), [_row_name(r) for r in range(rows)], fontsize=7)
    ax.xaxis.tick_top()
    fig.colorbar(image, ax=ax, shrink=0.8, label=f"score: mean p({positive}) per well")
    ax.set_title(f"plate {plate}", fontsize=9)
    ax.xaxis.set_label_position("bottom")
    ax.set_xlabel("− negative, + positive control; grey: no images", fontsize=7)
    return save(fig, paths)


def _row_name(index):
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


def dose_response(wells, statistics, paths):
    """Per plate, the sample wells' scores against dose (log axis) with the 4PL fit and its EC50, and the
    control wells' scores as bands at the left."""
    plates = list(statistics["plate"])
    fig = Figure(figsize=(5.0 * max(1, len(plates)), 4), layout="constrained")
    axes = fig.subplots(1, max(1, len(plates)), squeeze=False)[0]
    for ax, plate in zip(axes, plates):
        on_plate = wells[wells["plate"] == plate]
        fit = statistics.set_index("plate").loc[plate]
        samples = on_plate[(on_plate["role"] == "sample") & (on_plate["dose"] > 0)]
        for role in ("negative_control", "positive_control"):
            scores = on_plate.loc[on_plate["role"] == role, "score"].dropna()
            if len(scores):
                ax.axhspan(scores.min(), scores.max(), color=ROLE_COLOURS[role], alpha=0.15,
                           label=f"{role.replace('_', ' ')} wells ({len(scores)})")
        if len(samples):
            ax.errorbar(samples["dose"], samples["score"],
                        yerr=[samples["score"] - samples["score_low"], samples["score_high"] - samples["score"]],
                        fmt="o", color="black", markersize=4, capsize=2, label="sample wells (95% interval)")
            ax.set_xscale("log")
        if fit["converged"]:
            dose = np.geomspace(samples["dose"].min(), samples["dose"].max(), 200)
            ax.plot(dose, logistic4(dose, fit["bottom"], fit["top"], np.log10(fit["ec50"]), fit["hill"]), color="tab:green",
                    label=f"4PL fit, EC50 {fit['ec50']:.3g} {fit['unit']}")
            ax.axvline(fit["ec50"], color="tab:green", linestyle=":", linewidth=1)
        else:
            ax.text(0.5, 0.5, f"no fit: {fit['note']}", transform=ax.transAxes, ha="center", va="center", fontsize=8,
                    wrap=True)
        ax.set_xlabel(f"dose ({fit['unit']})" if fit["unit"] else "dose")
        ax.set_ylabel(f"score: mean p({on_plate['positive_class'].iloc[0]}) per well")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"plate {plate}: Z' {fit['z_prime']:.2f}, SSMD {fit['ssmd']:.2f}", fontsize=9)
        ax.legend(fontsize=7, frameon=False, loc="upper left")
    return save(fig, paths)
