"""Accuracy statistics on small hand-made tables whose answers are worked out in the tests."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cellclass import evaluate

CLASSES = ["aggregates", "control"]


def tiles(items, experiment="agg", dataset="snap29", model="deep", seed=0, test_set=None):
    """Prediction rows from (sample, true class, p_aggregates); predicted is the argmax."""
    rows = []
    for k, (sample, true, p) in enumerate(items):
        rows.append(
            {
                "experiment": experiment,
                "dataset": dataset,
                "model": model,
                "seed": seed,
                "test_set": test_set or dataset,
                "tile": f"{sample}@{k},0",
                "sample": sample,
                "group": sample,
                "true": true,
                "predicted": "aggregates" if p >= 0.5 else "control",
                "p_aggregates": p,
                "p_control": 1 - p,
            }
        )
    return pd.DataFrame(rows)


def history(train, experiment="agg", dataset="snap29", model="deep", seed=0):
    return pd.DataFrame(
        {
            "experiment": experiment,
            "dataset": dataset,
            "model": model,
            "seed": seed,
            "epoch": np.arange(1, len(train) + 1),
            "train_loss": 0.1,
            "train_accuracy": train,
            "heldout_loss": 0.5,
            "heldout_accuracy": 0.6,
        }
    )


def accuracy_tiles(n_right, n_total, **run):
    """n_total 'aggregates' tiles of which the first n_right are predicted right, 5 tiles per image."""
    return tiles([(f"aggregates/f{k // 5}", "aggregates", 0.8 if k < n_right else 0.3) for k in range(n_total)], **run)


def runs_with(accuracies, **run):
    """A run_table-shaped frame with the given test accuracies, one seed each."""
    return pd.DataFrame(
        {
            "experiment": run.get("experiment", "agg"),
            "dataset": run.get("dataset", "snap29"),
            "model": run.get("model", "deep"),
            "seed": range(len(accuracies)),
            "test_set": run.get("test_set", run.get("dataset", "snap29")),
            "test_accuracy": accuracies,
            "image_accuracy": accuracies,
            "final_train_accuracy": run.get("train", 1.0),
            "first_epoch_train_100": run.get("first", 3.0),
            "overfit": run.get("overfit", False),
        }
    )


def test_confusion_counts_true_rows_predicted_columns():
    table = tiles(
        [("a", "aggregates", 0.9)] * 3
        + [("a", "aggregates", 0.2)]
        + [("c", "control", 0.1)] * 2
        + [("c", "control", 0.7)] * 2
    )
    matrix = evaluate.confusion(table, [*CLASSES, "other"])
    assert matrix.index.name == "true" and matrix.columns.name == "predicted"
    assert matrix.loc[CLASSES, CLASSES].to_numpy().tolist() == [[3, 1], [2, 2]]
    assert matrix.loc["other"].sum() == 0 and matrix["other"].sum() == 0


def test_calibration_ece_by_hand():
    # Confidences 0.9, 0.9, 0.6, 0.6; right, right, wrong, right.
    table = tiles([("a", "aggregates", 0.9), ("a", "aggregates", 0.9), ("c", "control", 0.6), ("a", "aggregates", 0.6)])
    reliability, ece = evaluate.calibration(table, CLASSES, bins=10)
    by_hand = 2 / 4 * abs(1.0 - 0.9) + 2 / 4 * abs(0.5 - 0.6)
    assert ece == pytest.approx(by_hand)
    assert len(reliability) == 10 and reliability["count"].sum() == 4
    filled = reliability[reliability["count"] > 0]
    assert filled["count"].tolist() == [2, 2]
    assert filled["accuracy"].tolist() == [0.5, 1.0]
    assert filled["confidence"].tolist() == pytest.approx([0.6, 0.9])


def test_run_table_flags_the_memorising_run_only():
    overfit = {"experiment": "sub", "dataset": "snf7", "seed": 0}
    honest = {"experiment": "agg", "dataset": "snap29", "seed": 1}
    histories = pd.concat([history([0.8, 1.0, 1.0], **overfit), history([0.7, 0.9, 0.95], **honest)])
    predictions = pd.concat([accuracy_tiles(11, 20, **overfit), accuracy_tiles(93, 100, **honest)])
    table = evaluate.run_table(histories, predictions).set_index("experiment")
    expected = {"test_accuracy", "test_loss", "n_tiles", "image_accuracy", "final_train_accuracy"}
    assert expected | {"first_epoch_train_100", "gap", "overfit", "test_set", "seed"} <= set(table.columns)
    assert table.loc["sub", "test_accuracy"] == pytest.approx(0.55)
    assert table.loc["sub", "first_epoch_train_100"] == 2
    assert table.loc["sub", "gap"] == pytest.approx(1.0 - 0.55)
    assert bool(table.loc["sub", "overfit"]) is True
    assert math.isnan(table.loc["agg", "first_epoch_train_100"])
    assert table.loc["agg", "gap"] == pytest.approx(0.95 - 0.93)
    assert bool(table.loc["agg", "overfit"]) is False
    assert table["n_tiles"].tolist() == [20, 100]


def test_run_table_loss_is_clipped_cross_entropy_of_the_true_class():
    predictions = tiles([("a", "aggregates", 0.8), ("a", "aggregates", 0.0)])
    table = evaluate.run_table(history([1.0]), predictions)
    assert table["test_loss"].iloc[0] == pytest.approx((-math.log(0.8) - math.log(1e-7)) / 2)


def test_image_rollup_averages_probabilities_per_source_image():
    predictions = tiles(
        [
            ("aggregates/s1", "aggregates", 0.9),
            ("aggregates/s1", "aggregates", 0.2),
            ("aggregates/s1", "aggregates", 0.6),
            ("control/s2", "control", 0.7),
            ("control/s2", "control", 0.1),
            ("control/s3", "control", 0.8),
            ("control/s3", "control", 0.6),
        ]
    )
    images = evaluate.image_table(predictions).set_index("sample")
    assert images.loc["aggregates/s1", "p_aggregates"] == pytest.approx(1.7 / 3)
    assert images["predicted"].tolist() == ["aggregates", "control", "aggregates"]
    assert images["correct"].tolist() == [True, True, False]
    assert images["n_tiles"].tolist() == [3, 2, 2]
    run = evaluate.run_table(history([1.0]), predictions).iloc[0]
    assert run["test_accuracy"] == pytest.approx(3 / 7)
    assert run["image_accuracy"] == pytest.approx(2 / 3)


def test_summary_t_interval_matches_hand_computation():
    accuracies = [0.90, 0.92, 0.95, 0.97, 0.93]
    runs = pd.concat([runs_with(accuracies, overfit=True), runs_with([0.6], test_set="other")])
    runs.loc[runs.index[:2], "overfit"] = False
    summary = evaluate.summary_table(runs, human={"agg": 0.93}).set_index("test_set")
    half = stats.t.ppf(0.975, 4) * np.std(accuracies, ddof=1) / math.sqrt(5)
    own = summary.loc["snap29"]
    assert own["n_runs"] == 5
    assert own["mean"] == pytest.approx(np.mean(accuracies))
    assert own["std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert (own["ci95_low"], own["ci95_high"]) == pytest.approx(
        (np.mean(accuracies) - half, np.mean(accuracies) + half)
    )
    assert own["overfit_share"] == pytest.approx(3 / 5)
    assert own["human"] == 0.93
    single = summary.loc["other"]
    assert single["n_runs"] == 1 and math.isnan(single["ci95_low"]) and math.isnan(single["ci95_high"])
    # The human baseline was measured on the dataset, not on an independent test set.
    assert math.isnan(single["human"])


def test_summary_interval_stays_within_accuracy_bounds():
    summary = evaluate.summary_table(runs_with([0.99, 1.0]))
    assert summary["ci95_high"].iloc[0] == 1.0 and 0 <= summary["ci95_low"].iloc[0] < 0.99


def test_compare_separated_groups():
    runs = pd.concat(
        [
            runs_with([0.94, 0.95, 0.96, 0.93, 0.97]),
            runs_with([0.60, 0.62, 0.58, 0.61, 0.64], experiment="sub", dataset="snf7"),
        ]
    )
    result = evaluate.compare(runs, ("agg", "deep"), ("sub", "deep"))
    assert result["n_a"] == result["n_b"] == 5
    assert result["U"] == 25 and result["p"] < 0.05
    assert result["text"].startswith("agg/deep (mean 0.95, n=5) vs sub/deep (mean 0.61, n=5)")
    assert "Mann–Whitney U = 25, p = 0.008" in result["text"]

    three = pd.concat([runs, runs_with([0.9, 0.91, 0.92], model="small")])
    table = evaluate.comparisons(three)
    assert len(table) == 3
    assert set(zip(table["a"], table["b"])) == {
        ("agg/deep", "sub/deep"),
        ("agg/deep", "agg/small"),
        ("sub/deep", "agg/small"),
    }


def test_compare_on_a_named_test_set_says_so():
    runs = pd.concat([runs_with([0.9, 0.8], test_set="x"), runs_with([0.5, 0.6], model="small", test_set="x")])
    result = evaluate.compare(runs, ("agg", "deep"), ("agg", "small"), test_set="x")
    assert " on x: " in result["text"] and result["n_a"] == 2


def test_overfitting_sentence():
    runs = pd.concat(
        [
            runs_with([0.55, 0.6, 0.59], experiment="sub", dataset="snf7", overfit=True).assign(
                first_epoch_train_100=[2.0, 3.0, 3.0]
            ),
            runs_with([0.95, 0.96], train=0.95, first=np.nan),
        ]
    )
    lines = evaluate.overfitting_sentence(runs).splitlines()
    assert lines[0] == (
        "sub/deep: 3 of 3 runs reached 100% training accuracy (first at epoch 2–3) "
        "while test accuracy stayed at 0.58 — overfitting."
    )
    assert lines[1].startswith("agg/deep: 0 of 2 runs reached 100% training accuracy")
    assert lines[1].endswith("no run overfits.")


def write_run(folder, seed, accuracy_right):
    folder.mkdir(parents=True)
    history([1.0] if seed else [0.6, 1.0]).drop(columns=["experiment", "dataset", "model", "seed"]).to_csv(
        folder / "history.csv", index=False
    )
    predictions = accuracy_tiles(accuracy_right, 10).drop(columns=["experiment", "dataset", "model", "seed"])
    predictions.to_csv(folder / "predictions.tsv", sep="\t", index=False)
    metrics = {
        "model": "deep",
        "seed": seed,
        "classes": CLASSES,
        "input_shape": [64, 64, 2],
        "parameters": 1000,
        "device": "cpu",
        "train_tiles": 100,
        "epochs": 2,
        "final_train_accuracy": 1.0,
        "train_seconds": 3.5,
        "test_accuracy": {"snap29": accuracy_right / 10},
        "test_tiles": {"snap29": 10},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_collect_runs_reads_run_folders(tmp_path):
    dirs = [tmp_path / "results" / "train" / "agg" / "deep" / f"seed{seed}" for seed in (0, 1)]
    write_run(dirs[0], 0, 9)
    write_run(dirs[1], 1, 6)
    runs, histories, predictions = evaluate.collect_runs(dirs, {"agg": "snap29"})
    assert runs[["experiment", "dataset", "model", "seed"]].values.tolist() == [
        ["agg", "snap29", "deep", 0],
        ["agg", "snap29", "deep", 1],
    ]
    assert runs["n_classes"].tolist() == [2, 2] and "test_accuracy" not in runs
    assert list(histories.columns[:4]) == ["experiment", "dataset", "model", "seed"]
    assert len(histories) == 2 + 1 and len(predictions) == 20
    assert predictions["seed"].tolist() == [0] * 10 + [1] * 10
    table = evaluate.run_table(histories, predictions)
    assert table["test_accuracy"].tolist() == pytest.approx([0.9, 0.6])
    assert table["first_epoch_train_100"].tolist() == [2, 1]


def test_collect_runs_rejects_unknown_experiment(tmp_path):
    folder = tmp_path / "train" / "nope" / "deep" / "seed0"
    write_run(folder, 0, 5)
    with pytest.raises(ValueError, match="nope"):
        evaluate.collect_runs([folder], {"agg": "snap29"})
