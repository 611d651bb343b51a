"""Evaluation on small hand-made runs whose answers are worked out in the tests (or by scikit-learn directly).

Cases: an imbalanced 3-class confusion, a collapsed run, a tiny test side, seeds that disagree, overfitting
measured like for like, image and group roll-ups, bootstrap intervals, paired comparisons and reading run folders.
"""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, log_loss, roc_auc_score

from cellclass.evaluate import ensemble, findings, metrics, runs, stats
from cellclass.evaluate import tables as evaluate
from cellclass.io.errors import InputError
from cellclass.learn import calibration

THRESHOLDS = {"overfit_gap": 0.2, "overfit_train": 0.9, "collapse_share": 0.95}


def tiles(items, classes, experiment="e", dataset="d", model="deep", seed=0, test_set=None, fold=0):
    """Prediction rows from (tile sample, group, true class, called class, confidence of the call)."""
    rows = []
    for k, (sample, group, true, called, confidence) in enumerate(items):
        rest = (1 - confidence) / (len(classes) - 1)
        rows.append(
            {
                "experiment": experiment,
                "dataset": dataset,
                "model": model,
                "fold": fold,
                "seed": seed,
                "test_set": test_set or dataset,
                "tile": f"{sample}@{k},0",
                "sample": sample,
                "group": group,
                "true": true,
                "predicted": called,
                **{f"p_{c}": confidence if c == called else rest for c in classes},
            }
        )
    return pd.DataFrame(rows)


def history(train_eval, experiment="e", dataset="d", model="deep", seed=0, fold=0):
    return pd.DataFrame(
        {
            "experiment": experiment,
            "dataset": dataset,
            "model": model,
            "fold": fold,
            "seed": seed,
            "epoch": np.arange(1, len(train_eval) + 1),
            "train_loss": 0.1,
            "train_accuracy": 0.5,
            "train_eval_loss": 0.1,
            "train_eval_accuracy": train_eval,
            "validation_loss": 0.5,
            "validation_accuracy": 0.6,
        }
    )


def run_rows(predictions, validation_tiles=100, ratio=1.0, balance="none"):
    keys = predictions[runs.RUN].drop_duplicates()
    return keys.assign(
        validation_tiles=validation_tiles,
        class_balance=balance,
        imbalance_ratio=ratio,
        train_tiles_per_class=[{"a": 10, "b": 10}] * len(keys),
    )


THREE = ["a", "b", "c"]


def imbalanced():
    """A 3-class test side of 12:2:2 tiles in 8 groups of 2 tiles: a -> a (10), a -> b (2), b -> b, c -> a (2)."""
    items = []
    for i in range(12):
        items.append((f"a{i // 2}", f"a{i // 2}", "a", "a" if i < 10 else "b", 0.8))
    items += [("b0", "b0", "b", "b", 0.7), ("b0", "b0", "b", "b", 0.7)]
    items += [("c0", "c0", "c", "a", 0.6), ("c0", "c0", "c", "a", 0.6)]
    return tiles(items, THREE)


