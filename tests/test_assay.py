"""Plate statistics against hand-computed examples: per-well scores, Z', SSMD and the 4-parameter logistic fit."""

import math

import numpy as np
import pandas as pd
import pytest

from cellclass.assay import dose_response
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
    rows = [("P/A01/s1", "A01", "positive_control", np.nan), ("P/A01/s2", "A01", "positive_control", np.nan),
            ("P/A02/s1", "A02", "negative_control", np.nan), ("P/B01/s1", "B01", "sample", 3.0),
            ("P/B02/s1", "B02", "sample", 10.0)]
    return [{"sample": s, "plate": "P", "well": w, "row": ord(w[0]) - 65, "column": int(w[1:]) - 1, "site": s[-1],
             "role": role, "dose": dose, "unit": "uM", "condition": "", "class": "aggregates" if "pos" in role else ""}
            for s, w, role, dose in rows]


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
