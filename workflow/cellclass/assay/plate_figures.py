"""Figures of a screening plate: per-well scores laid out as on the plate, and the dose-response with its fit."""

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from cellclass.assay.dose_response import logistic4
from cellclass.io.plotting import save

ROLE_COLOURS = {"negative_control": "tab:blue", "positive_control": "tab:red", "sample": "black"}


def plate_heatmap(wells, plate, paths):
    """One plate's wells as on the plate (rows A.., columns 1..), twice: coloured by score, and by the share of
    cells that abstained (a phenotype the model has not seen shows there). Controls are marked - and +, wells
    with no call ×, wells flagged as unfamiliar ringed in red."""
    on_plate = wells[wells["plate"] == plate]
    positive = on_plate["positive_class"].iloc[0]
    rows = max(int(on_plate["row"].max()) + 1, 8 if on_plate["row"].max() >= 4 else 4)
    columns = max(int(on_plate["column"].max()) + 1, 12 if on_plate["column"].max() >= 6 else 6)
    fig = Figure(figsize=(2.0 + 0.9 * columns, 1.2 + 0.45 * rows), layout="constrained")
    panels = [
        ("score", f"score: mean p({positive}) per well", "viridis"),
        ("abstained_share", "share of cells abstained per well", "magma_r"),
    ]
    for ax, (column, label, cmap) in zip(fig.subplots(1, 2), panels):
        values = on_plate[column] if column in on_plate else pd.Series(np.nan, index=on_plate.index)
        grid = np.full((rows, columns), np.nan)
        grid[on_plate["row"].astype(int), on_plate["column"].astype(int)] = values
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=1)
        ax.set_facecolor("0.85")  # wells without images (or without a score)
        # White marks on the dark end of each colour map: low scores, high abstained shares.
        _mark_wells(ax, on_plate, values, (lambda v: v < 0.5) if cmap == "viridis" else (lambda v: v > 0.55))
        ax.set_xticks(range(columns), [str(c + 1) for c in range(columns)], fontsize=7)
        ax.set_yticks(range(rows), [_row_name(r) for r in range(rows)], fontsize=7)
        ax.xaxis.tick_top()
        fig.colorbar(image, ax=ax, shrink=0.8, label=label)
    flagged = int(on_plate.get("unfamiliar", pd.Series(False, index=on_plate.index)).fillna(False).astype(bool).sum())
    fig.suptitle(f"plate {plate}: {flagged} well(s) flagged as a phenotype the model has not seen", fontsize=9)
    fig.supxlabel(
        "− negative, + positive control; × no call (too many cells abstained); red ring: flagged as "
        "unfamiliar; grey: no images (or no score)",
        fontsize=7,
    )
    return save(fig, paths)


def _mark_wells(ax, on_plate, values, dark):
    """Role marks, no-call crosses and red rings for flagged wells, legible on the well's colour."""
    marks = {"negative_control": "−", "positive_control": "+"}
    for r, value in zip(on_plate.itertuples(), values):
        colour = "white" if np.isfinite(value) and dark(value) else "black"
        mark = "×" if str(getattr(r, "no_call", "") or "") not in ("", "nan") else marks.get(r.role, "")
        if mark:
            ax.text(r.column, r.row, mark, ha="center", va="center", color=colour, fontsize=11)
        if bool(getattr(r, "unfamiliar", False)):
            ax.add_patch(Circle((r.column, r.row), 0.45, fill=False, edgecolor="red", linewidth=1.5))


def _row_name(index):
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


