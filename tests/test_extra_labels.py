"""Extra labelled cells from a filled label-next sheet: read, checked and tiled as the dataset's own images."""

import os

import pandas as pd
import pytest
import tifffile
from test_tiling import blob_field, settings

from cellclass.io.datasets import Sample
from cellclass.io.errors import InputError
from cellclass.plan import make_plan
from cellclass.prepare import extra_labels, tiling

CLASSES = ["aggregates", "control"]


def write_sheet(path, rows):
    """A label-next sheet in the contract's column order (the informative columns left empty)."""
    columns = [
        "tile",
        "image",
        "files",
        "row",
        "col",
        "label",
        "group",
        "p_aggregates",
        "p_control",
        "call",
        "novelty",
        "rank",
        "reason",
        "class",
    ]
    pd.DataFrame([{c: row.get(c, "") for c in columns} for row in rows], columns=columns).to_csv(
        path, sep="\t", index=False
    )
    return path


@pytest.fixture
def field(tmp_path):
    path = tmp_path / "new/field_0.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, blob_field())
    prepare = settings(tile_size=32, foreground={"min_fraction": 0.2})
    ids = tiling.tile_sample(Sample("new/field_0", (str(path),), "", "new/field_0"), prepare).tile_ids()
    return str(path), ids, prepare


def test_filled_rows_become_training_tiles_of_their_own_group(tmp_path, field):
    path, ids, prepare = field
    sheet = write_sheet(
        tmp_path / "sheet.tsv",
        [
            {"tile": ids[0], "image": "new/field_0", "files": path, "class": "aggregates"},
            {"tile": ids[1], "image": "new/field_0", "files": path, "class": " control "},
            {"tile": ids[2], "image": "new/field_0", "files": path, "class": ""},  # left empty: skipped
            {"tile": ids[3], "image": "new/field_0", "files": path, "class": "aggregates"},
        ],
    )
    images = extra_labels.read_sheet(sheet, CLASSES)
    tilesets = extra_labels.tile_extra(images, prepare, sheet=sheet, dataset="d")
    assert [(t.meta["class"], t.tile_ids()) for t in tilesets] == [
        ("aggregates", [f"extra:{ids[0]}", f"extra:{ids[3]}"]),
        ("control", [f"extra:{ids[1]}"]),
    ]
    assert {t.meta["group"] for t in tilesets} == {"extra:new/field_0"}
    assert extra_labels.counts(tilesets, CLASSES) == {"aggregates": 2, "control": 1}
    whole = tiling.tile_sample(Sample("x", (path,), "", "x"), prepare)
    assert (tilesets[1].tiles[0] == whole.tiles[1]).all()  # the very pixels the prediction set's tile had


def test_sheet_errors_name_the_sheet_the_line_and_the_problem(tmp_path, field):
    path, ids, prepare = field
    row = {"tile": ids[0], "image": "new/field_0", "files": path}
    sheet = write_sheet(tmp_path / "a.tsv", [{**row, "class": "control"}, {**row, "class": "mitosis"}])
    with pytest.raises(
        InputError,
        match=r"a\.tsv, line 3: class 'mitosis' is not a class of the experiment "
        r"\(aggregates, control\)",
    ):
        extra_labels.read_sheet(sheet, CLASSES)
    write_sheet(sheet, [{**row, "class": "control"}, {**row, "class": "aggregates"}])
    with pytest.raises(InputError, match=rf"line 3: tile {ids[0]} is labelled again \(first on line 2\)"):
        extra_labels.read_sheet(sheet, CLASSES)
    pd.DataFrame({"tile": [ids[0]], "class": ["control"]}).to_csv(sheet, sep="\t", index=False)
    with pytest.raises(InputError, match="no column image, files"):
        extra_labels.read_sheet(sheet, CLASSES)
    write_sheet(sheet, [{**row, "tile": "new/field_0@3,5", "class": "control"}])
    with pytest.raises(InputError, match=r"image new/field_0 .*: no tile new/field_0@3,5 among its \d+ tiles"):
        extra_labels.tile_extra(extra_labels.read_sheet(sheet, CLASSES), prepare, sheet=sheet, dataset="d")


