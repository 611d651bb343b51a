"""Screening-plate statistics from per-cell (per-tile) calls: per-well scores, assay quality, dose-response.

A well's score is the mean probability of the positive class over its cells
(tiles), with a bootstrap interval over those cells. Assay quality compares
the negative- and positive-control wells' scores: the Z'-factor (Zhang, Chung
& Oldenburg 1999) and the strictly standardised mean difference (SSMD, Zhang
2007). The dose-response of the sample wells is a four-parameter logistic fit
(scipy.optimize.curve_fit), with Spearman's rho as a check that needs no model.
"""

import logging

import numpy as np
import pandas as pd
from scipy import stats

from cellclass.assay import plate_figures, scorers, unfamiliar
from cellclass.assay.dose_response import fit_dose_response
from cellclass.assay.separation import ssmd, z_prime  # noqa: F401 - read as wells.z_prime, wells.ssmd too
from cellclass.evaluate import degenerate, runs
from cellclass.io.errors import InputError
from cellclass.predict import abstention, image_shift, out_of_fold, tiling_check

log = logging.getLogger(__name__)

# The usual reading of Z' (Zhang et al. 1999): above 0.5 excellent, 0 to 0.5 marginal, below 0 the controls overlap.
Z_PRIME_EXCELLENT = 0.5


def positive_class(layout, classes, configured=None):
    """The class whose probability scores a well: the configured one, else the positive-control wells' class."""
    if configured:
        if configured not in classes:
            raise InputError(f"assay.positive_class: '{configured}' is not a class of the model ({', '.join(classes)})")
        return configured
    named = {row["class"] for row in layout if row["role"] == "positive_control" and row["class"]}
    if len(named) == 1 and next(iter(named)) in classes:
        return next(iter(named))
    raise InputError(
        "assay.positive_class: set it; the plate map's positive-control wells do not name one class of the model "
        f"({', '.join(classes)})"
    )


def well_table(tiles, layout, classes, positive, *, resamples=999, seed=0, max_share=None):
    """One row per well: plate, well, position, role, dose, condition; its fields and cells (tiles); the mean
    probability of each class; the fraction of cells called each class; and the score (mean probability of
    `positive`) with a 95% percentile-bootstrap interval over the well's cells.

    `tiles` has a row per cell or tile with its image (`image`) and p_<class> columns; `layout` a row per image
    (plates.join). From prediction, `tiles` also says why a cell abstained (`abstain`): such cells are counted
    (`abstained`, of them `unlike_training` and `uncertain`; `cells_found` counts both kinds, `abstained_share`
    is abstained / cells_found) and left out of everything else. A well whose abstained share is above
    `max_share` (predict.<set>.abstain.max_share) gets no score, and `no_call` says why. `tiles` also says how
    each image was scored (`scored_by`), as each well then says: the cells of images no run could score (every
    run trained on them) are left out, and their well gets no score.
    """
    layout = pd.DataFrame(layout)
    keys = ["plate", "well"]
    wells = layout.groupby(keys, sort=True).agg(
        row=("row", "first"),
        column=("column", "first"),
        role=("role", "first"),
        dose=("dose", "first"),
        unit=("unit", "first"),
        condition=("condition", "first"),
        known_class=("class", "first"),
        fields=("sample", "size"),
    )
    cells = tiles.merge(layout[["sample", *keys]], left_on="image", right_on="sample", how="inner")
    if "scored_by" in cells:
        wells["scored_by"] = cells.groupby(keys)["scored_by"].agg(lambda s: "; ".join(s.unique()))
        cells = cells[~out_of_fold.is_withheld(cells["scored_by"])]
    cells = _count_abstained(wells, cells, keys)
    p = [f"p_{c}" for c in classes]
    cells["called"] = np.asarray(classes)[cells[p].to_numpy().argmax(axis=1)] if len(cells) else []
    counts = cells.groupby(keys)["called"].value_counts().unstack(fill_value=0).reindex(columns=classes, fill_value=0)
    wells["cells"] = cells.groupby(keys).size().reindex(wells.index, fill_value=0)
    wells = wells.join(cells.groupby(keys)[p].mean())
    for c in classes:
        wells[f"fraction_{c}"] = counts[c].reindex(wells.index) / wells["cells"].where(wells["cells"] > 0)
    rng = np.random.default_rng(seed)
    scores = {key: group[f"p_{positive}"].to_numpy(float) for key, group in cells.groupby(keys)}
    intervals = {key: _mean_interval(values, resamples, rng) for key, values in scores.items()}
    wells["score"] = wells[f"p_{positive}"]
    wells["score_low"] = [intervals.get(key, (np.nan, np.nan))[0] for key in wells.index]
    wells["score_high"] = [intervals.get(key, (np.nan, np.nan))[1] for key in wells.index]
    wells["positive_class"] = positive
    _no_call(wells, max_share)
    # Nearly every cell on one output: the network's constant, not the cells' phenotype (left out of Z' and SSMD).
    constant = {key: degenerate.unit_is_constant(group[p].to_numpy(float)) for key, group in cells.groupby(keys)}
    wells["constant_score"] = [constant.get(key, False) for key in wells.index]
    return wells.reset_index()