def dose_response(wells, statistics, paths):
    """Per plate, the sample wells' scores against dose (log axis) with the 4PL fit and its EC50, each well
    coloured by its share of cells abstained (red ring: flagged as unfamiliar; × at the bottom: no call), and the
    control wells' scores as bands at the left."""
    plates = list(statistics["plate"])
    fig = Figure(figsize=(5.5 * max(1, len(plates)), 4.3), layout="constrained")
    axes = fig.subplots(1, max(1, len(plates)), squeeze=False)[0]
    for ax, plate in zip(axes, plates):
        on_plate = wells[wells["plate"] == plate]
        fit = statistics.set_index("plate").loc[plate]
        dosed = on_plate[(on_plate["role"] == "sample") & (on_plate["dose"] > 0)]
        samples = dosed.dropna(subset=["score"])
        for role in ("negative_control", "positive_control"):
            scores = on_plate.loc[on_plate["role"] == role, "score"].dropna()
            if len(scores):
                ax.axhspan(
                    scores.min(),
                    scores.max(),
                    color=ROLE_COLOURS[role],
                    alpha=0.15,
                    label=f"{role.replace('_', ' ')} wells ({len(scores)})",
                )
        if len(dosed):
            no_call = dosed.get("no_call", pd.Series("", index=dosed.index)).fillna("").astype(str) != ""
            _sample_wells(fig, ax, samples, dosed[no_call])
        if fit["converged"]:
            dose = np.geomspace(samples["dose"].min(), samples["dose"].max(), 200)
            ax.plot(
                dose,
                logistic4(dose, fit["bottom"], fit["top"], np.log10(fit["ec50"]), fit["hill"]),
                color="tab:green",
                label=f"4PL fit, EC50 {fit['ec50']:.3g} {fit['unit']}",
            )
            ax.axvline(fit["ec50"], color="tab:green", linestyle=":", linewidth=1)
        else:
            ax.text(
                0.5,
                0.5,
                f"no fit: {fit['note']}",
                transform=ax.transAxes,
                ha="center",
                va="center",
                fontsize=8,
                wrap=True,
            )
        ax.set_xlabel(f"dose ({fit['unit']})" if fit["unit"] else "dose")
        ax.set_ylabel(f"score: mean p({on_plate['positive_class'].iloc[0]}) per well")
        ax.set_ylim(-0.08, 1.05)
        ax.set_title(
            f"plate {plate}: Z' {fit['z_prime']:.2f}, SSMD {fit['ssmd']:.2f} "
            f"({_share_words(fit.get('controls_abstained_share'))} of control cells abstained)\n"
            f"fit on {fit['n_wells']} sample wells ({_share_words(fit.get('samples_abstained_share'))} "
            "of their cells abstained)",
            fontsize=8,
        )
        ax.legend(fontsize=7, frameon=False, loc="upper left")
    return save(fig, paths)


def _sample_wells(fig, ax, samples, no_call):
    """Scored sample wells with their interval, coloured by abstained share; flagged ones ringed; wells with
    no call as crosses along the bottom."""
    ax.errorbar(
        samples["dose"],
        samples["score"],
        yerr=[samples["score"] - samples["score_low"], samples["score_high"] - samples["score"]],
        fmt="none",
        ecolor="0.5",
        capsize=2,
        label="sample wells (95% interval)",
    )
    share = samples["abstained_share"] if "abstained_share" in samples else pd.Series(0.0, index=samples.index)
    points = ax.scatter(
        samples["dose"],
        samples["score"],
        c=share.fillna(0),
        cmap="magma_r",
        vmin=0,
        vmax=1,
        s=22,
        edgecolors="black",
        linewidths=0.5,
        zorder=3,
    )
    fig.colorbar(points, ax=ax, shrink=0.8, label="share of cells abstained per well")
    flagged = samples[samples.get("unfamiliar", pd.Series(False, index=samples.index)).fillna(False).astype(bool)]
    if len(flagged):
        ax.scatter(
            flagged["dose"],
            flagged["score"],
            s=90,
            facecolors="none",
            edgecolors="red",
            linewidths=1.5,
            zorder=4,
            label=f"flagged: a phenotype the model has not seen ({len(flagged)})",
        )
    if len(no_call):
        ax.scatter(
            no_call["dose"],
            np.full(len(no_call), -0.04),
            marker="x",
            color="red",
            zorder=4,
            label=f"no call: too many cells abstained ({len(no_call)})",
        )
    ax.set_xscale("log")


def _share_words(share):
    return "an unknown share" if share is None or not np.isfinite(share) else f"{share:.0%}"
