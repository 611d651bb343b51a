"""The results in words: sentences and warnings for findings.html and the report.

Every number says its unit (tile or cell, image, group) and comes with what it should be
read against: chance, the majority-class rate, an interval.
"""

import numpy as np
import pandas as pd

from cellclass.evaluate import metrics
from cellclass.evaluate.degenerate import TOLERANCE
from cellclass.evaluate.ensemble import pooled_rows
from cellclass.evaluate.runs import RUN, run_name
from cellclass.evaluate.stats import MIN_GROUPS, MIN_PAIRS
from cellclass.learn import recipe
from cellclass.learn.novelty import MIN_BEYOND
from cellclass.prepare.extra_labels import PREFIX as EXTRA
from cellclass.templates import render

# A test side needs this many groups of every class before image- or group-level numbers mean much.
MIN_TEST_GROUPS = 3
IMBALANCE = 3.0
# Seeds a few points apart do not "disagree", however small the effect.
DISAGREE_FLOOR = 0.05


def _label(experiment, model):
    return f"{experiment}/{model}"


def _where(test_set, dataset):
    return f"its own test side ({test_set})" if test_set == dataset else f"the independent test set {test_set}"


def _runs(n_runs, n_folds, what="seed(s)"):
    """'2 seed(s)', or under cross-validation '6 runs (3 folds × 2 seeds)'."""
    if n_folds > 1:
        return f"{n_runs} runs ({n_folds} folds × {n_runs // n_folds} seed(s))"
    return f"{n_runs} {what}"


def _interval(low, high):
    if np.isnan(low):
        return f"no interval: fewer than {MIN_GROUPS} test groups of some class"
    return f"95% interval {low:.2f} to {high:.2f}"


def images_without_tiles(table):
    """One warning per dataset naming every image that gave no tiles (`table`: images_without_tiles.tsv rows,
    one per image and fold)."""
    lines = []
    if table.empty:
        return lines
    for dataset, rows in table.groupby("dataset", sort=False):
        named = []
        for sample, of_image in rows.groupby("sample", sort=False):
            r = of_image.iloc[0]
            tested = of_image.loc[of_image["split"] == "test", "fold"]
            side = (
                f"{r.split} side"
                if len(of_image) == 1
                else (f"tested in fold {tested.iloc[0]}" if len(tested) else "never tested")
            )
            named.append(f"{sample} ({side}): {r.reason}")
        lines.append(f"dataset {dataset}: {len(named)} image(s) gave no tiles and were left out — {'; '.join(named)}")
    return lines


def collapsed_runs(table):
    """Runs that call (almost) everything one class, or whose balanced accuracy is not above chance."""
    lines = []
    rows = table[(table["level"] == "tile") & (table["collapsed"] | table["at_chance"])]
    folds = table.groupby("experiment")["fold"].nunique()
    for r in rows.itertuples():
        what = (
            f"collapsed: {r.top_call_share:.0%} of its {r.unit} calls are '{r.top_call}'"
            if r.collapsed
            else "no better than chance"
        )
        lines.append(
            f"{_label(r.experiment, r.model)} {run_name(r.fold, r.seed, folds[r.experiment] > 1)} on {r.test_set}: {what} "
            f"(balanced accuracy per {r.unit} "
            f"{r.balanced_accuracy:.2f}, {_lower_bound(r.balanced_accuracy_low)}, chance {r.chance:.2f}); "
            "no claim is made about what it looks at"
        )
    return lines


def constant_outputs(table):
    """Runs whose network gave many different tiles (or every tile of some test group) one output."""
    lines = []
    rows = table[(table["level"] == "tile") & table["constant_output"].astype(bool)]
    folds = table.groupby("experiment")["fold"].nunique()
    for r in rows.itertuples():
        what = []
        if r.constant_tiles:
            what.append(
                f"{r.constant_tiles} of its {r.n_units} {r.unit}s got one probability vector "
                f"({r.constant_value}, each within {TOLERANCE:g})"
            )
        if r.constant_groups:
            what.append(f"in {r.constant_groups} test group(s) nearly every {r.unit} got one and the same")
        lines.append(
            f"{_label(r.experiment, r.model)} {run_name(r.fold, r.seed, folds[r.experiment] > 1)} on {r.test_set}: "
            f"constant output — {'; '.join(what)}. The network ignores its input there: those scores measure its "
            "bias, not the cells, and no claim is made about what it looks at"
        )
    return lines


