"""The synthetic demo fields: determinism, ground truth, visible vs subtle patterns, files on disk."""

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from cellclass.demo import synthetic as demo
from cellclass.io.errors import InputError

SMALL = {"size": 256, "cells_per_field": 8}


def render(pattern="aggregates", cls="aggregates", seed=0, index=0, **kwargs):
    return demo.render_field(pattern, cls, seed=seed, index=index, **{**SMALL, **kwargs})


def test_same_arguments_give_identical_fields_and_others_differ():
    first, again = render(), render()
    for name in ("image", "puncta_mask", "cell_labels", "nucleus_labels"):
        assert np.array_equal(getattr(first, name), getattr(again, name))
    for other in (render(seed=1), render(index=1), render(cls="control"), render(pattern="subtle")):
        assert not np.array_equal(first.image, other.image)


def test_dtypes_shapes_and_one_channel():
    field = render()
    assert field.image.dtype == np.uint16 and field.image.shape == (2, 256, 256)
    assert field.puncta_mask.dtype == np.uint8 and field.puncta_mask.shape == (256, 256)
    assert field.cell_labels.dtype == np.uint16 and field.cell_labels.shape == (256, 256)
    assert set(np.unique(field.cell_labels)) == set(range(9))
    assert field.nucleus_labels.dtype == np.uint16 and field.nucleus_labels.shape == (256, 256)
    one = render(channels=1)
    assert one.image.shape == (1, 256, 256)
    assert np.array_equal(one.image[0], field.image[0])


@pytest.mark.parametrize("pattern", demo.PATTERNS)
def test_puncta_masks_are_empty_for_control_and_inside_cytoplasm_for_aggregates(pattern):
    assert not render(pattern, "control").puncta_mask.any()
    field = render(pattern, "aggregates")
    mask = field.puncta_mask.astype(bool)
    assert set(np.unique(field.puncta_mask)) == {0, 1}
    assert (field.cell_labels[mask] > 0).all()
    # Nuclei are where the nuclear stain is bright; puncta keep out of them.
    nuclear = field.image[1]
    nuclei = nuclear > threshold_otsu(nuclear)
    assert (nuclei & mask).sum() <= 0.01 * mask.sum()
    assert np.median(nuclear[mask]) < 0.5 * np.median(nuclear[nuclei])


@pytest.mark.parametrize("pattern", demo.PATTERNS)
def test_each_cell_has_one_nucleus_inside_it_where_the_nuclear_stain_is_bright(pattern):
    field = render(pattern, "control")
    cells, nuclei = field.cell_labels, field.nucleus_labels
    assert set(np.unique(nuclei)) == set(np.unique(cells))
    inside = nuclei > 0
    assert np.array_equal(nuclei[inside], cells[inside])
    # A nucleus is a good part of its cell, well short of all of it.
    share = np.bincount(nuclei.ravel(), minlength=9)[1:] / np.bincount(cells.ravel(), minlength=9)[1:]
    assert (share > 0.05).all() and (share < 0.5).all()
    nuclear = field.image[1].astype(float) - 100  # camera offset removed
    assert np.median(nuclear[inside]) > 5 * np.median(nuclear[(cells > 0) & ~inside])


def test_default_size_cells_fit_a_64_pixel_tile():
    labels = demo.render_field("aggregates", "control", seed=0, index=0).cell_labels
    areas = np.bincount(labels.ravel())[1:]
    assert len(areas) >= 30
    assert 16**2 * np.pi * 0.5 < np.median(areas) < 28**2 * np.pi


def contrast(pattern, cls):
    """Mean over cells of each cell's 99.5th-percentile over its median, offset removed."""
    ratios = []
    for index in range(3):
        field = render(pattern, cls, index=index)
        signal = field.image[0].astype(float) - 100
        inner = ndi.binary_erosion(field.cell_labels > 0, iterations=3)
        for label in range(1, field.cell_labels.max() + 1):
            pixels = signal[(field.cell_labels == label) & inner]
            if pixels.size > 200:
                ratios.append(np.percentile(pixels, 99.5) / np.median(pixels))
    return np.mean(ratios)


def test_aggregates_stand_out_while_the_subtle_pattern_barely_differs():
    obvious = contrast("aggregates", "aggregates") - contrast("aggregates", "control")
    subtle = contrast("subtle", "aggregates") - contrast("subtle", "control")
    assert obvious > 1.5
    assert abs(subtle) < 0.25 * obvious


