"""Nuclei and cell segmentation: scored against the demo's ground truth, and on hand-made images with known answers."""

from functools import cache

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import filters
from skimage.segmentation import clear_border

from cellclass.config import validate
from cellclass.demo import synthetic as demo
from cellclass.io.errors import InputError
from cellclass.prepare import segment
from cellclass.prepare.crops import segment_options
from cellclass.prepare.foreground import foreground_mask, smooth, threshold_otsu
from cellclass.prepare.normalise import normalise

# The workflow's defaults (config schema), with cells grown in the demo's protein channel.
_DEMO = {"datasets": {"d": {"demo": {"pattern": "aggregates"}, "prepare": {"nuclei": {"cell_channel": 0}}}}}
NUCLEI, CELLS = segment_options(validate(_DEMO)["datasets"]["d"]["prepare"]["nuclei"])


@cache
def demo_field(pattern, cls):
    """A small demo field (25 cells on 512 px), normalised as the workflow does, with its truth."""
    field = demo.render_field(pattern, cls, seed=0, index=0, size=512, cells_per_field=25)
    return normalise(np.moveaxis(field.image, 0, -1), method="percentile"), field


@cache
def found_nuclei(pattern, cls):
    image, _ = demo_field(pattern, cls)
    return segment.segment_nuclei(image, **NUCLEI)


def nuclei_scores(pattern):
    """Nuclei of both classes of a pattern matched to the truth, pooled; truth at the border left out."""
    return pooled(
        segment.match(clear_border(demo_field(pattern, cls)[1].nucleus_labels), found_nuclei(pattern, cls))
        for cls in demo.CLASSES
    )


def cell_scores(pattern):
    """Grown cells of both classes of a pattern matched to the cells whose nuclei are not at the border."""
    matches = []
    for cls in demo.CLASSES:
        image, truth = demo_field(pattern, cls)
        kept = clear_border(truth.nucleus_labels)  # border nuclei are dropped by design, and with them their cells
        true_cells = np.where(np.isin(truth.cell_labels, kept[kept > 0]), truth.cell_labels, 0)
        matches.append(segment.match(true_cells, segment.grow_cells(found_nuclei(pattern, cls), image, **CELLS)))
    return pooled(matches)


