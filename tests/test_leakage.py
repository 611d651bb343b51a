"""The leakage check's table, sentence and figure from a control's predictions and the evaluation's summary."""

import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from cellclass.evaluate import findings, leakage
from cellclass.io.errors import InputError


def control():
    true = ["a"] * 10 + ["b"] * 10
    predicted = ["a"] * 9 + ["b"] * 11
    return pd.DataFrame({"experiment": "e", "dataset": "d", "model": "small", "fold": 0, "seed": 0, "test_set": "d",
                         "true": true, "predicted": predicted})


def summary(unit="cell", headline_unit="group"):
    rows = [("tile", unit, False, 0.8, 2), ("image", "image", False, 0.75, 2), ("group", headline_unit, True, 0.7, 2)]
    return pd.DataFrame([{"experiment": "e", "dataset": "d", "model": "small", "test_set": "d", "level": level,
                          "unit": u, "headline": headline, "metric": "balanced_accuracy", "estimate": estimate,
                          "n_runs": n} for level, u, headline, estimate, n in rows])


def test_the_table_holds_the_control_per_cell_against_the_grouped_split_and_says_so():
    table = leakage.leakage_table(control(), summary())
    row = table.iloc[0]
    assert row["random_split"] == pytest.approx(balanced_accuracy_score(control()["true"], control()["predicted"]))
    assert (row["unit"], row["headline_unit"], row["grouped_split"], row["grouped_split_headline"]) == ("cell", "group", 0.8, 0.7)
    assert row["gap"] == pytest.approx(row["random_split"] - 0.8) and row["random_test_tiles"] == 20
    [line] = findings.leakage(table)
    assert "e/small: a random cell split would have claimed 0.95 (balanced accuracy per cell)" in line
    assert "split by group it is 0.70 per group (per cell 0.80), a gap of +0.15 per cell" in line
    assert "no interval" in line and "p =" not in line


def test_a_summary_without_the_model_is_named():
    with pytest.raises(InputError, match="e/small on its own test side"):
        leakage.leakage_table(control(), summary().assign(model="other"))


def test_the_figure_draws_each_experiment(tmp_path):
    runs = pd.DataFrame([{"experiment": "e", "dataset": "d", "model": "small", "test_set": "d", "level": level,
                          "headline": level == "group", "balanced_accuracy": value, "chance": 0.5}
                         for level in ("tile", "group") for value in (0.7, 0.8)])
    leakage.leakage_figure(runs, leakage.leakage_table(control(), summary()), [tmp_path / "l.png", tmp_path / "l.svg"])
    assert (tmp_path / "l.png").stat().st_size > 1000 and (tmp_path / "l.svg").stat().st_size > 1000