def test_imbalanced_three_class_metrics_by_hand_and_by_sklearn():
    predictions = imbalanced()
    [row] = [r for r in metrics.score_table(predictions).to_dict("records") if r["level"] == "tile"]
    assert row["accuracy"] == pytest.approx(12 / 16)
    # Recalls a 10/12, b 2/2, c 0/2: the headline hides nothing of the small classes.
    assert row["balanced_accuracy"] == pytest.approx((10 / 12 + 1 + 0) / 3)
    assert row["chance"] == pytest.approx(1 / 3) and row["majority_rate"] == pytest.approx(12 / 16)
    y, called = predictions["true"], predictions["predicted"]
    probabilities = predictions[["p_a", "p_b", "p_c"]].to_numpy()
    assert row["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, called))
    assert row["macro_f1"] == pytest.approx(f1_score(y, called, average="macro"))
    assert row["log_loss"] == pytest.approx(log_loss(y, probabilities, labels=THREE))
    assert row["roc_auc"] == pytest.approx(roc_auc_score(y, probabilities, multi_class="ovr", labels=THREE))
    per_class = metrics.class_table(predictions)
    tile = per_class[per_class["level"] == "tile"].set_index("class")
    # precision of a: 10 of the 12 tiles called a; recall of c: none of 2.
    assert tile.loc["a", "precision"] == pytest.approx(10 / 12) and tile.loc["c", "recall"] == 0
    assert tile.loc["b", "precision"] == pytest.approx(2 / 4) and tile["support"].tolist() == [12, 2, 2]


def test_images_and_groups_roll_up_by_mean_probability():
    items = [
        ("s1", "well1", "a", "a", 0.9),
        ("s1", "well1", "a", "b", 0.6),
        ("s2", "well1", "a", "b", 0.9),
        ("s3", "well2", "b", "b", 0.8),
    ]
    predictions = tiles(items, ["a", "b"])
    images = metrics.rollup(predictions, "image").set_index("sample")
    assert images.loc["s1", "p_a"] == pytest.approx((0.9 + 0.4) / 2) and images.loc["s1", "predicted"] == "a"
    assert images.loc["s2", "predicted"] == "b" and images.loc["s1", "n_tiles"] == 2
    groups = metrics.rollup(predictions, "group").set_index("group")
    assert (
        groups.loc["well1", "p_a"] == pytest.approx((0.9 + 0.4 + 0.1) / 3) and groups.loc["well1", "predicted"] == "b"
    )
    assert metrics.headline_level(predictions) == "group"
    assert metrics.headline_level(predictions.assign(group=predictions["sample"])) == "image"


def test_ece_by_hand():
    # Confidences 0.9, 0.9, 0.6, 0.6; right, right, wrong, right.
    ece = metrics.ece(np.array([0.9, 0.9, 0.6, 0.6]), np.array([True, True, False, True]))
    assert ece == pytest.approx(2 / 4 * abs(1.0 - 0.9) + 2 / 4 * abs(0.5 - 0.6))


def test_confusion_counts_true_rows_predicted_columns():
    items = [("s", "s", "a", "a", 0.9)] * 3 + [("s", "s", "a", "b", 0.8)] + [("t", "t", "b", "a", 0.7)] * 2
    matrix = metrics.confusion(tiles(items, ["a", "b"]), ["a", "b", "other"])
    assert matrix.loc[["a", "b"], ["a", "b"]].to_numpy().tolist() == [[3, 1], [2, 0]]
    assert matrix.loc["other"].sum() == 0


def two_class_run(
    seed, right_per_group, experiment="e", model="deep", n_groups=4, per_group=10, called="b", fold=0, first_group=0
):
    """n_groups groups per class of per_group tiles; right_per_group[i] tiles of group i are called right."""
    items = []
    for cls, wrong in (("a", "b"), ("b", "a")):
        for g in range(first_group, first_group + n_groups):
            for k in range(per_group):
                right = k < right_per_group[(g - first_group) % len(right_per_group)]
                items.append((f"{cls}{g}", f"{cls}{g}", cls, cls if right else wrong, 0.8))
    return tiles(items, ["a", "b"], experiment=experiment, model=model, seed=seed, fold=fold)


def test_collapsed_run_is_flagged_and_warned():
    items = [(f"a{g}", f"a{g}", "a", "a", 0.9) for g in range(4) for _ in range(5)]
    items += [(f"b{g}", f"b{g}", "b", "a", 0.9) for g in range(4) for _ in range(5)]
    predictions = tiles(items, ["a", "b"])
    table = evaluate.run_table(predictions, history([0.6]), run_rows(predictions), thresholds=THRESHOLDS, resamples=199)
    tile = table[table["level"] == "tile"].iloc[0]
    assert tile["top_call_share"] == 1.0 and tile["collapsed"] and tile["at_chance"]
    assert tile["accuracy"] == 0.5 and tile["balanced_accuracy"] == 0.5
    [line] = findings.collapsed_runs(table)
    assert "collapsed: 100% of its tile calls are 'a'" in line and "no claim" in line
    # A test side too small to resample has no interval: the warning says so rather than printing nan.
    table["balanced_accuracy_low"] = np.nan
    [line] = findings.collapsed_runs(table)
    assert "nan" not in line and "no interval: too few test groups" in line


def test_overfitting_is_measured_like_for_like():
    """Inference-mode training accuracy 0.92 and a gap of 0.29 is overfitting; Keras' running accuracy is not used."""
    predictions = two_class_run(0, [6, 7])  # 0.65 balanced accuracy per tile
    table = evaluate.run_table(
        predictions, history([0.8, 0.92]), run_rows(predictions), thresholds=THRESHOLDS, resamples=199
    )
    tile = table[table["level"] == "tile"].iloc[0]
    assert tile["balanced_accuracy"] == pytest.approx(0.65)
    assert tile["final_train_accuracy"] == 0.92 and tile["gap"] == pytest.approx(0.27)
    assert tile["overfit"] and not tile["collapsed"] and not tile["at_chance"]
    honest = evaluate.run_table(
        predictions, history([0.7]), run_rows(predictions), thresholds=THRESHOLDS, resamples=199
    )
    assert not honest["overfit"].any()


def test_overfitting_reads_the_kept_epoch():
    """The model tested is the kept epoch's, so its training accuracy is the one set against the test score."""
    predictions = two_class_run(0, [6, 7])
    kept_second = history([0.8, 0.92, 0.99]).assign(kept=[False, True, False])
    tile = (
        evaluate.run_table(predictions, kept_second, run_rows(predictions), thresholds=THRESHOLDS, resamples=199)
        .query("level == 'tile'")
        .iloc[0]
    )
    assert tile["kept_epoch"] == 2 and tile["final_train_accuracy"] == 0.92


def test_findings_state_the_recipe_and_the_epochs_kept():
    from cellclass.learn import recipe

    used = {
        "name": "modern",
        **recipe.PRESETS["modern"],
        "monitor": "validation_loss",
        "epochs": 9,
        "overrides": {"epochs": 9},
    }
    table = pd.DataFrame(
        {
            "experiment": "e",
            "model": "deep",
            "recipe": [used] * 3,
            "epochs": [9, 7, 9],
            "kept_epoch": [9, 2, 9],
            "stopped_epoch": [None, 7, None],
            "epoch_selection": ["best", "best", "last: no validation side"],
        }
    )
    [line] = findings.training_recipe(table)
    assert line.startswith("e/deep: trained with the modern recipe: AdamW (weight decay 0.05)")
    assert (
        "2 of 3 run(s) kept the epoch of best validation loss on the validation side (never the test side): "
        "epoch 2–9 of 7–9 trained"
    ) in line
    assert "1 of 3 run(s) had no validation side and kept their last epoch (9)" in line
    assert "1 of 3 stopped early (after epoch 7 of at most 9)" in line
    assert findings.training_recipe(table.drop(columns="recipe")) == []  # runs from before recipes


def test_tiny_test_side_is_warned_and_has_no_interval():
    predictions = two_class_run(0, [9], n_groups=1)
    [line] = findings.small_test_sides(predictions)
    assert "1 of a, 1 of b" in line and "fewer than 3" in line
    C, N, groups = stats.correct_counts(predictions, ["a", "b"], "image", [(0, 0)])
    assert groups == ["a0", "b0"]
    point, low, high = stats.interval(C, N)
    assert point == 1.0 and np.isnan(low) and np.isnan(high)
    assert findings.small_test_sides(two_class_run(0, [9], n_groups=3)) == []


def test_bootstrap_interval_brackets_the_mean_and_resamples_groups_and_seeds():
    parts = [two_class_run(seed, right) for seed, right in enumerate([[10, 6, 8, 9], [9, 7, 10, 5]])]
    predictions = pd.concat(parts, ignore_index=True)
    C, N, _ = stats.correct_counts(predictions, ["a", "b"], "tile", [(0, 0), (0, 1)])
    point, low, high = stats.interval(C, N, resamples=999, seed=0)
    by_seed = [balanced_accuracy_score(p["true"], p["predicted"]) for p in parts]
    assert point == pytest.approx(np.mean(by_seed))
    assert low < point < high and 0.5 < low and high <= 1.0
    assert (low, high) == stats.interval(C, N, resamples=999, seed=0)[1:]  # seeded: reproducible
    one_seed = stats.interval(C[:1], N[:1], resamples=999)
    assert one_seed[0] == pytest.approx(by_seed[0]) and one_seed[1] < one_seed[0] < one_seed[2]


def test_seeds_that_disagree_are_warned():
    predictions = pd.concat([two_class_run(0, [10]), two_class_run(1, [5]), two_class_run(2, [6])], ignore_index=True)
    table = evaluate.run_table(
        predictions,
        pd.concat([history([1.0], seed=s) for s in range(3)]),
        run_rows(predictions),
        thresholds=THRESHOLDS,
        resamples=199,
    )
    summary = evaluate.summary_table(predictions, table, resamples=199)
    [line] = findings.seeds_disagree(summary)
    assert "ranges 0.50–1.00 across 3 seeds" in line and "(0.20)" in line


def test_summary_has_every_metric_at_every_level_with_intervals_and_human_on_tiles():
    predictions = pd.concat([two_class_run(s, [10, 8]) for s in range(2)], ignore_index=True)
    table = evaluate.run_table(
        predictions,
        pd.concat([history([1.0], seed=s) for s in range(2)]),
        run_rows(predictions),
        thresholds=THRESHOLDS,
        resamples=199,
    )
    summary = evaluate.summary_table(predictions, table, human={"e": 0.93}, resamples=199)
    assert set(summary["level"]) == set(metrics.LEVELS) and set(summary["metric"]) == set(metrics.METRICS)
    ba = summary[(summary["metric"] == "balanced_accuracy")].set_index("level")
    assert ba.loc["tile", "mean"] == pytest.approx(0.9) and ba.loc["tile", "n_runs"] == 2
    assert ba.loc["tile", "ci95_low"] <= 0.9 <= ba.loc["tile", "ci95_high"]
    assert bool(ba.loc["image", "headline"]) and not bool(ba.loc["tile", "headline"])
    human = summary.dropna(subset=["human"])
    assert human[["level", "metric"]].values.tolist() == [["tile", "accuracy"]] and human["human"].iloc[0] == 0.93
    [line] = findings.headline(summary)
    assert line.startswith("e/deep on its own test side (d): balanced accuracy per image 1.00 over 8 test groups")
    assert "per tile 0.90 (95% interval" in line and "Chance 0.50" in line and "by eye, per tile, 0.93" in line


def test_comparison_pairs_seeds_on_one_test_set_and_gives_no_p_value_it_cannot_earn():
    parts = []
    for seed in range(2):
        parts += [two_class_run(seed, [10, 9], model="resnet"), two_class_run(seed, [4, 6], model="deep")]
    predictions = pd.concat(parts, ignore_index=True)
    table = evaluate.comparisons(predictions, resamples=199)
    assert table["level"].tolist() == ["image", "tile"]  # the headline unit, and tiles beside it
    result = table.iloc[0]
    assert (result["a"], result["b"], result["n_pairs"], result["level"]) == ("resnet", "deep", 2, "image")
    assert result["difference"] == pytest.approx(0.5)  # images: resnet calls all right, deep half
    assert np.isnan(result["p"]) and np.isnan(result["p_holm"])
    assert "cannot reach p < 0.05" in result["text"] and "p =" not in result["text"]


def test_signed_rank_needs_six_pairs_and_holm_adjusts_only_real_tests():
    assert np.isnan(stats.signed_rank([0.1, 0.2, 0.3, 0.1, 0.2]))
    assert stats.signed_rank([0.1, 0.2, 0.3, 0.1, 0.2, 0.25]) == pytest.approx(0.03125)
    adjusted = stats.holm([0.01, np.nan, 0.04])
    assert adjusted[0] == pytest.approx(0.02) and np.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)


