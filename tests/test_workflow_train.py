"""The whole workflow on a tiny demo: training, evaluation, figures, report and what reruns."""

import copy
import json
import os
import re
import shutil
import stat

import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from cellclass.demo import synthetic
from cellclass.predict.abstention import UNLIKE

from conftest import TINY, caption_problems, job_counts, nothing_to_do, report_results, snakemake, write_config

pytestmark = pytest.mark.slow


# New images for `predict`: the clear pattern again, from a seed no run has seen.
NEW = {"demo": {"pattern": "aggregates", "fields_per_class": 1, "seed": 5, "size": 256, "cells_per_field": 30}}
# And fields of another kind: stripes and empty noise, none of it like the training data. The leakage check
# costs one more training job (and augmented copies of the images no real run trains on).
CONFIG = {
    **TINY,
    "predict": {
        "tiny_new": {**NEW, "experiment": "tiny"},
        "unfamiliar": {"path": "data/unfamiliar", "experiment": "tiny"},
    },
    "evaluation": {"leakage_check": True},
    # Profiles, maps and a label-next sheet of 8 cells: one job per experiment model and prediction set.
    "profiles": {"experiments": ["tiny"], "predictions": ["tiny_new"], "label_next": 8},
    # A package of the experiment's run (no ONNX copy, to keep it quick): what the export reruns on.
    "export": {"tiny_small": {"experiment": "tiny", "onnx": False}},
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("workflow")
    for kind in synthetic.UNFAMILIAR:
        for seed in range(2):
            synthetic.write_unfamiliar(folder / f"data/unfamiliar/{kind}/{kind}_{seed}.tif", kind, seed=seed, size=256)
    write_config(folder, CONFIG)
    old = os.umask(0o022)  # Snakemake and its jobs inherit it
    try:
        result = snakemake(folder)
    finally:
        os.umask(old)
    (folder / "snakemake.out").write_text(result.stdout + result.stderr)
    return folder


def test_the_log_is_readable(finished):
    """No TensorFlow banners, graph errors, shell-command lines or Keras warnings; a few lines per job."""
    text = (finished / "snakemake.out").read_text()
    for noise in ("oneDNN", "cpu_feature_guard", "E0000", "absl", "Shell command", "shuffle=True", "UserWarning"):
        assert noise not in text, noise
    lines = [line for line in text.splitlines() if not re.match(r"^(Epoch \d+/\d+|\d+/\d+ - )", line)]
    jobs = len(re.findall(r"^Finished jobid", text, re.M))
    assert jobs > 20 and len(lines) <= 8 * jobs
    # A note about the plan is given once, by the split job, never by a planning-only call.
    assert text.count("no group hashed to test") <= 1
    dry = snakemake(finished, "-n", "--forcerun", "split")
    assert "no group hashed" not in dry.stdout + dry.stderr


def test_results_honour_the_umask(finished):
    """Atomic writes go through private temporary files; the results must still be readable by colleagues."""
    modes = {
        p.relative_to(finished): stat.S_IMODE(p.stat().st_mode)
        for p in (finished / "results").rglob("*")
        if p.is_file()
    }
    assert len(modes) > 50
    assert {path: oct(mode) for path, mode in modes.items() if mode != 0o644} == {}


def test_runs_are_trained_evaluated_and_plotted(finished):
    run = finished / "results/train/tiny/small/fold0/seed0"
    predictions = pd.read_csv(run / "predictions.tsv", sep="\t")
    # Bright puncta are easy: a broken pipeline (labels shuffled, wrong channel) stays near 0.5;
    # the margin below what we see (~0.98) is for other CPUs' float order.
    for test_set, tiles in predictions.groupby("test_set"):
        assert balanced_accuracy_score(tiles["true"], tiles["predicted"]) >= 0.75, test_set
    metrics = json.loads((run / "metrics.json").read_text())
    assert {k: metrics[k] for k in ("experiment", "dataset", "model", "seed")} == {
        "experiment": "tiny",
        "dataset": "tiny",
        "model": "small",
        "seed": 0,
    }
    summary = pd.read_csv(finished / "results/evaluation/summary.tsv", sep="\t")
    assert set(summary["test_set"]) == {"tiny", "tiny_holdout"}
    for figure in ["test_accuracy", "training_curves", "overfitting", "tiny/small/gallery", "tiny/small/confusion"]:
        for suffix in (".png", ".svg"):
            assert (finished / "results/figures" / f"{figure}{suffix}").stat().st_size > 1000
    assert nothing_to_do(snakemake(finished, "-n"))


def test_headline_numbers_recomputed_from_predictions_with_sklearn(finished):
    """Every run's tile- and image-level balanced accuracy, from predictions.tsv, independently of cellclass."""
    runs = pd.read_csv(finished / "results/evaluation/runs.tsv", sep="\t").set_index(["test_set", "level"])
    tiles = pd.read_csv(finished / "results/train/tiny/small/fold0/seed0/predictions.tsv", sep="\t")
    for test_set, rows in tiles.groupby("test_set"):
        tile_score = balanced_accuracy_score(rows["true"], rows["predicted"])
        assert runs.loc[(test_set, "tile"), "balanced_accuracy"] == pytest.approx(tile_score)
        images = rows.groupby("sample").agg(true=("true", "first"), p=("p_aggregates", "mean"))
        called = images["p"].gt(0.5).map({True: "aggregates", False: "control"})
        assert runs.loc[(test_set, "image"), "balanced_accuracy"] == pytest.approx(
            balanced_accuracy_score(images["true"], called)
        )
    # Calibrated on the validation side: per tile, before and after, on every test set; "after" is what the
    # tile rows score from predictions.tsv.
    metrics = json.loads((finished / "results/train/tiny/small/fold0/seed0/metrics.json").read_text())
    assert metrics["calibration"]["temperature"] > 0 and metrics["calibration"]["fitted_on"].startswith(
        "validation side"
    )
    tile_rows = runs.xs("tile", level="level")
    calibrated = ["temperature", "ece_before", "ece_after", "log_loss_before", "log_loss_after"]
    assert (
        tile_rows[calibrated].notna().all().all()
        and (tile_rows["temperature"] == metrics["calibration"]["temperature"]).all()
    )
    assert tile_rows["ece_after"].to_numpy() == pytest.approx(tile_rows["ece"].to_numpy(), abs=1e-6)
    assert tile_rows["log_loss_after"].to_numpy() == pytest.approx(tile_rows["log_loss"].to_numpy(), rel=1e-3, abs=1e-6)
    assert "median ECE per tile before → after" in (finished / "results/evaluation/findings.html").read_text()
    # The curves never show the test side: validation is its own side of the split.
    split = pd.read_csv(finished / "results/tiny/split.tsv", sep="\t")
    assert set(split["split"]) == {"train", "validation", "test"}
    history = pd.read_csv(finished / "results/train/tiny/small/fold0/seed0/history.csv")
    assert history["validation_accuracy"].notna().all() and history["train_eval_accuracy"].notna().all()


def test_the_leakage_check_holds_a_random_tile_split_against_the_grouped_one(finished):
    table = pd.read_csv(finished / "results/leakage/leakage.tsv", sep="\t")
    assert (
        len(table) == 1
        and table[["random_split", "grouped_split", "grouped_split_headline", "gap"]].notna().all().all()
    )
    row = table.iloc[0]
    assert (row["experiment"], row["model"], row["unit"], row["headline_unit"]) == ("tiny", "small", "tile", "image")
    # Recomputed with scikit-learn from the control's predictions and the summary, independently of cellclass.
    control = pd.read_csv(finished / "results/leakage/tiny/small/predictions.tsv", sep="\t")
    assert row["random_split"] == pytest.approx(balanced_accuracy_score(control["true"], control["predicted"]))
    summary = pd.read_csv(finished / "results/evaluation/summary.tsv", sep="\t")
    grouped = summary[
        (summary["test_set"] == "tiny") & (summary["metric"] == "balanced_accuracy") & (summary["level"] == "tile")
    ]["estimate"].iloc[0]
    assert row["gap"] == pytest.approx(row["random_split"] - grouped)
    # The leak it measures: the control tests tiles of every image, the grouped split only of its test images.
    split = pd.read_csv(finished / "results/tiny/split.tsv", sep="\t")
    assert control["sample"].nunique() > split.loc[split["split"] == "test", "sample"].nunique()
    for suffix in (".png", ".svg"):
        assert (finished / f"results/figures/leakage{suffix}").stat().st_size > 1000
    page = (finished / "results/evaluation/findings.html").read_text()
    assert f"a random tile split would have claimed {row['random_split']:.2f}" in page
    assert f"split by image it is {row['grouped_split_headline']:.2f} per image" in page and "no interval" in page


def edited(key, value):
    """The finished run's config with one dotted `key` set to `value`."""
    config = copy.deepcopy(CONFIG)
    *path, last = key.split(".")
    node = config
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value
    return config


# What a user edits on a finished run, and the rules (jobs) that edit reruns: nothing else, nothing more. `all` is
# the target that gathers everything. docs/clusters.md has this table in words.
# What reads the runs' scoring (their temperatures, the test side's calls): a new image is tiled as the training
# record says, so no prediction set is tiled again.
SCORED = {
    "evaluate": 1,
    "run_figures": 1,
    "overview_figures": 1,
    "attribution_summary": 1,
    "leakage": 1,
    "predict_set": 2,
    "predict_tiles_tsv": 2,
    "profile_experiment": 1,
    "profile_prediction_set": 1,
    "label_next": 1,
    "export_package": 1,
    "validate_package": 1,
    "all": 1,
}
RERUNS = [
    # Test-time augmentation rescores every run (and the leakage control) and retrains none.
    ("evaluation.tta", "dihedral", {"score": 1, "leakage_score": 1, **SCORED}),
    (
        "evaluation.bootstrap_resamples",
        499,
        {"evaluate": 1, "overview_figures": 1, "attribution_summary": 1, "leakage": 1, "all": 1},
    ),
    (
        "evaluation.human",
        {"tiny": 0.9},
        {"evaluate": 1, "overview_figures": 1, "attribution_summary": 1, "leakage": 1, "all": 1},
    ),
    ("evaluation.leakage_check", False, {"evaluate": 1, "overview_figures": 1, "attribution_summary": 1, "all": 1}),
    ("plots.gallery_size", 6, {"run_figures": 1, "overview_figures": 1, "all": 1}),
    ("attribution.tiles_per_class", 8, {"attribute": 1, "attribution_overlay": 4, "attribution_summary": 1, "all": 1}),
    (
        "train.epochs",
        3,
        {
            "train": 1,
            "score": 1,
            "leakage_train": 1,
            "leakage_score": 1,
            "attribute": 1,
            "attribution_overlay": 4,
            "predict_tile": 3,
            "predict_quality": 2,
            **SCORED,
        },
    ),
    # A second seed trains alone; the first is kept.
    ("train.runs", 2, {"train": 1, "score": 1, "attribute": 1, **SCORED}),
    (
        "predict.tiny_new.abstain",
        {"max_share": 0.5},
        {"predict_set": 1, "predict_tiles_tsv": 1, "label_next": 1, "all": 1},
    ),
    ("predict.tiny_new.overlays", 1, {"predict_set": 1, "predict_tiles_tsv": 1, "label_next": 1, "all": 1}),
    ("profiles.map", "pca", {"profile_experiment": 1, "profile_prediction_set": 1, "label_next": 1, "all": 1}),
    ("export.tiny_small.description", "Another description.", {"export_package": 1, "validate_package": 1, "all": 1}),
]


def test_each_config_edit_reruns_exactly_its_rules(finished):
    seen = {}
    try:
        for key, value, _ in RERUNS:
            write_config(finished, edited(key, value))
            seen[key] = job_counts(snakemake(finished, "-n"))
    finally:
        write_config(finished, CONFIG)
    wrong = {key: seen[key] for key, _, expected in RERUNS if seen[key] != expected}
    assert not wrong, "reruns differ from the table:\n" + "\n".join(f"{k}: {v}" for k, v in seen.items())
    # Test-time augmentation is an evaluation setting: it rescores every run and retrains none.
    assert "train" not in seen["evaluation.tta"] and "leakage_train" not in seen["evaluation.tta"]
    assert nothing_to_do(snakemake(finished, "-n"))


def test_attribution_explains_the_tiles_the_run_was_scored_on(finished):
    """Attribution reads the test side from the split, not from the scoring (so evaluation.tta explains nothing
    anew): the same tiles, in the same order, as the run's predictions of its own test side."""
    from cellclass.explain.explainer import test_side

    run = finished / "results/train/tiny/small/fold0/seed0"
    record = json.loads((run / "training.json").read_text())
    side = test_side(
        record, sorted((finished / "results/tiny/tiles").glob("*.npz")), finished / "results/tiny/split.tsv"
    )
    scored = pd.read_csv(run / "predictions.tsv", sep="\t")
    scored = scored[scored["test_set"] == "tiny"]
    assert len(side) and side["tile"].tolist() == scored["tile"].tolist()
    assert side["true"].tolist() == scored["true"].tolist()


def test_new_images_are_called_right(finished):
    images = pd.read_csv(finished / "results/predict/tiny_new/images.tsv", sep="\t")
    assert len(images) == 2 and images["correct"].all()
    assert set(images["call"]) == {"aggregates", "control"}
    assert ((images["p_aggregates"] + images["p_control"]) - 1).abs().max() < 1e-5
    tiles = pd.read_csv(finished / "results/predict/tiny_new/tiles.tsv", sep="\t")
    assert len(tiles) == images["tiles"].sum() and (tiles["spread"] >= 0).all()
    for image in images["image"]:
        assert (finished / "results/predict/tiny_new/overlays" / f"{image}.png").stat().st_size > 1000


def test_prediction_abstains_on_images_of_another_kind_and_not_on_the_same_kind(finished):
    same = pd.read_csv(finished / "results/predict/tiny_new/tiles.tsv", sep="\t")
    other = pd.read_csv(finished / "results/predict/unfamiliar/tiles.tsv", sep="\t")
    # The threshold is the validation side's 99th percentile: a few of the same kind may pass it, by design.
    assert (same["abstain"] == UNLIKE).mean() < 0.2 and same["novelty"].median() < 1
    stripes = other[other["image"].str.startswith("stripes")]
    assert len(stripes) and (stripes["abstain"] == UNLIKE).mean() > 0.8
    images = pd.read_csv(finished / "results/predict/unfamiliar/images.tsv", sep="\t")
    assert images.loc[images["image"].str.startswith("stripes"), "call"].eq(UNLIKE).all()
    assert images["correct"].isna().all()  # no call, and no class the model has: neither right nor wrong
    findings = (finished / "results/predict/unfamiliar/findings.html").read_text()
    assert "mostly unlike the training data" in findings and "stripes/stripes_0" in findings
    assert "mostly unlike" not in (finished / "results/predict/tiny_new/findings.html").read_text()


def test_predicting_new_images_reruns_no_training(finished):
    config = copy.deepcopy(CONFIG)
    config["predict"]["more_new"] = {"demo": {**NEW["demo"], "seed": 6}, "experiment": "tiny"}
    write_config(finished, config)
    try:
        jobs = job_counts(snakemake(finished, "-n", "predict"))
    finally:
        write_config(finished, CONFIG)
    # The two new fields are one shard (prepare.images_per_job 2): one predict_tile job, their quality against the
    # training images'; a small set's per-tile table is copied to TSV.
    assert jobs == {
        "demo_field": 2,
        "predict_tile": 1,
        "predict_quality": 1,
        "predict_set": 1,
        "predict_tiles_tsv": 1,
        "predict": 1,
    }


def test_profiles_maps_and_what_to_label_next(finished):
    """The test side is profiled by the run that never trained on it, the new images by the ensemble's members,
    each row with the run's own call; a map and its gallery; 8 cells to label next, in the shared format."""
    run = finished / "results/train/tiny/small/fold0/seed0"
    predictions = pd.read_csv(run / "predictions.tsv", sep="\t")
    tested = predictions[predictions["test_set"] == "tiny"].set_index("tile")
    profiled = pd.read_parquet(finished / "results/profiles/tiny/small/profiles.parquet").set_index("tile")
    assert set(profiled.index) == set(tested.index) and set(profiled["run"]) == {"fold0/seed0"}
    assert (profiled["call"] == tested.loc[profiled.index, "predicted"]).mean() > 0.95
    assert profiled.filter(like="feature_").shape[1] >= 16
    new = pd.read_parquet(finished / "results/predict/tiny_new/profiles.parquet")
    calls = pd.read_csv(finished / "results/predict/tiny_new/tiles.tsv", sep="\t")
    assert sorted(new["tile"]) == sorted(calls["tile"])
    wells = pd.read_parquet(finished / "results/predict/tiny_new/wells_profiles.parquet")
    assert wells["cells"].sum() == len(new) and set(wells["group"]) == set(calls["group"])
    for folder in ("results/profiles/tiny/small", "results/predict/tiny_new"):
        for figure in ("map.png", "map.svg", "map_gallery.png"):
            assert (finished / folder / figure).stat().st_size > 1000, (folder, figure)
    sheet = pd.read_csv(
        finished / "results/predict/tiny_new/label_next.tsv", sep="\t", dtype=str, keep_default_na=False
    )
    assert list(sheet.columns) == [
        "tile",
        "image",
        "files",
        "row",
        "col",
        "label",
        "group",
        "plate",
        "well",
        "p_aggregates",
        "p_control",
        "call",
        "novelty",
        "rank",
        "reason",
        "class",
    ]
    assert len(sheet) == 8 and set(sheet["tile"]) <= set(calls["tile"]) and (sheet["class"] == "").all()
    assert all((finished / path).is_file() for files in sheet["files"] for path in files.split(";"))
    page = (finished / "results/predict/tiny_new/label_next.html").read_text()
    assert all(f'data-tile="{tile}"' in page for tile in sheet["tile"]) and "http" not in page


def test_a_browser_labels_the_cells_to_label_next_and_the_saved_sheet_trains(finished, tmp_path):
    """The demo's own page, in headless Chromium: labelled cells come back in the saved sheet, the rest as written;
    named as the dataset's extra labels (in a copy of the finished folder), the sheet's cells train the run."""
    from browser import label_cells

    sheet = pd.read_csv(
        finished / "results/predict/tiny_new/label_next.tsv", sep="\t", dtype=str, keep_default_na=False
    )
    saved, labelled = label_cells(
        finished / "results/predict/tiny_new/label_next.html", tmp_path, ["aggregates", "control"]
    )
    filled = pd.read_csv(saved, sep="\t", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(filled.drop(columns="class"), sheet.drop(columns="class"))
    assert filled["class"].tolist() == [labelled.get(i, "") for i in range(len(sheet))]

    copy_dir = tmp_path / "again"
    shutil.copytree(finished, copy_dir, symlinks=True)
    shutil.copy(saved, copy_dir / "labelled.tsv")
    config = copy.deepcopy(CONFIG)
    config["datasets"]["tiny"]["extra_labels"] = "labelled.tsv"
    write_config(copy_dir, config)
    run = "results/train/tiny/small/fold0/seed0"
    snakemake(copy_dir, f"{run}/metrics.json")
    metrics = json.loads((copy_dir / run / "metrics.json").read_text())
    assert metrics["extra_tiles"] == pd.Series(list(labelled.values())).value_counts().to_dict()
    # The next sheet, from the runs that trained on them, asks for none of the labelled cells again.
    snakemake(copy_dir, "results/predict/tiny_new/label_next.tsv")
    again = pd.read_csv(
        copy_dir / "results/predict/tiny_new/label_next.tsv", sep="\t", dtype=str, keep_default_na=False
    )
    assert len(again) and not set(again["tile"]) & set(filled.loc[filled["class"] != "", "tile"])


def test_report_builds(finished):
    snakemake(finished, "--report", "report.zip")
    assert (finished / "report.zip").stat().st_size > 10000
    results = report_results(finished / "report.zip")
    figures = {f"results/figures/{name}.png" for name in ("test_accuracy", "training_curves", "overfitting")}
    figures |= {f"results/figures/tiny/small/{name}.png" for name in ("gallery", "confusion", "confidence")}
    figures |= {"results/figures/leakage.png", "results/leakage/leakage.tsv"}
    figures |= {
        f"{folder}/{name}"
        for folder in ("results/profiles/tiny/small", "results/predict/tiny_new")
        for name in ("map.png", "map_gallery.png")
    } | {"results/predict/tiny_new/label_next.tsv"}
    assert figures <= set(results), sorted(results)
    assert results["results/figures/tiny/small/gallery.png"]["job_properties"]["rule"] == "run_figures"
    # Every caption rendered: no Jinja tag left over, no empty **{{ wildcard }}**.
    assert caption_problems(results) == {}
    calls = results["results/predict/tiny_new/images.tsv"]["caption"]
    assert "<strong>tiny_new</strong>" in calls