def _lower_bound(low):
    """The interval's lower end in words; a test side too small to resample has none (never 'nan')."""
    return f"lower 95% bound {low:.2f}" if np.isfinite(low) else "no interval: too few test groups to resample"


def small_test_sides(predictions):
    """Test sets with fewer than MIN_TEST_GROUPS groups of some class."""
    lines = []
    for (experiment, test_set), tiles in predictions.groupby(["experiment", "test_set"], sort=False):
        per_class = tiles.groupby("true")["group"].nunique()
        if per_class.min() < MIN_TEST_GROUPS:
            counts = ", ".join(f"{n} of {cls}" for cls, n in per_class.items())
            lines.append(
                f"{experiment} on {test_set}: the test side holds few independent groups ({counts}; fewer than "
                f"{MIN_TEST_GROUPS} of some class). Every number rests on these few units: one image more or less "
                f"moves a class's image-level recall by up to {1 / per_class.min():.0%}. Add images or groups."
            )
    return lines


def imbalance(runs):
    lines = []
    for experiment, rows in runs.groupby("experiment", sort=False):
        r = rows.iloc[0]
        if r["imbalance_ratio"] > IMBALANCE:
            counts = ", ".join(f"{c}: {n}" for c, n in r["train_tiles_per_class"].items())
            remedy = {
                "sampling": "balanced sampling of the training stream",
                "weights": "class weights in the loss",
                "none": "none (train.class_balance: none)",
            }[r["class_balance"]]
            lines.append(
                f"{experiment}: training classes are imbalanced {r['imbalance_ratio']:.1f}:1 (tiles {counts}); "
                f"remedy applied: {remedy}. Plain accuracy favours the large class; read balanced accuracy."
            )
    return lines


def no_validation(runs):
    rows = runs[runs["validation_tiles"] == 0]
    return [
        f"{experiment}: no validation side (too few groups per class); its training curves show training data only "
        "and its runs keep their last epoch and are uncalibrated (nothing to choose an epoch or fit a temperature on)"
        for experiment in dict.fromkeys(rows["experiment"])
    ]


def _span(values):
    low, high = int(min(values)), int(max(values))
    return f"{low}" if low == high else f"{low}–{high}"


def training_recipe(runs):
    """Per experiment/model: the recipe its runs trained with, and the epoch they kept and why."""
    lines = []
    if "recipe" not in runs:
        return lines  # runs from before recipes were recorded
    for (experiment, model), rows in runs.groupby(["experiment", "model"], sort=False):
        used = rows["recipe"].iloc[0]
        if not isinstance(used, dict):
            continue
        n = len(rows)
        kept, trained = rows["kept_epoch"], rows["epochs"]
        best = rows["epoch_selection"] == "best"
        parts = []
        if best.any():
            parts.append(
                f"{int(best.sum())} of {n} run(s) kept the epoch of best {used['monitor'].replace('_', ' ')} on the "
                f"validation side (never the test side): epoch {_span(kept[best])} of {_span(trained[best])} trained"
            )
        for selection, what in (
            ("last", "kept their last epoch"),
            ("last: no validation side", "had no validation side and kept their last epoch"),
        ):
            last = rows["epoch_selection"] == selection
            if last.any():
                parts.append(f"{int(last.sum())} of {n} run(s) {what} ({_span(kept[last])})")
        stopped = rows["stopped_epoch"].dropna()
        if len(stopped):
            parts.append(
                f"{len(stopped)} of {n} stopped early (after epoch {_span(stopped)} of at most {used['epochs']})"
            )
        lines.append(
            f"{_label(experiment, model)}: trained with {recipe.describe(used)}. "
            + "; ".join(parts)
            + "."
            + training_work(rows)
        )
    return lines


