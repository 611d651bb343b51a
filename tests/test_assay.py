"""Plate statistics against hand-computed examples: per-well scores, Z', SSMD and the 4-parameter logistic fit."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cellclass.assay import dose_response, held_out, plate_figures, scorers, unfamiliar
from cellclass.assay import wells as assay
from cellclass.io.errors import InputError

POSITIVE = [0.9, 1.0, 0.95, 0.85]
NEGATIVE = [0.1, 0.0, 0.05, 0.15]


def test_z_prime_and_ssmd_match_the_formulas_by_hand():
    # Both controls: mean 0.925 and 0.075, sample sd sqrt(0.0125 / 3) (deviations +-0.025, +-0.075).
    sd = math.sqrt((2 * 0.025**2 + 2 * 0.075**2) / 3)
    assert assay.z_prime(POSITIVE, NEGATIVE) == pytest.approx(1 - 3 * (sd + sd) / 0.85)
    assert assay.z_prime(POSITIVE, NEGATIVE) == pytest.approx(0.5444, abs=1e-4)
    assert assay.ssmd(POSITIVE, NEGATIVE) == pytest.approx(0.85 / math.sqrt(2 * sd**2))
    assert assay.ssmd(NEGATIVE, POSITIVE) == pytest.approx(-assay.ssmd(POSITIVE, NEGATIVE))
    # Overlapping controls give a negative Z'; one well of a control gives none.
    assert assay.z_prime([0.6, 0.4], [0.5, 0.3]) < 0
    assert np.isnan(assay.z_prime([0.9], NEGATIVE)) and np.isnan(assay.ssmd(POSITIVE, [0.1]))
    assert "excellent" in assay.quality_words(0.7) and "overlap" in assay.quality_words(-0.2)


def test_a_4pl_fit_recovers_known_parameters():
    dose = np.repeat(np.geomspace(0.01, 100, 9), 2)
    truth = {"bottom": 0.1, "top": 0.9, "log_ec50": np.log10(1.5), "hill": 1.2}
    wobble = 0.02 * np.tile([1, -1], 9)  # deterministic, symmetric noise
    fit = dose_response.fit_dose_response(dose, dose_response.logistic4(dose, **truth) + wobble)
    assert fit["converged"] and fit["note"] == ""
    assert fit["ec50"] == pytest.approx(1.5, rel=0.05) and fit["hill"] == pytest.approx(1.2, rel=0.1)
    assert fit["bottom"] == pytest.approx(0.1, abs=0.02) and fit["top"] == pytest.approx(0.9, abs=0.02)
    assert fit["ec50_low"] < 1.5 < fit["ec50_high"]
    # A falling curve is a negative Hill slope.
    falling = dose_response.fit_dose_response(dose, dose_response.logistic4(dose, 0.9, 0.1, np.log10(1.5), 1.2))
    assert falling["ec50"] == pytest.approx(1.5, rel=0.01)


def test_a_fit_that_cannot_be_made_says_why():
    few = dose_response.fit_dose_response([1, 2, 3], [0.1, 0.5, 0.9])
    assert not few["converged"] and "needs 4 doses" in few["note"]
    flat = dose_response.fit_dose_response(np.geomspace(0.1, 10, 8), np.full(8, 0.5))
    assert not flat["converged"] and flat["note"]


def tiles():
    """Two wells of 4 cells and one of 2; class order (aggregates, control)."""
    p = [0.9, 0.8, 0.7, 0.2, 0.1, 0.2, 0.3, 0.0, 0.6, 0.6]
    images = ["P/A01/s1"] * 2 + ["P/A01/s2"] * 2 + ["P/A02/s1"] * 4 + ["P/B01/s1"] * 2
    return pd.DataFrame({"image": images, "p_aggregates": p, "p_control": 1 - np.array(p)})


def layout():
    rows = [
        ("P/A01/s1", "A01", "positive_control", np.nan),
        ("P/A01/s2", "A01", "positive_control", np.nan),
        ("P/A02/s1", "A02", "negative_control", np.nan),
        ("P/B01/s1", "B01", "sample", 3.0),
        ("P/B02/s1", "B02", "sample", 10.0),
    ]
    return [
        {
            "sample": s,
            "plate": "P",
            "well": w,
            "row": ord(w[0]) - 65,
            "column": int(w[1:]) - 1,
            "site": s[-1],
            "role": role,
            "dose": dose,
            "unit": "uM",
            "condition": "",
            "class": "aggregates" if "pos" in role else "",
        }
        for s, w, role, dose in rows
    ]


def test_wells_roll_up_their_cells_with_an_interval():
    wells = assay.well_table(tiles(), layout(), ["aggregates", "control"], "aggregates", resamples=199)
    wells = wells.set_index("well")
    assert wells.loc["A01", "fields"] == 2 and wells.loc["A01", "cells"] == 4
    assert wells.loc["A01", "score"] == pytest.approx(np.mean([0.9, 0.8, 0.7, 0.2]))
    assert wells.loc["A01", "fraction_aggregates"] == 0.75 and wells.loc["A02", "fraction_control"] == 1.0
    assert wells.loc["A01", "score_low"] <= wells.loc["A01", "score"] <= wells.loc["A01", "score_high"]
    assert wells.loc["B01", "score_low"] == wells.loc["B01", "score_high"] == 0.6  # identical cells: no spread
    assert wells.loc["B02", "cells"] == 0 and np.isnan(wells.loc["B02", "score"])  # a well whose field had no cells
    assert (wells.loc["B01", "row"], wells.loc["B01", "column"], wells.loc["B01", "dose"]) == (1, 0, 3.0)


def test_a_well_no_run_could_score_has_no_score_and_the_findings_say_so():
    scored = tiles().assign(scored_by="all runs")
    scored.loc[scored["image"] == "P/A02/s1", "scored_by"] = "not scored: every run trained on it"
    scored.loc[scored["image"] == "P/A02/s1", ["p_aggregates", "p_control"]] = np.nan
    scored.loc[scored["image"].str.startswith("P/A01"), "scored_by"] = "out of fold (fold 0, 1 run)"
    wells = assay.well_table(scored, layout(), ["aggregates", "control"], "aggregates", resamples=99)
    by_well = wells.set_index("well")
    assert by_well.loc["A02", "cells"] == 0 and np.isnan(by_well.loc["A02", "score"])
    assert by_well.loc["A01", "score"] == pytest.approx(np.mean([0.9, 0.8, 0.7, 0.2]))
    assert by_well.loc["B01", "scored_by"] == "all runs"
    lines = assay.scoring_sentences(wells)
    assert lines[0].startswith("1 well(s) share images") and "P A01 (positive_control)" in lines[0]
    assert lines[1].startswith("1 well(s) were left out of Z', SSMD and the dose-response") and "P A02" in lines[1]
    assert assay.plate_statistics(wells).loc[0, "negative_wells"] == 0  # the left-out control is not counted
    assert assay.scoring_sentences(assay.well_table(tiles(), layout(), ["aggregates", "control"], "aggregates")) == []


def test_the_score_is_the_positive_controls_class_unless_configured():
    assert assay.positive_class(layout(), ["aggregates", "control"]) == "aggregates"
    assert assay.positive_class(layout(), ["aggregates", "control"], "control") == "control"
    with pytest.raises(InputError, match="'mitotic' is not a class"):
        assay.positive_class(layout(), ["aggregates", "control"], "mitotic")
    unnamed = [dict(row, **{"class": ""}) for row in layout()]
    with pytest.raises(InputError, match="set it"):
        assay.positive_class(unnamed, ["aggregates", "control"])


def counted_wells(controls, samples):
    """A plate's wells from (abstained, cells found) counts: control wells alternate negative and positive."""
    rows = [
        {
            "plate": "P",
            "well": f"A{i + 1:02d}",
            "role": ("negative_control", "positive_control")[i % 2],
            "abstained": k,
            "cells_found": n,
        }
        for i, (k, n) in enumerate(controls)
    ]
    rows += [
        {"plate": "P", "well": f"B{i + 1:02d}", "role": "sample", "abstained": k, "cells_found": n}
        for i, (k, n) in enumerate(samples)
    ]
    table = pd.DataFrame(rows)
    return table.assign(abstained_share=table["abstained"] / table["cells_found"])