def test_imbalance_warning_names_ratio_and_remedy():
    table = pd.DataFrame(
        {
            "experiment": ["e"],
            "imbalance_ratio": [11.0],
            "class_balance": ["sampling"],
            "train_tiles_per_class": [{"a": 110, "b": 10}],
        }
    )
    [line] = findings.imbalance(table)
    assert "imbalanced 11.0:1 (tiles a: 110, b: 10)" in line and "balanced sampling" in line


def write_run(folder, seed, right):
    folder.mkdir(parents=True)
    history([0.6, 1.0], seed=seed).drop(columns=runs.RUN).to_csv(folder / "history.csv", index=False)
    two_class_run(seed, [right]).drop(columns=runs.RUN).to_csv(folder / "predictions.tsv", sep="\t", index=False)
    identity = {"experiment": "e", "dataset": "d", "model": "deep", "fold": 0, "seed": seed}
    # The run's calibration part: 4 validation tiles, one called wrong.
    member_rows(0, seed, [0.7, 0.6, 0.4, 0.45], ["a", "a", "b", "a"], prefix="v").drop(
        columns=[*runs.RUN, "test_set"]
    ).to_csv(folder / "calibration.tsv", sep="\t", index=False)
    (folder / "metrics.json").write_text(
        json.dumps(
            {
                **identity,
                "classes": ["a", "b"],
                "validation_tiles": 0,
                "class_balance": "none",
                "imbalance_ratio": 1.0,
                "train_tiles_per_class": {"a": 5, "b": 5},
            }
        )
    )