def training_work(rows):
    """' Each run's planned work: ...' — the tile-steps its runs were set to train, what set them, and what they cost."""
    if "work" not in rows or not all(isinstance(w, dict) for w in rows["work"]):
        return ""  # runs from before budgets were recorded
    steps = [w["tile_steps"] for w in rows["work"]]
    passes = [w["passes"] for w in rows["work"]]
    rate = [w["tile_steps"] / s for w, s in zip(rows["work"], rows["train_seconds"]) if s]
    passes = f"{min(passes):.3g}" if min(passes) == max(passes) else f"{min(passes):.3g}–{max(passes):.3g}"
    text = (
        f" Each run's planned work: {_span(steps)} tile-steps ({passes} passes over its "
        f"training tiles), set by {rows['work'].iloc[0]['set_by']}; training took {_span(rows['train_seconds'])} s"
        f" per run"
    )
    if rate:
        text += f" (up to {_span(rate)} tile-steps a second, scoring after each epoch included)"
    return text + "."


def seeds_disagree(summary):
    """Models whose runs (seeds; folds too under cross-validation) spread wider than the effect (the distance
    from chance), beyond a noise floor of DISAGREE_FLOOR: runs all at chance agree on having learnt nothing,
    which collapsed_runs reports."""
    lines = []
    rows = summary[(summary["metric"] == "balanced_accuracy") & (summary["n_runs"] > 1) & (summary["level"] == "tile")]
    for r in rows.itertuples():
        spread, effect = r.max - r.min, abs(r.mean - r.chance)
        if spread > max(effect, DISAGREE_FLOOR):
            who = "runs" if r.n_folds > 1 else "seeds"
            lines.append(
                f"{_label(r.experiment, r.model)} on {r.test_set}: {who} disagree — balanced accuracy per {r.unit} "
                f"ranges {r.min:.2f}–{r.max:.2f} across {_runs(r.n_runs, r.n_folds, 'seeds')}, wider than its "
                f"distance from chance ({effect:.2f})"
            )
    return lines


def headline(summary):
    """Balanced accuracy at the headline level and per tile, with intervals and baselines."""
    lines = []
    ba = summary[summary["metric"] == "balanced_accuracy"]
    for key, rows in ba.groupby(["experiment", "dataset", "model", "test_set"], sort=False):
        experiment, dataset, model, test_set = key
        top = rows[rows["headline"]].iloc[0]
        tile = rows[rows["level"] == "tile"].iloc[0]
        human = summary[(summary[["experiment", "model", "test_set"]] == [experiment, model, test_set]).all(axis=1)]
        human = human["human"].dropna()
        by_eye = f"; by eye, per {tile.unit}, {human.iloc[0]:.2f} (plain accuracy)" if len(human) else ""
        per_tile = (
            ""
            if top.level == "tile"
            else (f"; per {tile.unit} {tile.estimate:.2f} ({_interval(tile.ci95_low, tile.ci95_high)})")
        )
        lines.append(
            f"{_label(experiment, model)} on {_where(test_set, dataset)}: balanced accuracy per {top.unit} "
            f"{top.estimate:.2f} over {top.n_groups} test groups and {_runs(top.n_runs, top.n_folds)} "
            f"({_interval(top.ci95_low, top.ci95_high)}){per_tile}. "
            f"Chance {top.chance:.2f}; always calling the largest class gives plain accuracy "
            f"{top.majority_rate:.2f} per {top.unit}{by_eye}.{_mixed(top, tile.unit)}"
        )
    return lines


def _mixed(top, tile_unit):
    """Why the headline is not at a larger unit, and the units of several classes it leaves out, in words."""
    words = ""
    if isinstance(top.headline_reason, str) and top.headline_reason:
        words += (
            f" The headline is per {top.unit} because {top.headline_reason}: a unit whose {tile_unit}s "
            "have several classes has no class of its own to call."
        )
    if top.mixed_units:
        words += (
            f" {top.mixed_units} of {top.n_units + top.mixed_units} test {top.level}s hold several classes "
            f"and are left out of the per-{top.level} scores."
        )
    return words


def test_time_augmentation(table):
    """A line per experiment and model whose test scores average dihedral views (evaluation.tta)."""
    used = table[table["tta"] != "none"].drop_duplicates(["experiment", "model"])
    return [
        f"{_label(r.experiment, r.model)}: test scores average each tile's probabilities over its 8 dihedral "
        f"views (evaluation.tta: {r.tta}); the training curves do not"
        for r in used.itertuples()
    ]