def _count_abstained(wells, cells, keys):
    """Count each well's abstained cells (in place) and return the cells that did not abstain."""
    reason = cells["abstain"].fillna("").astype(str) if "abstain" in cells else pd.Series("", index=cells.index)
    for column, chosen in (
        ("abstained", reason != ""),
        ("unlike_training", reason == abstention.UNLIKE),
        ("uncertain", reason == abstention.UNCERTAIN),
        ("image_shift", reason == image_shift.SHIFTED),
    ):
        wells[column] = cells[chosen].groupby(keys).size().reindex(wells.index, fill_value=0)
    wells["cells_found"] = cells.groupby(keys).size().reindex(wells.index, fill_value=0)
    wells["abstained_share"] = wells["abstained"] / wells["cells_found"].where(wells["cells_found"] > 0)
    return cells[reason == ""]


def _no_call(wells, max_share):
    """Blank the score of wells that abstained on more than `max_share` of their cells (in place): a score
    from the minority of cells the model recognises does not describe the well."""
    over = wells["abstained_share"] > max_share if max_share is not None else pd.Series(False, index=wells.index)
    wells["no_call"] = ""
    wells.loc[over, "no_call"] = [
        f"no call: {share:.0%} of cells abstained (above max_share {max_share:.0%})"
        for share in wells.loc[over, "abstained_share"]
    ]
    wells.loc[over, ["score", "score_low", "score_high"]] = np.nan


def _mean_interval(values, resamples, rng):
    if len(values) < 2 or np.ptp(values) == 0:
        return (float(values.mean()),) * 2 if len(values) else (np.nan, np.nan)
    result = stats.bootstrap((values,), np.mean, n_resamples=resamples, method="percentile", random_state=rng)
    return result.confidence_interval.low, result.confidence_interval.high


def plate_statistics(wells):
    """Per plate: Z' and SSMD of the control wells' scores, and the dose-response of its sample wells
    (4PL fit and Spearman's rho), as one row each, with the share of cells abstained in the wells each rests on
    (`controls_abstained_share`, `samples_abstained_share`). Wells whose cells got one constant score
    (`constant_score`) are left out of all of them; `constant_wells` counts them and `constant_wells_named`
    names them; so are wells with no call (too many cells abstained: `no_call_wells`, `no_call_wells_named`)."""
    rows = []
    for plate, on_plate in wells.groupby("plate", sort=True):
        constant = on_plate[on_plate["constant_score"]]
        no_call = on_plate[on_plate.get("no_call", pd.Series("", index=on_plate.index)).fillna("") != ""]
        on_plate = on_plate[~on_plate["constant_score"]]
        positive = on_plate.loc[on_plate["role"] == "positive_control", "score"].dropna()
        negative = on_plate.loc[on_plate["role"] == "negative_control", "score"].dropna()
        samples = on_plate[(on_plate["role"] == "sample") & (on_plate["dose"] > 0)].dropna(subset=["score"])
        rho, p = (
            stats.spearmanr(samples["dose"], samples["score"]) if samples["dose"].nunique() > 1 else (np.nan, np.nan)
        )
        fit = fit_dose_response(samples["dose"], samples["score"])
        rows.append(
            {
                "plate": plate,
                "positive_wells": len(positive),
                "negative_wells": len(negative),
                "positive_mean": positive.mean(),
                "negative_mean": negative.mean(),
                "z_prime": z_prime(positive, negative),
                "ssmd": ssmd(positive, negative),
                "controls_abstained_share": _abstained_share(on_plate.loc[positive.index.union(negative.index)]),
                "spearman_rho": float(rho),
                "spearman_p": float(p),
                "abstained": int(on_plate["abstained"].sum()),
                "unit": samples["unit"].iloc[0] if len(samples) else "",
                **fit,
                "samples_abstained_share": _abstained_share(samples),
                "constant_wells": len(constant),
                "constant_wells_named": "; ".join(
                    f"{w.well} ({w.role.replace('_', ' ')}, score {w.score:.4f})" for w in constant.itertuples()
                ),
                "no_call_wells": len(no_call),
                "no_call_wells_named": "; ".join(
                    f"{w.well} ({w.role.replace('_', ' ')}, {w.abstained_share:.0%} abstained)"
                    for w in no_call.itertuples()
                ),
            }
        )
    return pd.DataFrame(rows)