def test_runs_are_read_with_their_recorded_identity(tmp_path):
    dirs = [tmp_path / "anywhere" / f"run{seed}" for seed in (0, 1)]  # the path says nothing
    write_run(dirs[0], 0, 9)
    write_run(dirs[1], 1, 6)
    table, histories, predictions = runs.read_runs(dirs)
    assert table[runs.RUN].values.tolist() == [["e", "d", "deep", 0, 0], ["e", "d", "deep", 0, 1]]
    assert len(histories) == 4 and predictions["seed"].tolist() == [0] * 80 + [1] * 80
    (dirs[0] / "metrics.json").write_text(json.dumps({"classes": ["a", "b"]}))
    with pytest.raises(InputError, match="run0/metrics.json: no experiment, dataset, model, fold, seed recorded"):
        runs.read_runs(dirs)


def test_evaluate_writes_every_table_and_the_findings(tmp_path):
    dirs = [tmp_path / f"run{seed}" for seed in (0, 1)]
    write_run(dirs[0], 0, 9)
    write_run(dirs[1], 1, 6)
    empty = tmp_path / "images_without_tiles.tsv"
    pd.DataFrame(
        [
            {
                "dataset": "d",
                "fold": 0,
                "sample": "a/blank",
                "group": "a/blank",
                "class": "a",
                "split": "test",
                "reason": "no cells found",
            }
        ]
    ).to_csv(empty, sep="\t", index=False)
    names = [
        "runs",
        "classes",
        "history",
        "images",
        "groups",
        "summary",
        "comparisons",
        "ensemble_calibration",
        "findings",
    ]
    outputs = {name: tmp_path / "out" / f"{name}.{'html' if name == 'findings' else 'tsv'}" for name in names}
    evaluate.evaluate(
        dirs, human={}, thresholds=THRESHOLDS, resamples=199, images_without_tiles=[empty], outputs=outputs
    )
    page = outputs["findings"].read_text()
    assert "a/blank (test side): no cells found" in page and "no validation side" in page
    assert "balanced accuracy per image" in page
    runs_table = pd.read_csv(outputs["runs"], sep="\t")
    assert len(runs_table) == 2 * 3  # two runs x three levels
    [ensembled] = pd.read_csv(outputs["ensemble_calibration"], sep="\t").to_dict("records")
    assert (ensembled["members"], ensembled["test_tiles"], ensembled["calibration_tiles"]) == (2, 80, 4)
    assert "the ensemble (the mean of the calibrated probabilities of 2 seed(s)" in page
    # What prediction applies to these runs' mean: fitted on their shared calibration part, where the calls
    # (3 of 4 right) are surer than their mean confidence (0.61).
    fitted = ensemble.temperature_for(dirs)
    expected = calibration.ensemble_fit(np.array([[0.7, 0.3], [0.6, 0.4], [0.4, 0.6], [0.45, 0.55]]), [0, 0, 1, 0])
    assert fitted == pytest.approx(expected) and fitted["under_confident"] and fitted["temperature"] < 1
    assert ensembled["ensemble_temperature"] == pytest.approx(fitted["temperature"])