def calibration(table):
    """Per experiment and model: the runs' median temperature and, on each test set, the median ECE per tile
    before and after it (runs.tsv's calibration columns); uncalibrated runs are counted as such."""
    lines = []
    tile = table[(table["level"] == "tile") & table["ece_before"].notna()]
    for (experiment, model), rows in tile.groupby(["experiment", "model"], sort=False):
        fitted = rows[rows["calibration"] != "uncalibrated"]
        runs, n_fitted = rows[RUN].drop_duplicates(), len(fitted[RUN].drop_duplicates())
        if not n_fitted:
            lines.append(f"{_label(experiment, model)}: uncalibrated (no validation side to fit a temperature on)")
            continue
        effects = "; ".join(
            f"on {test_set} {r['ece_before'].median():.3f} → {r['ece_after'].median():.3f}"
            for test_set, r in fitted.groupby("test_set", sort=False)
        )
        rest = len(runs) - n_fitted
        lines.append(
            f"{_label(experiment, model)}: temperature scaling fitted on the validation side (median temperature "
            f"{fitted.drop_duplicates(RUN)['temperature'].median():.2f} over {n_fitted} run(s)); median ECE per "
            f"{rows['unit'].iloc[0]} before → after: {effects}"
            + (f"; {rest} run(s) uncalibrated (no validation side)" if rest else "")
        )
    return lines


def ensemble_calibration(table):
    """Per experiment and model: the ensemble's ECE and log loss per tile on each test set against the mean
    member's, whether it is under-confident, and the ensemble temperature (`table`: ensemble.ensemble_table)."""
    lines = []
    for (experiment, model), rows in pooled_rows(table).groupby(["experiment", "model"], sort=False):
        first = rows.iloc[0]
        who = f"{first.members} seed(s)" + (f" per fold, pooled over {first.folds} folds" if first.folds > 1 else "")
        per_set = "; ".join(
            f"on {r.test_set} ECE {r.ece:.3f}, log loss {r.log_loss:.3f} (mean member "
            f"{r.member_ece:.3f}, {r.member_log_loss:.3f})"
            for r in rows.itertuples()
        )
        text = (
            f"{_label(experiment, model)}: the ensemble (the mean of the calibrated probabilities of {who}, "
            f"as prediction calls), per {first.unit}: {per_set}."
        )
        under = [
            f"{r.test_set} ({r.mean_confidence:.2f} < {r.accuracy:.2f})" for r in rows.itertuples() if r.under_confident
        ]
        if under:
            text += f" Under-confident (mean confidence below accuracy) on {', '.join(under)}."
        if first.ensemble_temperature != 1:
            text += (
                f" An ensemble temperature of {first.ensemble_temperature:.2f}, fitted on the "
                f"{first.calibration_tiles} {first.unit}s of the validation side's calibration part, gives ECE "
                + "; ".join(f"{r.tempered_ece:.3f} on {r.test_set}" for r in rows.itertuples())
                + "."
            )
        else:
            text += f" No ensemble temperature: {first.ensemble_temperature_note}."
        lines.append(text)
    return lines


def novelty_samples(runs):
    """Per experiment and model whose runs set the novelty threshold on too few held-out tiles for its quantile
    (metrics.json's novelty.threshold_note): how few, and how many it needs."""
    lines = []
    if "novelty" not in runs:
        return lines
    for (experiment, model), rows in runs.groupby(["experiment", "model"], sort=False):
        records = [r for r in rows["novelty"] if isinstance(r, dict) and r.get("threshold_note")]
        if records:
            tiles = [r["threshold_tiles"] for r in records]
            lines.append(
                f"{_label(experiment, model)}: in {len(records)} of {len(rows)} run(s) the novelty threshold (the "
                f"{records[0]['threshold_quantile']:g} quantile) rests on {_span(tiles)} held-out tiles, fewer than "
                f"the {records[0]['threshold_tiles_needed']} that leave {MIN_BEYOND} beyond it: which new tiles "
                "prediction calls unlike the training data is decided by a handful. Add validation images."
            )
    return lines