def test_a_well_that_abstains_far_above_its_controls_is_flagged():
    # Controls abstain on about 1% of their cells; B01 on 60%, B02 on 2.5% of 2,000 cells (significant, but
    # under the 10-point floor), B03 on 1.5%, B04 has no cells, B05 abstained on every one of its 20.
    controls = [(2, 200), (1, 180), (3, 220), (2, 200), (0, 190), (4, 210), (2, 200), (1, 200)]
    samples = [(120, 200), (50, 2000), (3, 200), (0, 0), (20, 20)]
    wells, baselines = unfamiliar.flag_wells(counted_wells(controls, samples))
    flagged = wells.set_index("well")
    assert list(flagged.index[flagged["unfamiliar"]]) == ["B01", "B05"]
    assert 0 < flagged.loc["B05", "unfamiliar_p"] < 1e-30  # a far tail, not rounded to 0
    assert (
        flagged.loc["B01", "unfamiliar_q"] < 1e-6
        and "120 of 200 cells abstained (60%)" in flagged.loc["B01", "unfamiliar_note"]
    )
    assert flagged.loc["B02", "unfamiliar_q"] < 0.05 and not flagged.loc["B02", "unfamiliar"]  # the effect-size floor
    assert flagged.loc["B03", "unfamiliar_q"] > 0.05 and np.isnan(flagged.loc["B04", "unfamiliar_p"])
    assert not flagged.loc[flagged["role"] != "sample", "unfamiliar"].any()
    base = baselines["P"]
    assert base["rate"] == pytest.approx(15 / 1600, rel=0.2) and base["control_wells"] == 8 and base["tested"] == 4
    lines = unfamiliar.sentences(wells, baselines, fdr=0.05, min_excess=0.1)
    assert "2 show a phenotype the model has not seen: B01 (120 of 200 cells, 60%" in lines[0]
    assert "no well-to-well spread beyond sampling" in lines[0]  # these controls vary as binomial draws do
    assert "beta-binomial" in lines[0]