def test_seeds_near_chance_a_little_apart_do_not_disagree():
    predictions = pd.concat([two_class_run(0, [5]), two_class_run(1, [5, 4])], ignore_index=True)
    table = evaluate.run_table(
        predictions,
        pd.concat([history([1.0], seed=s) for s in range(2)]),
        run_rows(predictions),
        thresholds=THRESHOLDS,
        resamples=199,
    )
    summary = evaluate.summary_table(predictions, table, resamples=199)
    assert findings.seeds_disagree(summary) == []  # 0.50 and 0.45: at chance, reported as such instead
    assert len(findings.collapsed_runs(table)) == 2


def cross_validated(model, right_per_fold, seeds=2, folds=3):
    """`folds` folds x `seeds` seeds; fold f tests its own 2 groups per class (a{2f}, a{2f+1}, ...), with
    right_per_fold[f][seed] tiles of 10 called right in each."""
    return pd.concat(
        [
            two_class_run(seed, [right_per_fold[f][seed]], model=model, n_groups=2, fold=f, first_group=2 * f)
            for f in range(folds)
            for seed in range(seeds)
        ],
        ignore_index=True,
    )


def test_cross_validation_pools_every_fold_and_pairs_runs_by_fold_and_seed():
    big = cross_validated("resnet", [[9, 10], [8, 9], [10, 9]])
    small = cross_validated("deep", [[6, 7], [5, 6], [7, 5]])
    predictions = pd.concat([big, small], ignore_index=True)
    table = evaluate.run_table(
        predictions,
        pd.concat(
            [history([1.0], model=m, fold=f, seed=s) for m in ("resnet", "deep") for f in range(3) for s in range(2)]
        ),
        run_rows(predictions),
        thresholds=THRESHOLDS,
        resamples=199,
    )
    summary = evaluate.summary_table(predictions, table, resamples=199)
    tile = summary[(summary["metric"] == "balanced_accuracy") & (summary["level"] == "tile")].set_index("model")
    # Each run scores its own fold's groups; the counts cover every fold.
    assert tile.loc["resnet", ["n_runs", "n_folds", "n_groups", "n_units"]].tolist() == [6, 3, 12, 120]
    per_run = [balanced_accuracy_score(r["true"], r["predicted"]) for _, r in big.groupby(["fold", "seed"])]
    assert tile.loc["resnet", "mean"] == pytest.approx(np.mean(per_run))
    # The estimate pools each seed's folds (together they call every group once), computed here with sklearn.
    pooled = [balanced_accuracy_score(r["true"], r["predicted"]) for _, r in big.groupby("seed")]
    assert tile.loc["resnet", "estimate"] == pytest.approx(np.mean(pooled))
    assert tile.loc["resnet", "ci95_low"] < np.mean(pooled) < tile.loc["resnet", "ci95_high"]
    C, N, _ = stats.correct_counts(big, ["a", "b"], "tile", stats.run_keys(big))
    assert N.sum() == 6 * 40 and (N.sum(axis=(0, 2)) == 2 * 10).all()  # each group: 10 tiles, tested by 2 runs
    point, low, high = stats.interval(C, N, resamples=999)
    assert point == pytest.approx(np.mean(per_run)) and low < point < high
    # The own side's folds test other groups: the bootstrap's replicates are seeds with their folds pooled.
    pooled_C, pooled_N = stats.replicates(C, N, stats.run_keys(big))
    assert pooled_C.shape[0] == 2 and (pooled_N.sum(axis=2) == 10).all()
    same_groups = pd.concat([two_class_run(seed, [8], fold=f) for f in range(3) for seed in range(2)])
    C2, N2, _ = stats.correct_counts(same_groups, ["a", "b"], "tile", stats.run_keys(same_groups))
    assert stats.replicates(C2, N2, stats.run_keys(same_groups))[0].shape[0] == 6  # every run, as they are
    compared = evaluate.comparisons(predictions, resamples=199)
    row = compared[compared["level"] == "tile"].iloc[0]
    assert (row["n_pairs"], row["n_folds"]) == (6, 3)
    # Six paired runs, resnet better in each: the exact signed-rank test gives 2 / 2**6.
    assert row["p"] == pytest.approx(0.03125) and row["p_holm"] == pytest.approx(2 * 0.03125)
    assert "6 runs (3 folds × 2 seed(s))" in row["text"] and "p = 0.0312" in row["text"]
    tied = row.copy()
    tied[["mean_a", "mean_b", "difference", "ci95_low", "ci95_high", "p"]] = [1.0, 1.0, 0.0, 0.0, 0.0, np.nan]
    [tied] = pd.DataFrame([tied]).itertuples()  # both call everything right in every run: nothing to rank
    assert "no difference to test" in findings.comparison(tied) and "cannot reach" not in findings.comparison(tied)
    [line] = [x for x in findings.headline(summary) if x.startswith("e/resnet")]
    assert "over 12 test groups and 6 runs (3 folds × 2 seed(s))" in line


