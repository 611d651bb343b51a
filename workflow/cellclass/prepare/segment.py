"""Nuclei and cells as label images: segment nuclei, grow cells from them, score against ground truth.

A label image is (Y, X) int32: 0 is background, objects are 1..n. Nuclei come
from the nuclear stain's foreground, split where they touch by a watershed on
the distance to the background; cells grow from the nuclei over the cytoplasm
channel's foreground, so a cell and its nucleus share a label.
"""

import numpy as np
from scipy import ndimage as ndi
from scipy import optimize
from skimage import feature, metrics, segmentation

from cellclass.io.errors import InputError
from cellclass.prepare.foreground import THRESHOLDS, foreground_mask

def segment_nuclei(
    field, *, channel, method, smooth_sigma, min_contrast, min_area, max_area, min_distance, exclude_border=True
):
    """Label the nuclei of a normalised (Y, X, C) field; labels 1..n, none for a field without cells."""
    _check_field(field, channel, method)
    mask = foreground_mask(field, method=method, channel=channel, smooth_sigma=smooth_sigma, min_contrast=min_contrast)
    labels = split_touching(fill_holes(mask), min_distance=min_distance)
    if exclude_border:
        labels = segmentation.clear_border(labels)
    return filter_area(labels, min_area=min_area, max_area=max_area)


def fill_holes(mask):
    """The mask with every background region that does not reach the image edge filled (a nucleolus, say).

    Gives what ndi.binary_fill_holes gives, about three times faster: one labelling of the background.
    """
    background, n = ndi.label(~mask)
    outside = np.zeros(n + 1, bool)
    for edge in (background[0], background[-1], background[:, 0], background[:, -1]):
        outside[edge] = True
    outside[0] = False  # label 0 is the mask itself
    return mask | ~outside[background]


def split_touching(mask, *, min_distance):
    """Label a boolean mask, splitting touching round objects at the necks of their distance transform."""
    components, n = ndi.label(mask)
    if n == 0:
        return components.astype(np.int32)
    distance, deepest = _distance_inside(components)
    # One search over the field, not one per component (5x faster); distance is 0 between objects.
    peaks = feature.peak_local_max(distance, min_distance=min_distance, exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # A component left without a peak (flat, or overshadowed by a deeper neighbour closer than
    # min_distance) gets one marker at its deepest pixel.
    unmarked = np.setdiff1d(np.arange(1, n + 1), components[markers > 0])
    markers[tuple(deepest[unmarked - 1].T)] = np.arange(len(peaks) + 1, len(peaks) + 1 + unmarked.size)
    return segmentation.watershed(-distance, markers, mask=mask).astype(np.int32)


def _distance_inside(components):
    """Distance of each object pixel to the nearest pixel outside its object, and each object's deepest pixel.

    Object by object: the same as a distance transform of the whole mask (up to objects touching only
    diagonally) and over ten times faster, as objects are a small part of a field. The distance is
    smoothed (sigma 1 px): on a pixel grid an elongated nucleus has a flat ridge of equal distances,
    which the peak search would cut into several nuclei.
    """
    distance = np.zeros(components.shape, np.float32)
    deepest = []
    for k, box in enumerate(ndi.find_objects(components), start=1):
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)  # one pixel of background around
        inside = components[box] == k
        local = ndi.gaussian_filter(ndi.distance_transform_edt(inside), 1.0)
        distance[box][inside] = local[inside]
        deepest.append(np.add(np.unravel_index(np.argmax(local), local.shape), [s.start for s in box]))
    return distance, np.array(deepest, dtype=np.intp).reshape(-1, 2)


def filter_area(labels, *, min_area, max_area):
    """Drop the objects with fewer than min_area or more than max_area pixels; renumber the rest 1..n in order."""
    areas = np.bincount(labels.ravel())
    keep = (areas >= min_area) & (areas <= max_area)
    keep[0] = False
    return np.where(keep, np.cumsum(keep), 0).astype(np.int32)[labels]


def relabel(labels):
    """Renumber labels to 1..n in their present order, as int32."""
    return segmentation.relabel_sequential(labels.astype(np.int32))[0]