def test_control_wells_that_vary_widely_do_not_make_a_moderate_well_significant():
    """Over-dispersion: the controls' shares spread from 0 to 12%; a well at 15% is unremarkable against that
    spread (the beta-binomial), though a binomial test against the pooled 5% would call it p < 1e-5."""
    controls = [(0, 200), (24, 200), (2, 200), (18, 200), (6, 200), (20, 200), (1, 200), (9, 200)]
    wells, baselines = unfamiliar.flag_wells(counted_wells(controls, [(30, 200), (150, 200)]))
    pooled = sum(k for k, _ in controls) / sum(n for _, n in controls)
    assert stats.binomtest(30, 200, pooled, alternative="greater").pvalue < 1e-5
    assert baselines["P"]["correlation"] > 0.01
    assert list(wells.loc[wells["unfamiliar"], "well"]) == ["B02"]
    assert wells.set_index("well").loc["B01", "unfamiliar_p"] > 0.05


def test_too_few_control_wells_test_nothing_and_say_why():
    wells, baselines = unfamiliar.flag_wells(counted_wells([(1, 100), (0, 100), (2, 100)], [(90, 100)]))
    assert not wells["unfamiliar"].any() and wells["unfamiliar_p"].isna().all()
    assert (
        "3 control well(s) with cells cannot estimate"
        in unfamiliar.sentences(wells, baselines, fdr=0.05, min_excess=0.1)[0]
    )


def test_a_well_where_most_cells_abstained_gets_no_score_and_says_why():
    abstaining = tiles().assign(abstain="")
    abstaining.loc[[4, 5, 6], "abstain"] = "abstain (unlike training data)"  # 3 of A02's 4 cells
    abstaining.loc[0, "abstain"] = "abstain (uncertain)"  # 1 of A01's 4
    wells = assay.well_table(
        abstaining, layout(), ["aggregates", "control"], "aggregates", resamples=99, max_share=0.5
    ).set_index("well")
    assert (wells.loc["A02", "cells_found"], wells.loc["A02", "abstained"], wells.loc["A02", "cells"]) == (4, 3, 1)
    assert wells.loc["A02", "abstained_share"] == 0.75 and wells.loc["A02", "unlike_training"] == 3
    assert np.isnan(wells.loc["A02", "score"]) and wells.loc["A02", "no_call"] == (
        "no call: 75% of cells abstained (above max_share 50%)"
    )
    assert wells.loc["A01", "score"] == pytest.approx(np.mean([0.8, 0.7, 0.2])) and wells.loc["A01", "uncertain"] == 1
    assert wells.loc["A01", "no_call"] == "" and wells.loc["A01", "abstained_share"] == 0.25
    statistics = assay.plate_statistics(wells.reset_index()).iloc[0]
    assert (
        statistics["no_call_wells"] == 1
        and "A02 (negative control, 75% abstained)" in statistics["no_call_wells_named"]
    )
    assert statistics["negative_wells"] == 0 and statistics["controls_abstained_share"] == 0.25
    lines = assay.sentences(assay.plate_statistics(wells.reset_index()), "aggregates", "cell")
    assert any("1 well(s) got no call" in line for line in lines)


