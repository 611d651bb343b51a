"""Single cells, not grid squares (prepare.kind: nuclei), in one real Snakemake run: the same fields cropped
per segmented nucleus (`seg`) and per object of user label images (`labelled`), each trained, evaluated per
cell, explained against each cell's nucleus and cytoplasm, and used to call new fields per cell, image and
well."""

import numpy as np
import pandas as pd
import pytest
import tifffile

from cellclass.demo import synthetic as demo
from cellclass.io import tilestore

from conftest import nothing_to_do, snakemake, write_config

pytestmark = pytest.mark.slow

FIELD = {"pattern": "aggregates", "seed": 1, "size": 256, "cells_per_field": 20}
CONFIG = {
    "prepare": {"kind": "nuclei", "tile_size": 48, "resize_to": 32, "nuclei": {"cell_channel": 0}},
    "plots": {"gallery_size": 12},
    "split": {"seed": 0, "test_fraction": 0.25},
    "augment": {"dihedral": True},
    "train": {"models": ["small"], "runs": 1, "epochs": 3, "batch_size": 16, "threads": 1, "epoch_tiles": 400},
    "datasets": {"seg": {"sheet": "data/fields.tsv"}, "labelled": {"sheet": "data/labelled.tsv"}},
    "attribution": {
        "masks": ["nucleus", "cytoplasm", "cell"],
        "methods": ["gradient_x_input"],
        "tiles_per_class": 4,
    },
    "predict": {
        "new_seg": {"path": "new/images", "experiment": "seg"},
        "new_labelled": {"sheet": "new/wells.tsv", "experiment": "labelled"},
    },
}
BLANK = "images/control/blank"


def write_blank(root):
    """A field of camera noise (no cell) and its empty label image."""
    rng = np.random.default_rng(0)
    noise = rng.normal(300, 5, (2, 256, 256)).astype(np.uint16)
    tifffile.imwrite(root / f"{BLANK}.tif", noise, imagej=True, metadata={"axes": "CYX"})
    tifffile.imwrite(root / "nuclei/control/blank.tif", np.zeros((256, 256), np.uint16))


def write_sheets(root, stems, *, labels, wells=None):
    rows = []
    for i, (cls, stem) in enumerate(stems):
        row = {"path": f"images/{cls}/{stem}.tif", "class": cls}
        if labels:
            row.update(
                labels=f"nuclei/{cls}/{stem}.tif", cell_labels=f"cells/{cls}/{stem}.tif" if stem != "blank" else ""
            )
        if wells:
            row["group"] = wells[i]
        rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nuclei")
    data, new = folder / "data", folder / "new"
    demo.write_dataset(data, fields_per_class=4, **FIELD)
    write_blank(data)
    stems = [*demo.field_names(4), ("control", "blank")]
    write_sheets(data, stems, labels=False).to_csv(data / "fields.tsv", sep="\t", index=False)
    write_sheets(data, stems, labels=True).to_csv(data / "labelled.tsv", sep="\t", index=False)
    demo.write_dataset(new, fields_per_class=2, **{**FIELD, "seed": 4})
    wells = ["A01", "A01", "B01", "B01"]  # two fields per well
    sheet = write_sheets(new, demo.field_names(2), labels=True, wells=wells)
    sheet.to_csv(new / "wells.tsv", sep="\t", index=False)
    write_config(folder, CONFIG)
    snakemake(folder)
    return folder


def test_crops_are_cells_whose_ids_lead_back_to_their_field_and_label(run):
    tilesets = tilestore.load_all(sorted((run / "results/seg/tiles").glob("*.npz")))
    cropped = [t for t in tilesets if len(t)]
    assert len(cropped) == 8 and all(t.meta["objects"] == "segmented" for t in cropped)
    split = pd.read_csv(run / "results/seg/split.tsv", sep="\t")
    assert split["tile"].str.fullmatch(r"images/\w+/field_\d+@cell\d+").all()
    labelled = {t.meta["sample"]: t for t in tilestore.load_all(sorted((run / "results/labelled/tiles").glob("*.npz")))}
    for sample, tileset in labelled.items():
        truth = tifffile.imread(run / "data" / f"{sample.replace('images/', 'nuclei/', 1)}.tif").astype(int)
        assert sorted(tileset.extra["label"]) == sorted(set(np.unique(truth)) - {0})
        assert tileset.meta["objects"] == "user labels"


def test_fields_without_nuclei_are_listed_not_dropped(run):
    for dataset in ("seg", "labelled"):
        empty = pd.read_csv(run / f"results/{dataset}/images_without_tiles.tsv", sep="\t")
        assert empty["sample"].unique().tolist() == [BLANK] and (empty["reason"] == tilestore.NO_CELLS).all()
    assert BLANK in (run / "results/evaluation/findings.html").read_text()


def test_both_experiments_are_scored_per_cell(run):
    summary = pd.read_csv(run / "results/evaluation/summary.tsv", sep="\t")
    assert set(summary["experiment"]) == {"seg", "labelled"}
    assert set(summary.loc[summary["level"] == "tile", "unit"]) == {"cell"}
    findings = (run / "results/evaluation/findings.html").read_text()
    assert "per cell" in findings and "per tile" not in findings


def test_attribution_is_scored_in_each_cells_own_compartments(run):
    table = pd.read_csv(run / "results/attribution/enrichment.tsv", sep="\t")
    assert set(table["experiment"]) == {"seg", "labelled"}
    assert set(table["mask"]) == {"nucleus", "cytoplasm", "cell"}
    # Every explained crop holds its own nucleus and cell, so every run has a score in each.
    assert (table["tiles"] > 0).all()
    findings = (run / "results/attribution/findings.html").read_text()
    assert "nucleus mask" in findings and "cytoplasm mask" in findings


def test_new_fields_are_called_per_cell_image_and_well(run):
    cells = pd.read_csv(run / "results/predict/new_labelled/tiles.tsv", sep="\t")
    images = pd.read_csv(run / "results/predict/new_labelled/images.tsv", sep="\t")
    wells = pd.read_csv(run / "results/predict/new_labelled/groups.tsv", sep="\t")
    assert {"label", "centroid_y", "centroid_x", "area"} <= set(cells.columns)
    assert (cells["tile"] == cells["image"] + "@cell" + cells["label"].astype(str)).all()
    assert (images["unit"] == "cell").all() and len(images) == 4
    # Every cell is called a class or abstains (as unlike the training data, or uncertain).
    counted = images[["called_aggregates", "called_control", "unlike_training", "uncertain"]].sum(axis=1)
    assert (counted == images["tiles"]).all()
    assert wells["group"].tolist() == ["A01", "B01"] and (wells["images"] == 2).all()
    assert wells["tiles"].sum() == len(cells) == images["tiles"].sum()
    assert np.allclose(wells[["fraction_aggregates", "fraction_control"]].sum(axis=1), 1)
    segmented = pd.read_csv(run / "results/predict/new_seg/images.tsv", sep="\t")
    assert len(segmented) == 4 and (segmented["tiles"] > 0).all()


def test_nothing_left_to_do(run):
    assert nothing_to_do(snakemake(run, "-n"))