def test_every_table_says_whether_test_time_augmentation_was_used():
    """runs.tsv and summary.tsv carry the runs' `tta` (metrics.json; "none" for runs from before it), and the
    findings name the models whose test scores average dihedral views."""
    predictions = pd.concat([two_class_run(s, [8, 9]) for s in range(2)], ignore_index=True)
    older = evaluate.run_table(
        predictions,
        pd.concat([history([1.0], seed=s) for s in range(2)]),
        run_rows(predictions),
        thresholds=THRESHOLDS,
        resamples=99,
    )
    assert set(older["tta"]) == {"none"} and findings.test_time_augmentation(older) == []
    table = evaluate.run_table(
        predictions,
        pd.concat([history([1.0], seed=s) for s in range(2)]),
        run_rows(predictions).assign(tta="dihedral"),
        thresholds=THRESHOLDS,
        resamples=99,
    )
    assert set(table["tta"]) == {"dihedral"} and len(table) == len(older)
    summary = evaluate.summary_table(predictions, table, resamples=99)
    assert set(summary["tta"]) == {"dihedral"}
    [line] = findings.test_time_augmentation(table)
    assert "average each tile's probabilities over its 8 dihedral views (evaluation.tta: dihedral)" in line


def test_runs_tsv_shows_each_runs_calibration_per_tile():
    """A calibrated and an uncalibrated run (metrics.json's `calibration`), and one from before calibration: the
    tile rows carry ECE and log loss before and after, the other levels leave them empty (they are per tile)."""
    predictions = pd.concat([two_class_run(s, [8, 9]) for s in range(3)], ignore_index=True)
    effect = {"tiles": 40, "ece_before": 0.2, "ece_after": 0.05, "log_loss_before": 0.6, "log_loss_after": 0.4}
    records = [
        {"temperature": 2.0, "fitted_on": "validation side, 30 tiles", "test_sets": {"d": effect}},
        {"temperature": 1.0, "fitted_on": None, "test_sets": {"d": effect}},
        np.nan,
    ]
    table = evaluate.run_table(
        predictions,
        pd.concat([history([1.0], seed=s) for s in range(3)]),
        run_rows(predictions).assign(calibration=records),
        thresholds=THRESHOLDS,
        resamples=99,
    )
    tile = table[table["level"] == "tile"].set_index("seed")
    assert tile["temperature"].tolist() == [2.0, 1.0, 1.0]
    assert tile["calibration"].tolist() == ["validation side, 30 tiles", "uncalibrated", "uncalibrated"]
    assert tile.loc[0, list(evaluate.CALIBRATION)].tolist() == [0.2, 0.05, 0.6, 0.4] and np.isnan(
        tile.loc[2, "ece_before"]
    )
    assert table.loc[table["level"] != "tile", list(evaluate.CALIBRATION)].isna().all().all()
    [line] = findings.calibration(table)
    assert "median temperature 2.00 over 1 run(s)" in line and "per tile before → after: on d 0.200 → 0.050" in line
    assert "1 run(s) uncalibrated" in line


