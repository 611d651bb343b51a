"""A real Snakemake run on a small imbalanced 3-class dataset with a published split: what evaluation tells.

Its test images come from two smears (groups), one of which holds an image of every class: that group has no
class of its own, so the headline is per image and the findings say why."""

import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, recall_score

from conftest import snakemake, write_config

pytestmark = pytest.mark.slow

# class -> (demo pattern, demo class, images, sides of the published split)
CLASSES = {
    "control": ("aggregates", "control", 9, ["train"] * 6 + ["validation"] + ["test"] * 2),
    "bright": ("aggregates", "aggregates", 2, ["train", "test"]),
    "faint": ("subtle", "aggregates", 2, ["train", "test"]),
}
# The test images' groups: smear1 holds one of each class, smear2 the other control image.
SMEARS = {("control", 7): "smear1", ("bright", 1): "smear1", ("faint", 1): "smear1", ("control", 8): "smear2"}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from cellclass.demo import synthetic as demo

    folder = tmp_path_factory.mktemp("imbalanced")
    rows = []
    for pattern, seed in (("aggregates", 11), ("subtle", 12)):
        demo.write_dataset(folder / pattern, pattern, fields_per_class=9, seed=seed, size=256, cells_per_field=30)
    for cls, (pattern, demo_class, n, sides) in CLASSES.items():
        for i, side in zip(range(n), sides):
            rows.append(
                {
                    "path": f"{pattern}/images/{demo_class}/field_{i:03d}.tif",
                    "class": cls,
                    "split": side,
                    "group": SMEARS.get((cls, i), ""),
                }
            )
    pd.DataFrame(rows).to_csv(folder / "sheet.tsv", sep="\t", index=False)
    write_new_images(folder)
    write_config(
        folder,
        {
            "prepare": {"tile_size": 32},
            "train": {"models": ["small"], "runs": 2, "epochs": 3, "epoch_tiles": 320, "batch_size": 16, "threads": 1},
            "datasets": {"three": {"sheet": "sheet.tsv"}},
            "predict": {"new": {"sheet": "new.tsv", "experiment": "three"}},
            "attribution": {"experiments": []},
            "evaluation": {"bootstrap_resamples": 199},
        },
    )
    snakemake(folder, "all", "predict")
    return folder


# New images: fields of the training kind the runs never saw, and copies of two of them as another microscope
# might record them (cellclass.demo.shifts).
SAME_KIND = [
    "aggregates/images/aggregates/field_003.tif",
    "aggregates/images/aggregates/field_004.tif",
    "subtle/images/control/field_003.tif",
]
SHIFTED = {
    "blurred": ("aggregates/images/aggregates/field_005.tif", "blur_4px"),
    "weak": ("aggregates/images/aggregates/field_006.tif", "stain_5x_weaker"),
}


def write_new_images(folder):
    import tifffile

    from cellclass.demo import shifts

    for name, (source, kind) in SHIFTED.items():
        tifffile.imwrite(
            folder / f"{name}.tif",
            shifts.shift(tifffile.imread(folder / source), kind),
            imagej=True,
            metadata={"axes": "CYX"},
        )
    paths = SAME_KIND + [f"{name}.tif" for name in SHIFTED]
    pd.DataFrame({"path": paths}).to_csv(folder / "new.tsv", sep="\t", index=False)


def test_published_split_is_kept(evaluated):
    split = pd.read_csv(evaluated / "results/three/split.tsv", sep="\t")
    sides = split.groupby("sample")["split"].first().to_dict()
    sheet = pd.read_csv(evaluated / "sheet.tsv", sep="\t")
    expected = dict(zip(sheet["path"].str.removesuffix(".tif"), sheet["split"]))
    assert {sample: expected[sample] for sample in sides} == sides and len(sides) == 13


