"""The leakage check's table, sentence and figure from a control's predictions and the evaluation's summary."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from PIL import Image
from sklearn.metrics import balanced_accuracy_score

from cellclass.evaluate import findings, leakage
from cellclass.io.errors import InputError
from cellclass.io.plotting import JITTER


def control():
    true = ["a"] * 10 + ["b"] * 10
    predicted = ["a"] * 9 + ["b"] * 11
    return pd.DataFrame(
        {
            "experiment": "e",
            "dataset": "d",
            "model": "small",
            "fold": 0,
            "seed": 0,
            "test_set": "d",
            "true": true,
            "predicted": predicted,
        }
    )


def summary(unit="cell", headline_unit="group"):
    rows = [("tile", unit, False, 0.8, 2), ("image", "image", False, 0.75, 2), ("group", headline_unit, True, 0.7, 2)]
    return pd.DataFrame(
        [
            {
                "experiment": "e",
                "dataset": "d",
                "model": "small",
                "test_set": "d",
                "level": level,
                "unit": u,
                "headline": headline,
                "metric": "balanced_accuracy",
                "estimate": estimate,
                "n_runs": n,
            }
            for level, u, headline, estimate, n in rows
        ]
    )


def test_the_table_holds_the_control_per_cell_against_the_grouped_split_and_says_so():
    table = leakage.leakage_table(control(), summary())
    row = table.iloc[0]
    assert row["random_split"] == pytest.approx(balanced_accuracy_score(control()["true"], control()["predicted"]))
    assert (row["unit"], row["headline_unit"], row["grouped_split"], row["grouped_split_headline"]) == (
        "cell",
        "group",
        0.8,
        0.7,
    )
    assert row["gap"] == pytest.approx(row["random_split"] - 0.8) and row["random_test_tiles"] == 20
    [line] = findings.leakage(table)
    assert "e/small: a random cell split would have claimed 0.95 (balanced accuracy per cell)" in line
    assert "split by group it is 0.70 per group (per cell 0.80), a gap of +0.15 per cell" in line
    assert "no interval" in line and "p =" not in line


def test_a_summary_without_the_model_is_named():
    with pytest.raises(InputError, match="e/small on its own test side"):
        leakage.leakage_table(control(), summary().assign(model="other"))


def test_the_figure_draws_each_experiment(tmp_path):
    """Per experiment, at its own place on the x axis: a point per grouped-split run at the headline unit and per
    tile at that run's accuracy, a box with the runs' median, the control's star at its random-split accuracy, and
    its gap written above."""
    accuracy = {
        ("e", "group"): [0.6, 0.7],
        ("e", "tile"): [0.8, 0.85],
        ("f", "group"): [0.55, 0.65, 0.75],
        ("f", "tile"): [0.9, 0.92, 0.94],
    }
    runs = pd.DataFrame(
        [
            {
                "experiment": e,
                "dataset": "d",
                "model": "small",
                "test_set": "d",
                "level": level,
                "headline": level == "group",
                "balanced_accuracy": value,
                "chance": 0.5,
            }
            for (e, level), values in accuracy.items()
            for value in values
        ]
    )
    controls = pd.concat([control(), control().assign(experiment="f", predicted=control()["true"])])
    table = leakage.leakage_table(controls, pd.concat([summary(), summary().assign(experiment="f")]))
    assert list(table["experiment"]) == ["e", "f"] and table["gap"].nunique() == 2
    fig = leakage.leakage_figure(runs, table, [tmp_path / "l.png", tmp_path / "l.svg"])
    [ax] = fig.axes
    points = np.concatenate([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])
    assert len(points) == sum(map(len, accuracy.values())) + len(table)  # the runs and one star per experiment
    medians = np.array(
        [
            (line.get_xdata().mean(), line.get_ydata()[0])
            for line in ax.lines
            if len(line.get_xdata()) == 2 and np.isclose(np.ptp(line.get_xdata()), 0.5)
        ]
    ).reshape(-1, 2)
    texts = [text.get_text() for text in ax.texts]
    for i, row in enumerate(table.itertuples()):
        for k, level in enumerate(("group", "tile")):
            here = np.abs(points[:, 0] - (4 * i + k)) <= JITTER
            assert sorted(points[here, 1]) == pytest.approx(accuracy[(row.experiment, level)])
            assert np.isclose(medians, [4 * i + k, np.median(accuracy[(row.experiment, level)])]).all(axis=1).any()
        [star] = points[np.isclose(points[:, 0], 4 * i + 2), 1]
        assert star == pytest.approx(row.random_split)
        assert f"{row.experiment}/small: gap {row.gap:+.2f} per cell" in texts
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "split by group\nper group",
        "split by group\nper cell",
        "random cell split\nper cell",
    ] * 2
    assert Image.open(tmp_path / "l.png").size == tuple(round(s * 150) for s in fig.get_size_inches())
    assert (tmp_path / "l.svg").read_text().count('<g id="PathCollection_') == len(table) * 3