def _abstained_share(wells):
    """The share of cells abstained over `wells` together (nan without cells, or without counts)."""
    if "cells_found" not in wells or not wells["cells_found"].sum():
        return np.nan
    return wells["abstained"].sum() / wells["cells_found"].sum()


def quality_words(z):
    if np.isnan(z):
        return "cannot be computed (fewer than 2 wells of a control)"
    if z > Z_PRIME_EXCELLENT:
        return "an excellent assay (Z' > 0.5)"
    if z > 0:
        return "a marginal assay (0 < Z' <= 0.5: the controls separate, with little room)"
    return "the controls overlap (Z' <= 0): the assay cannot tell them apart"


def sentences(statistics, positive, unit_word):
    """The findings in words, per plate, with what each number rests on."""
    lines = []
    for r in statistics.itertuples():
        lines.append(
            f"plate {r.plate}: score = mean probability of '{positive}' per well over its {unit_word}s. "
            f"Controls: {r.positive_wells} positive wells (mean {r.positive_mean:.2f}), {r.negative_wells} negative "
            f"(mean {r.negative_mean:.2f}); Z' = {r.z_prime:.2f}, {quality_words(r.z_prime)}; SSMD = {r.ssmd:.2f}; "
            f"in these control wells {_percent(r.controls_abstained_share)} of {unit_word}s abstained."
        )
        if getattr(r, "abstained", 0):
            lines.append(
                f"plate {r.plate}: {r.abstained} {unit_word}s abstained (unlike the training data or "
                "uncertain) and are left out of the well scores; wells.tsv counts them per well."
            )
        if getattr(r, "no_call_wells", 0):
            lines.append(
                f"plate {r.plate}: {r.no_call_wells} well(s) got no call and are left out of Z', SSMD and the "
                f"dose-response: most of their {unit_word}s abstained — {r.no_call_wells_named}."
            )
        if r.constant_wells:
            lines.append(
                f"plate {r.plate}: {r.constant_wells} well(s) left out of Z', SSMD and the dose-response: nearly "
                f"every {unit_word} in them got one and the same score, the network's constant output rather than "
                f"the cells' phenotype — {r.constant_wells_named}."
            )
        if r.n_wells == 0:
            continue
        dose = (
            f"{r.n_wells} sample wells at {r.n_doses} doses, in which "
            f"{_percent(r.samples_abstained_share)} of {unit_word}s abstained"
        )
        rank = f"Spearman's rho {r.spearman_rho:.2f} (p = {r.spearman_p:.2g}, {dose})"
        if r.converged:
            interval = (
                f"95% interval {r.ec50_low:.3g} to {r.ec50_high:.3g}"
                if np.isfinite(r.ec50_low)
                else "interval undetermined"
            )
            note = f"; {r.note}" if r.note else ""
            lines.append(
                f"plate {r.plate}: dose-response EC50 {r.ec50:.3g} {r.unit} ({interval}), Hill slope "
                f"{r.hill:.2f}, from {r.bottom:.2f} to {r.top:.2f}{note}; {rank}."
            )
        else:
            lines.append(f"plate {r.plate}: no dose-response fit: {r.note}; {rank}.")
    return lines


def _percent(share):
    return "an unknown share" if not np.isfinite(share) else f"{share:.1%}"


def scoring_sentences(wells):
    """What the findings say about wells whose images the runs also trained on (empty when none did)."""
    if "scored_by" not in wells:
        return []
    scored_by = wells["scored_by"].fillna("")
    out = wells[scored_by.str.contains("out of fold")]
    held = wells[scored_by.str.contains("held out with its plate's controls")]
    left_out = wells[out_of_fold.is_withheld(scored_by)]
    lines = []
    if len(out):
        lines.append(
            f"{len(out)} well(s) share images with the runs' training dataset and were scored out of fold, "
            f"each only by the runs that never trained on it: {_well_names(out)}."
        )
    if len(held):
        lines.append(
            f"{len(held)} other well(s) of those plates were scored as their held-out control wells are "
            "(assay.scoring: out_of_fold_all): each by the runs of one fold alone, so every scored well of "
            "the plate is scored by one fold's runs."
        )
    if len(left_out):
        lines.append(
            f"{len(left_out)} well(s) were left out of Z', SSMD and the dose-response: every run trained "
            f"on their images (training or validation side), so no score of them is honest: "
            f"{_well_names(left_out)}. Cross-validation (split.folds) scores them out of fold."
        )
    return lines