def scored_plate(z_gap=False):
    """A plate scored by two folds' runs (4 control wells each) and its sample wells by all runs."""
    rows = []
    for fold, spread in ((0, 0.02), (1, 0.15 if z_gap else 0.02)):
        for i, (role, centre) in enumerate([("negative_control", 0.1), ("positive_control", 0.9)] * 2):
            rows.append(
                {
                    "plate": "P",
                    "well": f"{'AB'[fold]}{i + 1:02d}",
                    "role": role,
                    "score": centre + spread * (-1) ** i * (1 + i // 2),
                    "scored_by": f"out of fold (fold {fold}, 1 run)",
                }
            )
    rows += [
        {"plate": "P", "well": f"C{i:02d}", "role": "sample", "score": 0.5, "scored_by": "all runs"} for i in (1, 2)
    ]
    table = pd.DataFrame(rows)
    return table.assign(constant_score=False, abstained=1, cells_found=20)


def test_z_prime_is_given_per_ensemble_and_the_findings_warn_when_they_differ():
    assert scorers.scorer_of("out of fold (fold 0, 1 run)") == "fold 0, 1 run"
    assert scorers.scorer_of("held out with its plate's controls (fold 0, 1 run)") == "fold 0, 1 run"
    assert scorers.scorer_of("all runs") == "all runs" and scorers.scorer_of(None) == "all runs"
    assert scorers.scorer_of("out of fold (test side of the split, 2 runs); all runs") == (
        "test side of the split, 2 runs; all runs"
    )
    table = scorers.scorer_statistics(scored_plate(z_gap=True)).set_index("scorer")
    assert list(table.index) == ["all wells (pooled)", "all runs", "fold 0, 1 run", "fold 1, 1 run"]
    assert list(table["positive_wells"]) == [4, 0, 2, 2] and list(table["sample_wells"]) == [2, 2, 0, 0]
    assert table.loc["fold 0, 1 run", "z_prime"] == pytest.approx(
        assay.z_prime([0.9 - 0.02, 0.9 - 0.04], [0.1 + 0.02, 0.1 + 0.04])
    )
    assert table.loc["fold 0, 1 run", "z_prime"] - table.loc["fold 1, 1 run", "z_prime"] > 0.2
    assert table.loc["fold 0, 1 run", "controls_abstained_share"] == 0.05
    lines = scorers.sentences(scorers.scorer_statistics(scored_plate(z_gap=True)))
    assert lines[0].startswith("plate P: its wells were scored by 3 ensembles")
    gap = table.loc["fold 0, 1 run", "z_prime"] - table.loc["fold 1, 1 run", "z_prime"]
    assert any(line.startswith(f"WARNING: plate P: Z' differs by {gap:.2f}") for line in lines)
    assert any("2 sample well(s) were scored by all runs" in line and "out_of_fold_all" in line for line in lines)
    alike = scorers.sentences(scorers.scorer_statistics(scored_plate().assign(scored_by="all runs")))
    assert alike == []  # one ensemble: nothing to compare


def test_out_of_fold_all_deals_a_plates_other_wells_to_the_folds():
    layout = [{"sample": f"P/{w}/s1", "plate": "P", "well": w} for w in ("A01", "A02", "B01", "B02", "B03", "B04")]
    layout.append({"sample": "Q/A01/s1", "plate": "Q", "well": "A01"})  # a plate that shares no well
    scoring = {
        "P/A01/s1": {"members": [0, 1], "scored_by": "out of fold (fold 0, 2 runs)"},
        "P/A02/s1": {"members": [2, 3], "scored_by": "out of fold (fold 1, 2 runs)"},
    }
    planned = held_out.score_every_well(scoring, layout, [0, 0, 1, 1], folds=2, seed=0)
    assert set(planned) == {f"P/{w}/s1" for w in ("A01", "A02", "B01", "B02", "B03", "B04")}
    assert planned["P/A01/s1"] == scoring["P/A01/s1"]
    others = [planned[f"P/{w}/s1"] for w in ("B01", "B02", "B03", "B04")]
    assert sorted(o["members"] for o in others) == [[0, 1], [0, 1], [2, 3], [2, 3]]  # dealt evenly
    assert {o["scored_by"] for o in others} == {
        f"held out with its plate's controls (fold {f}, 2 runs)" for f in (0, 1)
    }
    assert held_out.score_every_well(scoring, layout, [0, 0, 1, 1], folds=2, seed=0) == planned  # deterministic
    single = held_out.score_every_well({}, layout, [0], folds=1, seed=0)
    assert single == {}  # nothing shared with the training dataset: every run scores every well


def test_plate_figures_show_the_abstained_share(tmp_path):
    wells = counted_wells([(2, 200)] * 8, [(120, 200), (3, 200), (2, 200), (1, 200), (4, 200)])
    wells = wells.assign(
        row=[0] * 8 + [1] * 5,
        column=list(range(8)) + list(range(5)),
        positive_class="aggregates",
        score=[0.1, 0.9] * 4 + [np.nan, 0.2, 0.4, 0.6, 0.8],
        dose=[np.nan] * 8 + [1, 0.1, 1, 10, 100],
        unit="uM",
        no_call=[""] * 8 + ["no call: 60% of cells abstained"] + [""] * 4,
        constant_score=False,
    )
    wells = wells.assign(score_low=wells["score"] - 0.05, score_high=wells["score"] + 0.05)
    wells, _ = unfamiliar.flag_wells(wells)
    statistics = assay.plate_statistics(wells)
    plate_figures.plate_heatmap(wells, "P", [tmp_path / "heatmap.png"])
    plate_figures.dose_response(wells, statistics, [tmp_path / "dose.png"])
    assert (tmp_path / "heatmap.png").stat().st_size > 1000 and (tmp_path / "dose.png").stat().st_size > 1000


def test_the_plan_scores_a_plates_samples_by_one_folds_runs_under_out_of_fold_all(tmp_path):
    from test_plates import PATTERN, write_map, write_plate

    from cellclass.plan import make_plan

    wells = ("A01", "A02", "B01", "B02", "C01", "C02", "C03", "C04")
    folder = write_plate(tmp_path / "P1", wells=wells, sites=1)
    rows = [("P1", w, "DMSO", "control", "", "", "negative_control") for w in ("A01", "A02")]
    rows += [("P1", w, "siRNA", "aggregates", "", "", "positive_control") for w in ("B01", "B02")]
    rows += [("P1", w, "drug", "", str(dose), "uM", "sample") for w, dose in zip(wells[4:], (1, 3, 10, 30))]
    plate = {"path": str(folder), "pattern": PATTERN, "map": str(write_map(tmp_path / "map.tsv", rows))}
    config = {
        "train": {"models": ["small"], "runs": 2},
        "split": {"folds": 2},
        "datasets": {"screen": {"plate": plate}},
        "predict": {"again": {"plate": plate, "experiment": "screen"}},
    }
    default = make_plan(config, base_dir=tmp_path).predictions["again"]
    assert len(default.scoring) == 4  # the control wells alone: the sample wells go to all 4 runs
    every = make_plan({**config, "assay": {"scoring": "out_of_fold_all"}}, base_dir=tmp_path).predictions["again"]
    assert set(every.scoring) == set(every.samples) and len(every.samples) == 8
    for sid in ("P1/C01/s1", "P1/C02/s1", "P1/C03/s1", "P1/C04/s1"):
        fold = int(every.scoring[sid]["scored_by"].split("(fold ")[1][0])
        assert every.scoring[sid]["members"] == [2 * fold, 2 * fold + 1]  # its fold's two seeds
    assert sorted(every.scoring[f"P1/{w}/s1"]["members"][0] for w in wells[4:]) == [0, 0, 2, 2]