def ece_by_hand(probabilities, labels, bins=10):
    """ECE with a loop over 10 equal bins of top-class confidence: sum of |hit rate - mean confidence| x share."""
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == labels
    total = 0.0
    for low in np.arange(bins) / bins:
        inside = (confidence > low) & (confidence <= low + 1 / bins)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return total


def member_rows(fold, seed, p_a, true, prefix="t", test_set="d"):
    """One run's tiles: tile i has true class true[i] and p_a[i] on class a."""
    return pd.DataFrame(
        {
            "experiment": "e",
            "dataset": "d",
            "model": "deep",
            "fold": fold,
            "seed": seed,
            "test_set": test_set,
            "tile": [f"{prefix}{fold}_{i}" for i in range(len(p_a))],
            "sample": [f"img{fold}_{i % 3}" for i in range(len(p_a))],
            "group": "g",
            "true": true,
            "predicted": np.where(np.asarray(p_a) > 0.5, "a", "b"),
            "p_a": p_a,
            "p_b": 1 - np.asarray(p_a),
        }
    )


def test_the_ensembles_calibration_is_the_mean_of_its_members_scored_with_sklearn():
    """Two folds of two seeds: each fold's seeds are averaged tile by tile (only they share a test side), scored
    per tile against sklearn's log loss and a hand-made ECE, beside the mean member's; fold 'all' pools the
    folds. An under-confident calibration part gets an ensemble temperature; a sure one none."""
    rng = np.random.default_rng(0)
    true = np.array(["a", "b"] * 10)
    near = np.where(true == "a", 0.58, 0.42)  # right, but hedged
    predictions, parts = [], []
    for fold in range(2):
        for seed in range(2):
            p_a = np.clip(near + rng.normal(0, 0.03, 20), 0.01, 0.99)
            predictions.append(member_rows(fold, seed, p_a, true))
            # Validation: 2 of 20 calls wrong; fold 0's as hedged as its test side, fold 1's sure of every call.
            held_out = np.where(true == "a", 0.97, 0.03) if fold == 1 else p_a.copy()
            held_out[:2] = 1 - held_out[:2]
            parts.append(member_rows(fold, seed, held_out, true, prefix="v").drop(columns="test_set"))
    predictions, parts = pd.concat(predictions, ignore_index=True), pd.concat(parts, ignore_index=True)
    table = ensemble.ensemble_table(predictions, parts).set_index("fold")
    assert list(table.index) == [0, 1, "all"] and table["members"].tolist() == [2, 2, 2]
    labels = (true == "b").astype(int)
    pooled_p, pooled_y = [], []
    for fold in range(2):
        runs_of = predictions[predictions["fold"] == fold]
        mean = runs_of.groupby("tile", sort=False)[["p_a", "p_b"]].mean().to_numpy()
        row = table.loc[fold]
        assert row["test_tiles"] == 20 and row["test_images"] == 3 and row["calibration_tiles"] == 20
        assert row["log_loss"] == pytest.approx(log_loss(labels, mean, labels=[0, 1]))
        assert row["ece"] == pytest.approx(ece_by_hand(mean, labels))
        members = [r[["p_a", "p_b"]].to_numpy() for _, r in runs_of.groupby("seed")]
        assert row["member_log_loss"] == pytest.approx(np.mean([log_loss(labels, m) for m in members]))
        assert row["member_ece"] == pytest.approx(np.mean([ece_by_hand(m, labels) for m in members]))
        assert row["accuracy"] == 1.0 and row["mean_confidence"] < 0.65 and row["under_confident"]
        pooled_p.append(mean)
        pooled_y.append(labels)
    assert table.loc["all", "log_loss"] == pytest.approx(log_loss(np.concatenate(pooled_y), np.concatenate(pooled_p)))
    # Fold 0's calibration part is under-confident: a temperature below 1 sharpens, and the test side's log loss
    # falls with it. Fold 1's part is sure: no temperature.
    hedged, sure = table.loc[0], table.loc[1]
    assert hedged["ensemble_temperature"] < 1 and hedged["tempered_log_loss"] < hedged["log_loss"]
    sharpened = calibration.apply(pooled_p[0], hedged["ensemble_temperature"])
    assert hedged["tempered_log_loss"] == pytest.approx(log_loss(labels, sharpened))
    assert sure["ensemble_temperature"] == 1.0 and "not under-confident" in sure["ensemble_temperature_note"]
    [line] = findings.ensemble_calibration(table.reset_index())
    assert "pooled over 2 folds" in line and "Under-confident" in line and "per tile" in line
    # Runs from before calibration.tsv: the ensemble is still scored, with no temperature to fit.
    bare = ensemble.ensemble_table(predictions, pd.DataFrame(columns=runs.RUN))
    assert (bare["ensemble_temperature"] == 1.0).all() and (bare["calibration_tiles"] == 0).all()