def shared_validation(runs):
    """Per experiment and model whose validation side was too small to give the epoch choice and the
    calibration cells of their own (metrics.json's validation_uses.shared)."""
    lines = []
    if "validation_uses" not in runs:
        return lines
    for (experiment, model), rows in runs.groupby(["experiment", "model"], sort=False):
        shared = [u for u in rows["validation_uses"] if isinstance(u, dict) and u["shared"]["images"]]
        if shared:
            lines.append(
                f"{_label(experiment, model)}: in {len(shared)} of {len(rows)} run(s) the validation side was too "
                f"small to split by image: {_span([u['shared']['images'] for u in shared])} image(s) "
                f"({_span([u['shared']['tiles'] for u in shared])} tiles) both chose the epoch and fitted the "
                "temperature and novelty threshold, which are then a little optimistic"
            )
    return lines


def overfitting(table):
    lines = []
    own = table[(table["level"] == "tile") & (table["test_set"] == table["dataset"])]
    for (experiment, model), rows in own.groupby(["experiment", "model"], sort=False):
        n, n_over = len(rows), int(rows["overfit"].sum())
        reached = rows["first_epoch_train_100"].dropna()
        when = ""
        if len(reached):
            low, high = int(reached.min()), int(reached.max())
            when = (
                f"; {len(reached)} of {n} runs reached 100%, first at epoch {low if low == high else f'{low}–{high}'}"
            )
        verdict = "no run overfits" if n_over == 0 else f"{n_over} of {n} runs overfit"
        lines.append(
            f"{_label(experiment, model)}: training accuracy {rows['final_train_accuracy'].mean():.2f} at the kept "
            f"epoch (inference mode, unaugmented training tiles{when}) against balanced test accuracy per {rows['unit'].iloc[0]} "
            f"{rows['balanced_accuracy'].mean():.2f}, a gap of {rows['gap'].mean():.2f} — {verdict}."
        )
    return lines


def comparison(row):
    """One comparison in words; a p-value only where the number of paired runs lets it fall below 0.05."""
    pairs = _runs(row.n_pairs, row.n_folds)
    head = (
        f"{row.experiment} on {row.test_set}: {row.a} − {row.b}, balanced accuracy per {row.unit} "
        f"{row.mean_a:.2f} vs {row.mean_b:.2f}, paired difference {row.difference:+.2f} "
        f"({_interval(row.ci95_low, row.ci95_high)}, over test groups and {pairs})"
    )
    if np.isnan(row.p) and row.n_pairs >= MIN_PAIRS:
        return f"{head}. Every paired run scores the same, so there is no difference to test."
    if np.isnan(row.p):
        paired = f"{pairs} paired," if row.n_folds > 1 else f"{row.n_pairs} paired seed(s)"
        return (
            f"{head}. With {paired} a signed-rank test cannot reach p < 0.05 "
            f"(it needs at least {MIN_PAIRS}), so no p-value is given; the interval is the evidence."
        )
    return f"{head}; Wilcoxon signed-rank p = {row.p:.3g}, Holm-corrected p = {row.p_holm:.3g}."


def leakage(table):
    """Per experiment, what a random tile split (the leakage check's control run) would have claimed against the
    split by group (`table`: evaluate.leakage.leakage_table)."""
    return [
        f"{_label(r.experiment, r.model)}: a random {r.unit} split would have claimed {r.random_split:.2f} (balanced "
        f"accuracy per {r.unit}); split by {r.headline_unit} it is {r.grouped_split_headline:.2f} per "
        f"{r.headline_unit} (per {r.unit} {r.grouped_split:.2f}), a gap of {r.gap:+.2f} per {r.unit}. In the random "
        f"split tiles of one {r.headline_unit} train and test, so only its per-{r.unit} number means anything; it "
        "is one control run (seed 0) on one split, so it has no interval: the gap is a size, not a test."
        for r in table.itertuples()
    ]


