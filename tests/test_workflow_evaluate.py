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
            rows.append({"path": f"{pattern}/images/{demo_class}/field_{i:03d}.tif", "class": cls, "split": side,
                         "group": SMEARS.get((cls, i), "")})
    pd.DataFrame(rows).to_csv(folder / "sheet.tsv", sep="\t", index=False)
    write_config(
        folder,
        {
            "prepare": {"tile_size": 32},
            "train": {"models": ["small"], "runs": 2, "epochs": 3, "epoch_tiles": 320, "batch_size": 16,
                      "threads": 1},
            "datasets": {"three": {"sheet": "sheet.tsv"}},
            "attribution": {"experiments": []},
            "evaluation": {"bootstrap_resamples": 199},
        },
    )
    snakemake(folder)
    return folder


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
    for figure in ("test_accuracy", "training_curves", "overfitting", "three/small/confusion", "three/small/confidence"):
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