def test_findings_name_a_small_novelty_sample_and_validation_cells_used_twice():
    keys = {"experiment": "e", "dataset": "d", "model": "deep", "fold": 0}
    small = {
        "threshold_quantile": 0.99,
        "threshold_tiles": 120,
        "threshold_tiles_needed": 1000,
        "threshold_note": "the novelty threshold rests on 120 held-out tiles",
    }
    shared = {
        "epoch": {"tiles": 60, "images": 2, "groups": 2},
        "calibration": {"tiles": 60, "images": 2, "groups": 2},
        "shared": {"tiles": 30, "images": 1, "groups": 1},
        "notes": [],
    }
    apart = {**shared, "shared": {"tiles": 0, "images": 0, "groups": 0}}
    table = pd.DataFrame(
        [
            {**keys, "seed": 0, "novelty": small, "validation_uses": shared},
            {
                **keys,
                "seed": 1,
                "novelty": {**small, "threshold_tiles": 1500, "threshold_note": None},
                "validation_uses": apart,
            },
        ]
    )
    [line] = findings.novelty_samples(table)
    assert "in 1 of 2 run(s) the novelty threshold (the 0.99 quantile) rests on 120 held-out tiles" in line
    assert "fewer than the 1000 that leave 10 beyond it" in line
    [line] = findings.shared_validation(table)
    assert "in 1 of 2 run(s)" in line and "1 image(s) (30 tiles) both chose the epoch" in line
    assert findings.novelty_samples(table.drop(columns="novelty")) == []