def _well_names(wells, most=24):
    """The wells by name, the first `most` of them: wells.tsv lists every one."""
    names = [f"{r.plate} {r.well} ({r.role})" for r in wells.itertuples()]
    more = f" and {len(names) - most} more (scored_by in wells.tsv)" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def normalisation_note(settings):
    """A caveat when each image was normalised on its own: its brightest pixels then set every cell's scale, so
    a cell without the phenotype in a well where many others have it can look as if it had it."""
    if settings["normalise"]["method"] != "percentile" or settings["kind"] == "cells":
        return []
    return [
        (
            "Each field was normalised on its own (percentile): in a well where many cells have the phenotype, the "
            "others are scaled like them, which can pull per-cell calls and the dose-response towards the "
            "phenotype. For per-cell fractions across wells, prepare.normalise.method: bit_depth scales every "
            "field alike."
        )
    ]


def ensemble_tiles(prediction_files, test_set):
    """The test tiles of `test_set` scored by one model's runs (their predictions.tsv files), each tile's
    probabilities averaged over the runs that scored it (the seeds; under cross-validation a tile's one fold),
    with its image in `image`, as prediction's tiles.tsv has them."""
    table = pd.concat([runs.read_predictions(path) for path in prediction_files], ignore_index=True)
    table = table[table["test_set"] == test_set]
    p = [c for c in table.columns if c.startswith("p_")]
    return table.groupby(["sample", "tile"], sort=True)[p].mean().reset_index().rename(columns={"sample": "image"})


def tested(layout, tiles):
    """The layout rows of the wells some of whose images were scored (a plate's test side is some of its wells)."""
    images = set(tiles["image"])
    wells = {(row["plate"], row["well"]) for row in layout if row["sample"] in images}
    return [row for row in layout if (row["plate"], row["well"]) in wells]


def write_assay(
    *, tiles, run_path, layout, positive, resamples, outputs, source, max_share=None, fdr=0.05, min_excess=0.1
):
    """An assay job: wells.tsv, the per-plate statistics, Z' per scorer group, the findings page and the
    dose-response figure of the scored cells (tiles) of a plate; heatmaps are a job per plate, from wells.tsv.
    `outputs` has the rule's wells, statistics, scorers, findings, dose and dose_svg paths; `source` says whose
    calls. `max_share`: predict.<set>.abstain.max_share; `fdr`, `min_excess`: assay.unfamiliar_*."""
    from cellclass.evaluate import metrics

    classes = [c[len("p_") :] for c in tiles.columns if c.startswith("p_")]
    positive = positive_class(layout, classes, positive)
    wells = well_table(tiles, layout, classes, positive, resamples=resamples, max_share=max_share)
    wells, baselines = unfamiliar.flag_wells(wells, fdr=fdr, min_excess=min_excess)
    statistics = plate_statistics(wells)
    statistics["control_abstained_rate"] = [baselines[p]["rate"] for p in statistics["plate"]]
    flagged = wells.groupby("plate")["unfamiliar"].sum()
    statistics["unfamiliar_wells"] = [int(flagged.get(p, 0)) for p in statistics["plate"]]
    by_scorer = scorers.scorer_statistics(wells)
    settings = tiling_check.read_run(run_path)["prepare"]["settings"]  # a run's metrics.json, or a model package
    unit = metrics.unit_of("tile", settings["kind"])
    warned = scorers.sentences(by_scorer)
    for line in warned:
        log.log(logging.WARNING if line.startswith("WARNING") else logging.INFO, "%s", line)
    lines = (
        scoring_sentences(wells)
        + sentences(statistics, positive, unit)
        + warned
        + unfamiliar.sentences(wells, baselines, fdr=fdr, min_excess=min_excess, unit_word=unit)
        + normalisation_note(settings)
    )
    _write(outputs, wells, statistics, by_scorer, lines, f"over its {unit}s, from {source}")
    plate_figures.dose_response(wells, statistics, [outputs.dose, outputs.dose_svg])
    return wells, statistics


def _write(outputs, wells, statistics, by_scorer, lines, source):
    """The assay's tables and its findings page, each written whole or not at all."""
    from cellclass.io.atomic import atomic_path
    from cellclass.templates import render

    for frame, path in ((wells, outputs.wells), (statistics, outputs.statistics), (by_scorer, outputs.scorers)):
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, sep="\t", index=False)
    page = render("assay.html", title="Plate assay", source=source, lines=lines)
    with atomic_path(outputs.findings) as tmp:
        tmp.write_text(page, encoding="utf-8")