def test_an_image_of_the_dataset_itself_is_refused(tmp_path):
    """Its cells are labelled already and may be on the test side: training on them again would leak."""
    tiny = {"demo": {"pattern": "aggregates", "fields_per_class": 2}}
    sample = next(iter(make_plan({"datasets": {"tiny": tiny}}).datasets["tiny"].samples.values()))
    # The same file, named absolute where the dataset names it relative to the working directory.
    write_sheet(
        tmp_path / "sheet.tsv",
        [
            {
                "tile": f"{sample.id}@0,0",
                "image": "new_name",
                "files": os.path.abspath(sample.files[0]),
                "class": "control",
            }
        ],
    )
    with pytest.raises(InputError, match=rf"image new_name .* is image {sample.id} of dataset tiny"):
        make_plan({"datasets": {"tiny": {**tiny, "extra_labels": "sheet.tsv"}}}, base_dir=tmp_path)


def test_extra_labels_name_an_existing_sheet_of_a_trained_dataset(tmp_path):
    demo = {"demo": {"pattern": "aggregates"}}
    with pytest.raises(InputError, match=r"datasets\.d\.extra_labels: label-next sheet .*missing\.tsv does not exist"):
        make_plan({"datasets": {"d": {**demo, "extra_labels": "missing.tsv"}}}, base_dir=tmp_path)
    write_sheet(tmp_path / "s.tsv", [])
    with pytest.raises(InputError, match=r"datasets\.t\.extra_labels: a test_only dataset trains nothing"):
        make_plan(
            {"datasets": {"d": demo, "t": {**demo, "test_only": True, "extra_labels": "s.tsv"}}}, base_dir=tmp_path
        )
    (tmp_path / "results/predict/new").mkdir(parents=True)
    write_sheet(tmp_path / "results/predict/new/label_next.tsv", [])
    with pytest.raises(InputError, match=r"label_next\.tsv is in results/, which the next run rewrites; copy"):
        make_plan(
            {"datasets": {"d": {**demo, "extra_labels": "results/predict/new/label_next.tsv"}}}, base_dir=tmp_path
        )
    plan = make_plan({"datasets": {"d": {**demo, "extra_labels": "s.tsv"}}}, base_dir=tmp_path)
    assert plan.extra_tile_files("d") == []  # nothing filled in: nothing extra to make


def test_the_findings_count_the_extra_cells_and_check_no_test_side_holds_one():
    from cellclass.evaluate.findings import extra_labelled

    runs = pd.DataFrame(
        {
            "experiment": ["e", "e", "plain"],
            "extra_tiles": [{"aggregates": 4, "control": 2}] * 2 + [{"aggregates": 0, "control": 0}],
            "extra_labels": [["labels/round1.tsv"]] * 2 + [[]],
        }
    )
    predictions = pd.DataFrame({"experiment": ["e"] * 3 + ["plain"], "sample": ["a/1", "c/2", "c/3", "a/1"]})
    assert extra_labelled(runs, predictions) == [
        (
            "e: 6 extra labelled tiles (aggregates 4, control 2; sheet labels/round1.tsv) trained in every one of "
            "its 2 run(s); none is in any test side (3 test tiles checked)"
        )
    ]
    leaked = predictions.assign(sample=["a/1", "extra:c/2", "c/3", "a/1"])
    assert "1 of the test sides' tiles are extra ones" in extra_labelled(runs, leaked)[0]
    assert extra_labelled(runs.drop(columns=["extra_tiles", "extra_labels"]), predictions) == []


def test_a_predicted_image_with_extra_labelled_cells_is_scored_by_no_run_that_trained_on_them(tmp_path):
    """Every run trains on the extra cells (no fold tests them), so like a training image of the dataset their
    image is not scored when a prediction set holds it again; the set's other images are scored by every run."""
    from test_plan import TRAIN, write_class_folder

    write_class_folder(tmp_path / "data")
    new = write_class_folder(tmp_path / "new", per_class=2)
    labelled = new / "control" / "control_0.tif"
    write_sheet(
        tmp_path / "sheet.tsv",
        [{"tile": "x@0,0", "image": "control/control_0", "files": str(labelled), "class": "control"}],
    )
    config = {
        "train": TRAIN,
        "split": {"folds": 2},
        "datasets": {"mine": {"path": "data", "extra_labels": "sheet.tsv"}},
        "predict": {"again": {"path": str(new), "experiment": "mine"}},
    }
    again = make_plan(config, base_dir=tmp_path).predictions["again"]
    sid = next(s.id for s in again.samples.values() if os.path.samefile(s.files[0], labelled))
    assert list(again.scoring) == [sid]  # the other three images no run has seen: every run scores them
    assert again.scoring[sid]["members"] == []
    assert again.scoring[sid]["scored_by"].startswith("not scored: every run trained on ")
    assert "extra_labels" in again.scoring[sid]["scored_by"]