def pooled(matches):
    matches = list(matches)
    tp, fp, fn = (sum(m[k] for m in matches) for k in ("true_positives", "false_positives", "false_negatives"))
    iou = sum(m["mean_iou"] * m["true_positives"] for m in matches if m["true_positives"]) / max(tp, 1)
    return {"precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1), "mean_iou": iou, "objects": tp + fn}


def one_channel_field(nuclei, *, noise=0.01, seed=0):
    """A (Y, X, 2) field whose nuclear channel (1) is 0.8 on `nuclei` over faint noise; channel 0 is blank."""
    rng = np.random.default_rng(seed)
    field = np.zeros((*nuclei.shape, 2), np.float32)
    field[..., 1] = 0.1 + 0.8 * (nuclei > 0) + rng.normal(0, noise, nuclei.shape)
    return np.clip(field, 0, 1)


def discs(shape, *centres_radii):
    """Boolean image of discs given as (cy, cx, r)."""
    yy, xx = np.indices(shape)
    return np.any([(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2 for cy, cx, r in centres_radii], axis=0)


@pytest.mark.parametrize("pattern", demo.PATTERNS)
def test_demo_nuclei_are_found_with_their_true_outlines(pattern):
    nuclei = nuclei_scores(pattern)
    # Measured: precision and recall 0.98-1.0 and mean IoU 0.90-0.91 over about 45 nuclei.
    assert nuclei["objects"] >= 40
    assert nuclei["recall"] >= 0.9 and nuclei["precision"] >= 0.9
    assert nuclei["mean_iou"] >= 0.85


@pytest.mark.parametrize("pattern", demo.PATTERNS)
def test_cells_grown_from_the_nuclei_match_the_demo_cells(pattern):
    cells = cell_scores(pattern)
    # Measured: precision and recall 1.0 and mean IoU 0.95; nuclei mistaken for cells would score near 0.
    assert cells["recall"] >= 0.9 and cells["precision"] >= 0.9
    assert cells["mean_iou"] >= 0.85


def test_a_grown_cell_keeps_its_nucleus_label_and_all_its_pixels():
    image, _ = demo_field("aggregates", "aggregates")
    nuclei = segment.segment_nuclei(image, **NUCLEI)
    cells = segment.grow_cells(nuclei, image, **CELLS)
    assert cells.dtype == np.int32 and cells.shape == nuclei.shape
    assert np.array_equal(cells[nuclei > 0], nuclei[nuclei > 0])
    assert set(np.unique(cells)) == set(np.unique(nuclei))
    assert (cells > 0).sum() > 3 * (nuclei > 0).sum()


def test_labels_are_consecutive_int32():
    image, _ = demo_field("subtle", "control")
    nuclei = segment.segment_nuclei(image, **NUCLEI)
    assert nuclei.dtype == np.int32 and nuclei.shape == image.shape[:2]
    assert np.array_equal(np.unique(nuclei), np.arange(nuclei.max() + 1))


def test_camera_noise_and_a_constant_image_hold_no_objects():
    rng = np.random.default_rng(1)
    electrons = rng.poisson(8.0, (256, 256, 2)) + rng.normal(0, 1.6, (256, 256, 2))
    noise = normalise(100 + 2.0 * electrons, method="percentile")
    constant = np.full((256, 256, 2), 0.5, np.float32)
    for field in (noise, constant):
        nuclei = segment.segment_nuclei(field, **NUCLEI)
        assert nuclei.dtype == np.int32 and nuclei.max() == 0
        assert segment.grow_cells(nuclei, field, **CELLS).max() == 0


def test_nuclei_touching_the_border_are_dropped_unless_asked_to_keep_them():
    field = one_channel_field(discs((128, 128), (64, 64, 10), (5, 64, 10), (64, 122, 8)))
    assert segment.segment_nuclei(field, **NUCLEI).max() == 1
    kept = segment.segment_nuclei(field, **{**NUCLEI, "exclude_border": False})
    assert kept.max() == 3


def test_touching_nuclei_are_split_by_the_watershed():
    touching = discs((128, 128), (64, 48, 14), (64, 74, 14))  # a neck of ~14 px between two 28-px discs
    labels = segment.segment_nuclei(one_channel_field(touching), **NUCLEI)
    assert labels.max() == 2
    # Each half of the pair is one object, cut near the middle.
    assert labels[64, 48] != labels[64, 74] and 0 not in (labels[64, 48], labels[64, 74])
    left, right = np.bincount(labels.ravel())[1:]
    assert abs(int(left) - int(right)) < 0.1 * (left + right)
    # A small nucleus against a large one is split off too.
    unequal = segment.segment_nuclei(one_channel_field(discs((128, 128), (64, 54, 14), (64, 73, 7))), **NUCLEI)
    assert unequal.max() == 2
    # An elongated nucleus, as long as the pair but without a neck, stays whole.
    yy, xx = np.indices((128, 128))
    ellipse = ((yy - 64) / 10) ** 2 + ((xx - 61) / 26) ** 2 <= 1
    assert segment.segment_nuclei(one_channel_field(ellipse), **NUCLEI).max() == 1


def test_nuclei_needing_no_split_are_their_connected_components():
    # Only components with two distance peaks go through the watershed; the demo's nuclei touch none,
    # so every nucleus found is a connected component of the filled foreground, border and area filtered.
    for pattern in demo.PATTERNS:
        image, _ = demo_field(pattern, "control")
        mask = segment.fill_holes(foreground_mask(image, **NUCLEI))
        plain = segment.keep_objects(ndi.label(mask)[0], min_area=NUCLEI["min_area"], max_area=NUCLEI["max_area"])
        assert np.array_equal(segment.segment_nuclei(image, **NUCLEI), plain)


def test_fast_smoothing_and_otsu_agree_with_scipy_and_skimage():
    image = np.random.default_rng(3).random((97, 131), np.float32) ** 3
    assert np.allclose(smooth(image, 1.5), ndi.gaussian_filter(image, 1.5), atol=1e-6)
    assert abs(threshold_otsu(image) - filters.threshold_otsu(image)) < 1e-6


def test_a_nucleus_with_a_dark_nucleolus_is_one_solid_object():
    shape = (96, 96)
    ring = discs(shape, (48, 48, 16)) & ~discs(shape, (48, 48, 5))
    labels = segment.segment_nuclei(one_channel_field(ring), **NUCLEI)
    assert labels.max() == 1 and labels[48, 48] == 1


def test_a_blob_inside_a_ring_nucleus_is_part_of_it():
    # Holes are filled in each component's own window; what lies in a hole still joins the nucleus around it.
    shape = (96, 96)
    ring = discs(shape, (48, 48, 18)) & ~discs(shape, (48, 48, 10))
    labels = segment.segment_nuclei(one_channel_field(ring | discs(shape, (48, 48, 4))), **NUCLEI)
    assert labels.max() == 1 and labels[48, 48] == labels[48, 55] == labels[48, 62] == 1


def test_fill_holes_agrees_with_scipy():
    rng = np.random.default_rng(2)
    for fraction in (0.3, 0.5, 0.7):
        mask = rng.random((64, 80)) < fraction
        assert np.array_equal(segment.fill_holes(mask), ndi.binary_fill_holes(mask))


def test_area_filters_drop_a_tiny_and_a_huge_object():
    shape = (256, 256)
    field = one_channel_field(discs(shape, (60, 60, 12), (60, 180, 2), (180, 128, 40)))
    labels = segment.segment_nuclei(field, **{**NUCLEI, "min_area": 30, "max_area": 2000})
    assert labels.max() == 1 and labels[60, 60] == 1
    both = segment.segment_nuclei(field, **{**NUCLEI, "min_area": 1, "max_area": 10**6})
    assert both.max() == 3


def test_an_out_of_range_channel_or_unknown_method_is_named():
    field = one_channel_field(discs((64, 64), (32, 32, 8)))
    with pytest.raises(InputError, match=r"channel 5 .* 2 channel"):
        segment.segment_nuclei(field, **{**NUCLEI, "channel": 5})
    nuclei = segment.segment_nuclei(field, **NUCLEI)
    with pytest.raises(InputError, match=r"channel 3 .* 2 channel"):
        segment.grow_cells(nuclei, field, **{**CELLS, "channel": 3})
    with pytest.raises(InputError, match=r"channel -1 .* 2 channel"):
        segment.segment_nuclei(field, **{**NUCLEI, "channel": -1})
    with pytest.raises(InputError, match="Y, X, C"):
        segment.segment_nuclei(field[..., 1], **NUCLEI)
    with pytest.raises(InputError, match="'mean'"):
        segment.segment_nuclei(field, **{**NUCLEI, "method": "mean"})


def test_match_counts_a_three_way_split_and_a_merge_as_misses():
    truth = np.zeros((20, 40), int)
    truth[2:8, 2:8] = 1  # found exactly
    truth[2:8, 12:21] = 2  # found split in three
    truth[12:18, 2:8] = 3  # found merged with 4 into one object
    truth[12:18, 10:16] = 4
    found = np.zeros_like(truth)
    found[2:8, 2:8] = 7
    found[2:8, 12:15], found[2:8, 15:18], found[2:8, 18:21] = 3, 4, 5
    found[12:18, 2:16] = 9
    found[12:18, 30:36] = 2  # nothing there
    m = segment.match(truth, found)
    assert (m["true_positives"], m["false_positives"], m["false_negatives"]) == (1, 5, 3)
    assert m["precision"] == pytest.approx(1 / 6) and m["recall"] == pytest.approx(1 / 4)
    assert m["f1"] == pytest.approx(2 / 10) and m["mean_iou"] == 1.0
    # A split in two keeps a match: the larger half covers at least half the nucleus.
    halves = found.copy()
    halves[2:8, 15:21] = 4
    assert segment.match(truth, halves)["true_positives"] == 2


def test_match_iou_threshold_and_mean_iou():
    truth = np.zeros((10, 10), int)
    truth[0:4, 0:4] = 1  # 16 px
    found = np.zeros_like(truth)
    found[0:4, 0:3] = 1  # 12 px inside it: IoU 0.75
    assert segment.match(truth, found)["mean_iou"] == pytest.approx(0.75)
    assert segment.match(truth, found, threshold=0.8)["true_positives"] == 0
    # Below 0.5 one object may pass the threshold with two others; it still matches one, the best.
    halves = np.zeros_like(truth)
    halves[0:4, 0:2], halves[0:4, 2:4] = 1, 2
    wider = halves.copy()
    wider[0:4, 4] = 2
    m = segment.match(truth, wider, threshold=0.3)
    assert (m["true_positives"], m["false_positives"], m["false_negatives"]) == (1, 1, 0)
    assert m["mean_iou"] == pytest.approx(0.5)


def test_match_on_empty_images():
    empty = np.zeros((8, 8), int)
    one = empty.copy()
    one[2:5, 2:5] = 4
    nothing = segment.match(empty, empty)
    assert (nothing["precision"], nothing["recall"], nothing["f1"]) == (1.0, 1.0, 1.0)
    assert np.isnan(nothing["mean_iou"])
    missed = segment.match(one, empty)
    assert (missed["false_negatives"], missed["recall"], missed["precision"], missed["f1"]) == (1, 0.0, 1.0, 0.0)
    made_up = segment.match(empty, one)
    assert (made_up["false_positives"], made_up["recall"], made_up["precision"], made_up["f1"]) == (1, 1.0, 0.0, 0.0)
    with pytest.raises(InputError, match="shape"):
        segment.match(empty, np.zeros((8, 9), int))
    with pytest.raises(InputError, match="found: need a 2-D label image"):
        segment.match(empty, empty - 1)


def test_outlines_are_the_inner_edge_of_each_object():
    labels = np.zeros((9, 9), int)
    labels[2:7, 2:7] = 3
    edge = segment.outlines(labels)
    assert edge.dtype == bool
    assert edge.sum() == 16 and edge[2, 2] and not edge[4, 4] and not edge[1, 1]