def test_per_class_and_per_level_tables(evaluated):
    evaluation = evaluated / "results/evaluation"
    classes = pd.read_csv(evaluation / "classes.tsv", sep="\t")
    assert set(classes["class"]) == set(CLASSES) and set(classes["level"]) == {"tile", "image", "group"}
    runs = pd.read_csv(evaluation / "runs.tsv", sep="\t")
    assert len(runs) == 2 * 3 and {"balanced_accuracy", "macro_f1", "log_loss", "ece", "roc_auc"} <= set(runs)
    # Recomputed from predictions.tsv with scikit-learn, independently of the code under test.
    for seed in (0, 1):
        tiles = pd.read_csv(evaluated / f"results/train/three/small/fold0/seed{seed}/predictions.tsv", sep="\t")
        row = runs[(runs["seed"] == seed) & (runs["level"] == "tile")].iloc[0]
        assert row["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(tiles["true"], tiles["predicted"]))
        recall = recall_score(tiles["true"], tiles["predicted"], labels=list(CLASSES), average=None)
        per_class = classes[(classes["seed"] == seed) & (classes["level"] == "tile")].set_index("class")
        assert per_class.loc[list(CLASSES), "recall"].tolist() == pytest.approx(list(recall))
    summary = pd.read_csv(evaluation / "summary.tsv", sep="\t")
    headline = summary[summary["headline"] & (summary["metric"] == "balanced_accuracy")]
    assert headline["level"].tolist() == ["image"] and headline["chance"].iloc[0] == pytest.approx(1 / 3)
    assert headline["headline_reason"].tolist() == ["1 of 2 test groups hold several classes"]
    group = runs[runs["level"] == "group"]
    assert (group["n_units"] == 1).all() and (group["mixed_units"] == 1).all()  # smear2 is scored, smear1 is not
    groups = pd.read_csv(evaluation / "groups.tsv", sep="\t").set_index("group")
    assert groups.loc["smear1", "mixed"].all() and groups.loc["smear1", "true"].isna().all()
    for figure in (
        "test_accuracy",
        "training_curves",
        "overfitting",
        "three/small/confusion",
        "three/small/confidence",
    ):
        assert (evaluated / "results/figures" / f"{figure}.png").stat().st_size > 1000


def test_imbalance_is_remedied_recorded_and_warned(evaluated):
    import json

    metrics = json.loads((evaluated / "results/train/three/small/fold0/seed0/metrics.json").read_text())
    assert metrics["class_balance"] == "sampling" and metrics["imbalance_ratio"] > 3
    # The published validation side holds control images only: the temperature says what it never saw.
    assert metrics["calibration"]["fitted_on"].endswith("tiles (none of bright, faint)")
    page = (evaluated / "results/evaluation/findings.html").read_text()
    assert "imbalanced" in page and "balanced sampling" in page
    assert "few independent groups" in page  # 1 test image of each small class
    assert "balanced accuracy per image" in page and "Chance 0.33" in page
    assert "The headline is per image because 1 of 2 test groups hold several classes" in page


def test_images_unlike_the_training_images_get_no_call_and_the_measure_is_named(evaluated):
    from cellclass.predict import image_shift

    training = pd.read_parquet(evaluated / "results/three/qc.parquet")
    assert len(training) == 13 and training["focus_c0"].notna().all() and (training["qc_note"] == "").all()
    new = pd.read_parquet(evaluated / "results/predict/new/qc.parquet").set_index("image")
    images = pd.read_csv(evaluated / "results/predict/new/images.tsv", sep="\t", keep_default_na=False).set_index(
        "image"
    )
    assert "focus" in new.loc["blurred", "unlike"] and "99th percentile" in new.loc["weak", "unlike"]
    for name in SHIFTED:
        assert images.loc[name, "call"] == image_shift.SHIFTED, images.loc[name].to_dict()
        assert images.loc[name, "no_call"].startswith("unlike the training images: ")
        assert images.loc[name, "image_shift"] == images.loc[name, "tiles"] > 0
    same = [path.removesuffix(".tif") for path in SAME_KIND]
    assert (new.loc[same, "unlike"] == "").all(), new.loc[same, "unlike"].to_dict()
    assert images.loc[same, "call"].isin(["control", "bright", "faint"]).all()
    for path in ("results/three/qc.png", "results/predict/new/qc.png"):
        assert (evaluated / path).stat().st_size > 1000
    page = (evaluated / "results/predict/new/findings.html").read_text()
    assert "2 of 5 image(s) are unlike the training images" in page and "blurred" in page


def test_the_ensembles_calibration_and_the_validation_sides_uses_are_recorded(evaluated):
    """The two seeds' calibrated probabilities averaged tile by tile, scored with scikit-learn; each run records
    what its validation side was used for (one validation image, control's: it serves both uses) and how many
    tiles its novelty threshold rests on."""
    import json

    from sklearn.metrics import log_loss

    runs = [f"results/train/three/small/fold0/seed{seed}" for seed in (0, 1)]
    tiles = pd.concat([pd.read_csv(evaluated / run / "predictions.tsv", sep="\t") for run in runs])
    table = pd.read_csv(evaluated / "results/evaluation/ensemble_calibration.tsv", sep="\t")
    [row] = table.to_dict("records")
    p = [f"p_{c}" for c in sorted(CLASSES)]  # scikit-learn reads the columns in the labels' sorted order
    mean = tiles.groupby("tile")[p].mean()
    mean = mean.div(mean.sum(axis=1), axis=0)  # float32 sums stray from 1
    true = tiles.groupby("tile")["true"].first().loc[mean.index]
    assert (row["test_set"], row["fold"], row["members"], row["test_tiles"]) == ("three", 0, 2, len(mean))
    assert row["log_loss"] == pytest.approx(log_loss(true, mean.to_numpy(), labels=sorted(CLASSES)), rel=1e-4)
    assert 0 <= row["ece"] <= 1 and 0 <= row["member_ece"] <= 1 and row["ensemble_temperature"] > 0
    assert row["mean_confidence"] == pytest.approx(mean.max(axis=1).mean(), rel=1e-4)
    for run in runs:
        metrics = json.loads((evaluated / run / "metrics.json").read_text())
        uses, part = metrics["validation_uses"], pd.read_csv(evaluated / run / "calibration.tsv", sep="\t")
        assert uses["shared"]["images"] == 1 and uses["calibration"]["tiles"] == uses["epoch"]["tiles"] == len(part)
        assert metrics["novelty"]["threshold_tiles"] == len(part) < 1000 and metrics["novelty"]["threshold_note"]
    assert row["calibration_tiles"] == len(part) and row["calibration_images"] == 1
    page = (evaluated / "results/evaluation/findings.html").read_text()
    assert "the ensemble (the mean of the calibrated probabilities of 2 seed(s), as prediction calls)" in page
    assert f"rests on {len(part)} held-out tiles" in page and "both chose the epoch and fitted" in page