def test_camera_noise_and_offset_on_the_background():
    field = render(cls="control")
    background = field.image[0][ndi.binary_dilation(field.cell_labels > 0, iterations=10) == 0]
    assert background.std() > 2
    assert 100 <= background.mean() < 140


def test_write_dataset_writes_readable_files_named_as_planned(tmp_path):
    paths = demo.write_dataset(tmp_path, "subtle", fields_per_class=2, seed=5, size=128, cells_per_field=3)
    names = demo.field_names(2)
    assert names == [
        ("control", "field_000"),
        ("control", "field_001"),
        ("aggregates", "field_000"),
        ("aggregates", "field_001"),
    ]
    assert paths == [tmp_path / "images" / cls / f"{stem}.tif" for cls, stem in names]
    for cls, stem in names:
        with tifffile.TiffFile(tmp_path / "images" / cls / f"{stem}.tif") as tif:
            assert tif.is_imagej and tif.series[0].axes == "CYX"
            image = tif.asarray()
        field = demo.render_field("subtle", cls, seed=5, index=int(stem[-3:]), size=128, cells_per_field=3)
        assert np.array_equal(image, field.image)
        assert np.array_equal(tifffile.imread(tmp_path / "masks" / cls / f"{stem}.tif"), field.puncta_mask)
        assert np.array_equal(tifffile.imread(tmp_path / "cells" / cls / f"{stem}.tif"), field.cell_labels)
        assert np.array_equal(tifffile.imread(tmp_path / "nuclei" / cls / f"{stem}.tif"), field.nucleus_labels)
    assert not list(tmp_path.rglob(".*")), "temporary files left behind"
    demo.write_dataset(tmp_path / "again", "subtle", fields_per_class=2, seed=5, size=128, cells_per_field=3)
    for path in (tmp_path / "images").rglob("*.tif"):
        again = tmp_path / "again" / path.relative_to(tmp_path)
        assert path.read_bytes() == again.read_bytes()


def test_one_channel_files_are_plain_planes(tmp_path):
    # ImageJ stores no channel axis of length one.
    path = demo.write_dataset(
        tmp_path, "aggregates", fields_per_class=1, seed=0, size=96, cells_per_field=2, channels=1
    )[0]
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "YX" and tif.asarray().dtype == np.uint16


def test_unknown_pattern_or_class_is_named():
    with pytest.raises(InputError, match="blobs"):
        demo.render_field("blobs", "control", seed=0, index=0)
    with pytest.raises(InputError, match="mutant"):
        demo.render_field("aggregates", "mutant", seed=0, index=0)
    with pytest.raises(InputError, match="blobs"):
        demo.write_dataset("unused", "blobs", fields_per_class=1, seed=0)


def test_a_demo_plates_unfamiliar_wells_get_striped_cells_with_their_nuclei_untouched(tmp_path):
    spec = {
        "name": "P",
        "rows": 1,
        "columns": 4,
        "controls": 1,
        "doses": [1.0],
        "replicates": 2,
        "ec50": 3.0,
        "hill": 1.0,
        "unit": "uM",
        "seed": 0,
        "size": 96,
        "cells_per_field": 4,
        "unfamiliar_wells": ["A04"],
    }
    written = {}
    for well in ("A03", "A04"):
        paths = [tmp_path / f"{well}_w{c}.tif" for c in (1, 2)]
        demo.write_plate_field(paths, well=well, spec=spec)
        written[well] = [tifffile.imread(p) for p in paths]
    row = demo.plate_map(spec).set_index("well").loc["A04"]
    field = demo.render_field(
        "aggregates",
        "aggregates",
        seed=0,
        index=int(row["line"]),
        size=96,
        cells_per_field=4,
        puncta_fraction=float(row["puncta_fraction"]),
    )
    protein, nuclei = written["A04"]
    assert np.array_equal(nuclei, field.image[1])  # nuclei are still found as in any other well
    changed = protein != field.image[0]
    assert changed.any() and not (changed & (field.cell_labels == 0)).any()  # bars inside cells only
    assert (protein.astype(int) - field.image[0])[changed].min() > 1000  # bright: about 3x the cytoplasm