def extra_labelled(runs, predictions):
    """Per experiment that trained on extra labelled cells (datasets.<name>.extra_labels): how many, of which
    class, from which sheet, in how many of its runs; and how many of them a test side holds, counted in the
    runs' predictions (none: they sit outside the split)."""
    lines = []
    if "extra_tiles" not in runs:
        return lines  # runs from before extra labels
    kinds = metrics.kinds_of(runs)
    for experiment, rows in runs.groupby("experiment", sort=False):
        per_run = [sum(c.values()) if isinstance(c, dict) else 0 for c in rows["extra_tiles"]]
        if not any(per_run):
            continue
        unit = metrics.unit_of("tile", kinds.get(experiment, "fields"))
        largest = rows["extra_tiles"].iloc[per_run.index(max(per_run))]
        classes = ", ".join(f"{cls} {n}" for cls, n in largest.items())
        sheets = ", ".join(sorted({s for listed in rows["extra_labels"] if isinstance(listed, list) for s in listed}))
        trained = (
            f"trained in every one of its {len(rows)} run(s)"
            if min(per_run) == max(per_run)
            else f"trained in {sum(n > 0 for n in per_run)} of {len(rows)} runs, {_span(per_run)} a run"
        )
        tested = predictions[predictions["experiment"].eq(experiment)]
        leaked = tested["sample"].astype(str).str.startswith(EXTRA).sum()
        on_test = (
            "none is in any test side"
            if not leaked
            else f"{leaked} of the test sides' {unit}s are extra ones: their numbers are not honest"
        )
        lines.append(
            f"{experiment}: {max(per_run)} extra labelled {unit}s ({classes}; sheet {sheets}) {trained}; "
            f"{on_test} ({len(tested)} test {unit}s checked)"
        )
    return lines


def quality_outliers(table):
    """One warning per dataset naming the images unlike the rest of their set in quality (prepare.qc), and one
    naming images some measure could not be computed for; `table`: the datasets' qc.parquet rows."""
    lines = []
    for dataset, rows in table.groupby("dataset", sort=False) if len(table) else []:
        odd = rows[rows["unlike"] != ""]
        if len(odd):
            named = "; ".join(f"{r.image} ({r.unlike})" for r in odd.head(10).itertuples())
            lines.append(
                f"dataset {dataset}: {len(odd)} of {len(rows)} image(s) are unlike the rest of their set in "
                f"quality (results/{dataset}/qc.png): {named}{' ...' if len(odd) > 10 else ''}. Check them: "
                "a blurred, saturated or mislabelled field trains and tests like any other."
            )
        unmeasured = rows[(rows["qc_note"] != "") & rows["qc_note"].str.startswith("cannot be computed")]
        if len(unmeasured):
            lines.append(
                f"dataset {dataset}: quality measures of {len(unmeasured)} image(s) "
                f"{unmeasured['qc_note'].iloc[0]} (e.g. {unmeasured['image'].iloc[0]}: a constant image)."
            )
    return lines


def evaluation_sections(runs, table, summary, compared, empty, predictions, leaked=None, ensembles=None, quality=None):
    """{heading: lines} of the findings page: warnings first; `leaked`: the leakage check's table, if it ran;
    `ensembles`: the ensembles' calibration (ensemble.ensemble_table); `quality`: the datasets' qc.parquet."""
    warnings = (
        collapsed_runs(table)
        + constant_outputs(table)
        + small_test_sides(predictions)
        + imbalance(runs)
        + images_without_tiles(empty)
        + quality_outliers(quality if quality is not None else pd.DataFrame())
        + seeds_disagree(summary)
        + no_validation(runs)
        + shared_validation(runs)
        + novelty_samples(runs)
    )
    results = (
        headline(summary)
        + test_time_augmentation(table)
        + calibration(table)
        + (ensemble_calibration(ensembles) if ensembles is not None else [])
        + overfitting(table)
        + training_recipe(runs)
        + extra_labelled(runs, predictions)
    )
    if len(compared):
        results += list(compared["text"])
    else:
        results.append(
            "No comparison: every experiment trains one model, and experiments are scored on different test "
            "sets, which cannot be compared."
        )
    if leaked is not None:
        results += leakage(leaked)
    return {"Warnings": warnings, "Results": results}


def read_tables(paths):
    """The rows of several tidy TSV tables, as text, in one frame."""
    frames = [pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_html(path, sections):
    """A findings page: `sections` maps a heading to its lines."""
    path.write_text(render("findings.html", title="Findings", sections=sections), encoding="utf-8")