def grow_cells(nuclei, field, *, channel, method, smooth_sigma, min_contrast):
    """Cells grown from the nuclei over the cytoplasm channel's foreground; each cell has its nucleus's label.

    Each foreground pixel joins the nucleus nearest to it along paths inside
    the foreground, so neighbours meet half-way between their nuclei. On the
    demo this matched the true cells better than flooding the inverted
    cytoplasm intensity, whose puncta and texture pull boundaries astray.
    Foreground reached by no nucleus (a cell whose nucleus was dropped) stays
    background.
    """
    _check_field(field, channel, method)
    nuclei = np.asarray(nuclei)
    if nuclei.shape != field.shape[:2]:
        raise InputError(f"nuclei labels {nuclei.shape} do not match the field's {field.shape[:2]} pixels")
    mask = foreground_mask(field, method=method, channel=channel, smooth_sigma=smooth_sigma, min_contrast=min_contrast)
    mask = fill_holes(mask) | (nuclei > 0)
    # On a flat image the flood is breadth-first, so each pixel goes to the nucleus nearest through the mask.
    flat = np.zeros(nuclei.shape, np.uint8)
    cells = segmentation.watershed(flat, nuclei.astype(np.int32), mask=mask).astype(np.int32)
    # Markers keep their labels in the flood; this only makes the promise explicit.
    cells[nuclei > 0] = nuclei[nuclei > 0]
    return cells


def match(truth, found, threshold=0.5):
    """Match objects of two label images by IoU >= threshold and score the detection.

    Returns true_positives, false_positives, false_negatives, precision,
    recall, f1 and mean_iou (over matched pairs). With threshold >= 0.5 an
    object can overlap at most one other that much, so matches are one-to-one;
    below it pairs are chosen one-to-one to maximise the summed IoU. Empty
    cases: no objects in either image scores 1.0 (nothing to find, nothing
    wrong); precision with nothing found, or recall with nothing to find, is
    1.0 as well; mean_iou without matches is nan.
    """
    truth, found = _check_labels(truth, "truth"), _check_labels(found, "found")
    if truth.shape != found.shape:
        raise InputError(f"label images differ in shape: truth {truth.shape}, found {found.shape}")
    if not 0 < threshold <= 1:
        raise InputError(f"IoU threshold must be in (0, 1], got {threshold}")
    truth, found = relabel(truth), relabel(found)
    n_truth, n_found = int(truth.max()), int(found.max())
    ious = _matched_ious(truth, found, threshold)
    tp = len(ious)
    return {
        "true_positives": tp,
        "false_positives": n_found - tp,
        "false_negatives": n_truth - tp,
        "precision": tp / n_found if n_found else 1.0,
        "recall": tp / n_truth if n_truth else 1.0,
        "f1": 2 * tp / (n_truth + n_found) if n_truth + n_found else 1.0,
        "mean_iou": float(ious.mean()) if tp else float("nan"),
    }


def _matched_ious(truth, found, threshold):
    """IoUs of the matched (truth, found) pairs of two sequentially labelled images."""
    if truth.max() == 0 or found.max() == 0:
        return np.zeros(0)
    # Overlapping pairs only: the sparse contingency table never holds the (n_truth, n_found) grid.
    table = metrics.contingency_table(truth, found).tocoo()
    inside = (table.row > 0) & (table.col > 0)
    rows, cols, overlap = table.row[inside], table.col[inside], table.data[inside].astype(float)
    area_truth, area_found = np.bincount(truth.ravel()), np.bincount(found.ravel())
    iou = overlap / (area_truth[rows] + area_found[cols] - overlap)
    if threshold >= 0.5:
        return iou[iou >= threshold]
    grid = np.zeros((area_truth.size, area_found.size))
    grid[rows, cols] = np.where(iou >= threshold, iou, 0.0)
    r, c = optimize.linear_sum_assignment(grid, maximize=True)
    best = grid[r, c]
    return best[best > 0]


def outlines(labels):
    """Boolean (Y, X) of each object's own edge pixels, to draw on contact sheets."""
    return segmentation.find_boundaries(np.asarray(labels), mode="inner")


def _check_field(field, channel, method):
    if np.ndim(field) != 3:
        raise InputError(f"segmentation needs a (Y, X, C) field, got shape {np.shape(field)}")
    # foreground_mask names a channel past the end; a negative one would quietly count from the end.
    if channel < 0:
        raise InputError(f"segmentation channel {channel} does not exist; the image has {field.shape[-1]} channel(s)")
    if method not in THRESHOLDS:
        raise InputError(f"unknown segmentation threshold method {method!r}; known: {', '.join(THRESHOLDS)}")


def _check_labels(labels, name):
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise InputError(f"{name}: need a 2-D label image of non-negative integers, got {labels.dtype} {labels.shape}")
    return labels
