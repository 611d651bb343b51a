"""Single-cell crops (prepare.kind: nuclei): one window per nucleus, from our segmentation or a user's labels."""

import numpy as np
import pytest
import tifffile

from cellclass.config import validate
from cellclass.demo import synthetic as demo
from cellclass.io import tilestore
from cellclass.io.datasets import Sample, from_sheet
from cellclass.io.errors import InputError
from cellclass.prepare import crops, tiling

SIZE = 48


def settings(**nuclei):
    config = validate(
        {
            "prepare": {"kind": "nuclei", "tile_size": SIZE, "resize_to": 32, "nuclei": {"cell_channel": 0, **nuclei}},
            "datasets": {"d": {"demo": {"pattern": "aggregates"}}},
        }
    )
    return config["datasets"]["d"]["prepare"]


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """A demo field on disk with its ground-truth nuclei and cells."""
    root = tmp_path_factory.mktemp("field")
    demo.write_field(
        root / "image.tif",
        root / "puncta.tif",
        root / "cells.tif",
        root / "nuclei.tif",
        pattern="aggregates",
        cls="aggregates",
        stem="field_000",
        seed=1,
        size=256,
        cells_per_field=20,
    )
    return root


def test_a_crop_per_segmented_nucleus_centred_on_it_with_its_own_masks(field):
    tileset = tiling.tile_sample(Sample("f", (str(field / "image.tif"),), "aggregates", "f"), settings())
    truth = tifffile.imread(field / "nuclei.tif")
    assert tileset.meta["objects"] == "segmented" and tileset.meta["compartments"] == crops.WITH_CELLS
    assert 5 <= len(tileset) <= len(np.unique(truth)) - 1
    assert tileset.tiles.shape[1:] == (32, 32, 2)
    assert tileset.tile_ids()[0] == f"f@cell{tileset.extra['label'][0]}"
    # Each window is centred on its nucleus's centroid: rows/cols are the window's top-left corner.
    assert np.allclose(tileset.rows + SIZE // 2, tileset.extra["centroid_y"], atol=0.5)
    assert np.allclose(tileset.cols + SIZE // 2, tileset.extra["centroid_x"], atol=0.5)
    codes = np.asarray(tileset.extra["compartments"])
    nucleus, cytoplasm = crops.compartment_mask(codes, "nucleus"), crops.compartment_mask(codes, "cytoplasm")
    assert nucleus[:, 16, 16].all()  # the crop's own nucleus is at its centre
    assert nucleus.any(axis=(1, 2)).all() and not (nucleus & cytoplasm).any()
    assert cytoplasm.any(axis=(1, 2)).mean() > 0.8  # a grown cell can stay at its nucleus where its protein is dim
    assert (crops.compartment_mask(codes, "cell") == (nucleus | cytoplasm)).all()
    # The nuclear stain is bright inside the nucleus mask, the protein channel is not.
    tiles = np.asarray(tileset.tiles, np.float32)
    assert tiles[..., 1][nucleus].mean() > 2 * tiles[..., 1][cytoplasm].mean()


def test_nuclei_touching_the_border_are_dropped_or_cropped_with_zero_beyond_the_field(field):
    sample = Sample("f", (str(field / "image.tif"),), "aggregates", "f")
    inner = tiling.tile_sample(sample, settings())
    every = tiling.tile_sample(sample, settings(exclude_border=False))
    assert len(every) > len(inner)
    labels = np.asarray(every.extra["label"])
    nuclei = crops.find_objects(
        sample, tiling.load_field(sample, settings())[0], settings(exclude_border=False)["nuclei"]
    )[0]
    on_border = set(np.unique(np.concatenate([nuclei[0], nuclei[-1], nuclei[:, 0], nuclei[:, -1]]))) - {0}
    assert on_border and on_border <= set(labels)
    outside = (every.rows < 0) | (every.cols < 0) | (every.rows + SIZE > 256) | (every.cols + SIZE > 256)
    assert outside.any()
    i = int(np.flatnonzero(every.rows < 0)[0]) if (every.rows < 0).any() else int(np.flatnonzero(every.cols < 0)[0])
    tile = np.asarray(every.tiles[i], np.float32)
    edge = tile[0] if every.rows[i] < 0 else tile[:, 0]
    assert (edge == 0).all()  # nothing is invented beyond the field


def test_a_field_without_nuclei_gives_no_crops_and_says_why(tmp_path):
    rng = np.random.default_rng(0)
    tifffile.imwrite(
        tmp_path / "blank.tif",
        rng.normal(300, 5, (2, 128, 128)).astype(np.uint16),
        imagej=True,
        metadata={"axes": "CYX"},
    )
    tileset = tiling.tile_sample(Sample("blank", (str(tmp_path / "blank.tif"),), "control", "blank"), settings())
    assert len(tileset) == 0 and tilestore.empty_reason(tileset) == tilestore.NO_CELLS
    tilestore.save(tmp_path / "shard.npz", [tileset])  # an empty crop set still stores and loads
    assert len(tilestore.load(tmp_path / "shard.npz")[0]) == 0


def test_user_labels_give_a_crop_per_label_and_cells_follow_their_nucleus(field):
    sample = Sample(
        "f",
        (str(field / "image.tif"),),
        "aggregates",
        "f",
        labels=str(field / "nuclei.tif"),
        cell_labels=str(field / "cells.tif"),
    )
    tileset = tiling.tile_sample(sample, settings())
    truth = tifffile.imread(field / "nuclei.tif")
    assert tileset.meta["objects"] == "user labels"
    assert tileset.meta["label_files"] == [str(field / "nuclei.tif"), str(field / "cells.tif")]
    assert sorted(tileset.extra["label"]) == sorted(set(np.unique(truth)) - {0})  # every label, none of ours
    cytoplasm = crops.compartment_mask(tileset.extra["compartments"], "cytoplasm")
    assert cytoplasm.any(axis=(1, 2)).mean() > 0.9


def test_cells_are_matched_to_the_nucleus_they_overlap_most():
    nuclei = np.zeros((10, 10), np.int32)
    nuclei[1:3, 1:3], nuclei[6:8, 6:8] = 1, 2
    cells = np.zeros((10, 10), np.int32)
    cells[0:5, 0:5] = 7  # nucleus 1's cell
    cells[5:10, 5:10] = 3  # nucleus 2's cell
    cells[7, 7] = 9  # a sliver of another cell inside nucleus 2
    cells[0, 9] = 4  # a cell with no nucleus
    aligned = crops.cells_of_nuclei(nuclei, cells)
    assert (aligned[0:5, 0:5] == 1).all() and aligned[5, 5] == 2 and aligned[7, 7] == 2 and aligned[0, 9] == 0


def test_a_label_image_of_another_shape_names_both_files(field, tmp_path):
    tifffile.imwrite(tmp_path / "small.tif", np.zeros((100, 120), np.uint16))
    sample = Sample("f", (str(field / "image.tif"),), "aggregates", "f", labels=str(tmp_path / "small.tif"))
    with pytest.raises(InputError, match=r"small\.tif is 100x120 px but its field .*image\.tif is 256x256 px"):
        tiling.tile_sample(sample, settings())
    tifffile.imwrite(tmp_path / "float.tif", np.zeros((256, 256), np.float32))
    with pytest.raises(InputError, match=r"float\.tif: float32 pixels"):
        tiling.tile_sample(
            Sample("f", (str(field / "image.tif"),), "a", "f", labels=str(tmp_path / "float.tif")), settings()
        )


def test_sheet_label_columns_are_checked(field, tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("a", "b"):
        (tmp_path / "images" / f"{name}.tif").write_bytes((field / "image.tif").read_bytes())
    (tmp_path / "a_nuclei.tif").write_bytes((field / "nuclei.tif").read_bytes())
    sheet = tmp_path / "sheet.tsv"
    sheet.write_text("path\tclass\tlabels\nimages/a.tif\tx\ta_nuclei.tif\nimages/b.tif\ty\t\n")
    a, b = from_sheet(sheet)
    assert a.labels == str(tmp_path / "a_nuclei.tif") and b.labels == "" and a.inputs()[-1] == a.labels
    sheet.write_text("path\tclass\tlabels\nimages/a.tif\tx\tmissing.tif\nimages/b.tif\ty\t\n")
    with pytest.raises(InputError, match=r"line 2, column labels: file .*missing\.tif does not exist"):
        from_sheet(sheet)
    sheet.write_text("path\tclass\tcell_labels\nimages/a.tif\tx\ta_nuclei.tif\nimages/b.tif\ty\t\n")
    with pytest.raises(InputError, match="cell_labels without labels"):
        from_sheet(sheet)


@pytest.mark.parametrize(
    ("dataset", "masks", "message"),
    [
        ({"demo": {"pattern": "aggregates"}}, ["nucleus"], "needs single-cell crops"),
        ({"demo": {"pattern": "aggregates"}, "prepare": {"kind": "nuclei"}}, ["cytoplasm"], "need cells"),
        ({"path": "."}, ["ground_truth"], "not a demo"),
    ],
)
def test_attribution_masks_the_dataset_cannot_give_are_config_errors(dataset, masks, message, tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / "x.tif").write_bytes(b"")
    dataset = {**dataset, "path": str(tmp_path)} if "path" in dataset else dataset
    with pytest.raises(InputError, match=message):
        validate({"datasets": {"d": dataset}, "attribution": {"masks": masks}})


def test_the_contact_sheet_draws_each_crops_outlines(field, tmp_path):
    from PIL import Image

    from cellclass.io import contact_sheet

    tileset = tiling.tile_sample(Sample("f", (str(field / "image.tif"),), "aggregates", "f"), settings())
    tiling.write_shard([tileset], tmp_path / "shard.npz", tmp_path / "shard.png", dataset="d")
    outlined = (np.asarray(Image.open(tmp_path / "shard.png")) == contact_sheet.OUTLINE).all(axis=-1)
    assert outlined.sum() > 20 * len(tileset)  # a nucleus and a cell outline around every crop
    grid = tmp_path / "grid.png"
    contact_sheet.render(np.asarray(tileset.tiles), grid)
    assert not (np.asarray(Image.open(grid)) == contact_sheet.OUTLINE).all(axis=-1).any()


def test_the_demo_segmentation_check_scores_each_field_and_pools_them(field, tmp_path):
    import pandas as pd

    from cellclass.demo import segment_check

    samples = [Sample(f"f{i}", (str(field / "image.tif"),), "aggregates", f"f{i}") for i in range(2)]
    truth = {s.id: (str(field / "nuclei.tif"), str(field / "cells.tif")) for s in samples}
    segment_check.write_check(samples, settings(), truth, tmp_path / "segmentation.tsv")
    table = pd.read_csv(tmp_path / "segmentation.tsv", sep="\t").set_index(["sample", "objects"])
    assert set(table.index) == {(s, o) for s in ("f0", "f1", "all") for o in ("nuclei", "cells")}
    pooled = table.loc["all"]
    assert (pooled["true_positives"] == 2 * table.loc["f0", "true_positives"]).all()
    assert (pooled["precision"] >= 0.9).all() and (pooled["recall"] >= 0.9).all() and (pooled["mean_iou"] > 0.8).all()
