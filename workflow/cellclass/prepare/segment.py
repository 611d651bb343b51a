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
from cellclass.prepare.foreground import THRESHOLDS, foreground_mask, smooth


def segment_nuclei(
    field, *, channel, method, smooth_sigma, min_contrast, min_area, max_area, min_distance, exclude_border=True
):
    """Label the nuclei of a normalised (Y, X, C) field; labels 1..n, none for a field without cells.

    The foreground's connected components are filled, split and filtered each alone in a window of a
    small sheet (_sheet) and pasted back: the same steps over the whole field took three times as long.
    """
    _check_field(field, channel, method)
    mask = foreground_mask(field, method=method, channel=channel, smooth_sigma=smooth_sigma, min_contrast=min_contrast)
    components, n = ndi.label(mask)
    if n == 0:
        return np.zeros(mask.shape, np.int32)
    # Windows far enough apart that one component's smoothed distance and peaks never reach another's.
    sheet, boxes, windows = _sheet(components, margin=max(SMOOTH_RADIUS, min_distance // 2 + 1))
    absorbed = _fill_holes(sheet, components, boxes, windows)
    n_labels = _split_touching(sheet, windows, n + 1, min_distance=min_distance)
    areas = np.bincount(sheet.ravel(), minlength=n_labels)
    border = _at_border(sheet, boxes, windows, components.shape) if exclude_border else []
    new = _renumber(areas, border, min_area=min_area, max_area=max_area)
    nuclei = np.zeros(mask.shape, np.int32)
    for k, (box, window) in enumerate(zip(boxes, windows), start=1):
        own = sheet[window]
        if k not in absorbed and new[own].any():
            nuclei[box][own > 0] = new[own[own > 0]]
    return nuclei


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


# Reach of the sigma-1 smoothing of the distance (scipy's truncate=4).
SMOOTH_RADIUS = 4


def _sheet(components, *, margin):
    """Each component alone in a window of its own, the windows packed in rows on one array.

    Returns the sheet (component ids, 0 around them), each component's bounding box in the field and
    its window on the sheet. Objects cover a small part of a field, so the sheet is a fraction of its
    size; `margin` px of background around each window keep one component's distance, smoothing and
    peaks apart from its neighbours'. A field's edge becomes background: an object cut by it is measured
    as ending there.
    """
    boxes = ndi.find_objects(components)
    sizes = np.array([(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in boxes]) + 2 * margin
    width = max(int(sizes[:, 1].max()), int(np.sqrt((sizes[:, 0] * sizes[:, 1]).sum())))
    # Shelf packing, tallest first: a shelf is as tall as its first window, and the sheet's pixels cost
    # time in each step (packed in label order, a quarter of the sheet was empty shelf).
    corners, row, col, row_height = [None] * len(boxes), 0, 0, 0
    for k in np.argsort(-sizes[:, 0], kind="stable"):
        height, size = sizes[k]
        if col + size > width:
            row, col, row_height = row + row_height, 0, 0
        corners[k] = (row + margin, col + margin)
        col, row_height = col + size, max(row_height, height)
    sheet = np.zeros((row + row_height, width), np.int32)
    windows = []
    for k, (box, (top, left), (height, size)) in enumerate(zip(boxes, corners, sizes), start=1):
        window = (slice(top, top + height - 2 * margin), slice(left, left + size - 2 * margin))
        sheet[window][components[box] == k] = k
        windows.append(window)
    return sheet, boxes, windows


def _fill_holes(sheet, components, boxes, windows):
    """Fill each component's holes on the sheet, as fill_holes would on the field; returns the absorbed.

    A hole is background on the sheet that the margins around the windows do not reach. A component
    lying inside another's hole (a blob within a ring) is absorbed into it, as fill_holes and a
    labelling would merge them; the ids of the absorbed are returned and their windows cleared. A pocket
    closed only by two components meeting at a corner is a hole of neither and stays background (fill_holes
    would fill it and merge them: 1-2 px in 5 of 160 dense test fields, none on the demo).
    """
    background, _ = ndi.label(sheet == 0)
    outside = background[0, 0]  # a corner of the sheet is margin
    absorbed = set()
    for hole, box in enumerate(ndi.find_objects(background), start=1):
        if hole == outside or box is None:
            continue
        rim = tuple(slice(s.start - 1, s.stop + 1) for s in box)  # the enclosing component's pixels
        k = int(sheet[rim].max())
        pixels = background[box] == hole
        sheet[box][pixels] = k
        window, field_box = windows[k - 1], boxes[k - 1]
        at = tuple(
            slice(f.start + b.start - w.start, f.start + b.stop - w.start) for f, b, w in zip(field_box, box, window)
        )
        absorbed.update(int(j) for j in np.unique(components[at][pixels]) if j)
    for j in absorbed:
        sheet[windows[j - 1]] = 0
    return absorbed


def _split_touching(sheet, windows, next_label, *, min_distance):
    """Split the components on the sheet at the necks of their distance transform; returns the next free label.

    A component is cut by a watershed when its smoothed distance to the background has two or more
    peaks at least min_distance apart; its pieces get new labels from next_label on. The others, most
    nuclei, stay whole (a watershed over the whole field took most of the time).
    """
    distance = _distance_inside(sheet)
    # peak_local_max's candidates: pixels that are the maximum of their neighbourhood. Only a component
    # with two can have two peaks, so its costly spacing of the peaks runs on those components alone.
    candidates = (distance == ndi.maximum_filter(distance, size=2 * min_distance + 1, mode="nearest")) & (distance > 0)
    for k in np.flatnonzero(np.bincount(sheet[candidates], minlength=len(windows) + 1) >= 2):
        window = windows[k - 1]
        around = tuple(slice(s.start - 1, s.stop + 1) for s in window)  # with background around, as on the sheet
        peaks = feature.peak_local_max(distance[around], min_distance=min_distance, exclude_border=False) - 1
        if len(peaks) < 2:
            continue
        own = sheet[window] == k
        markers = np.zeros(own.shape, np.int32)
        markers[tuple(peaks.T)] = np.arange(next_label, next_label + len(peaks))
        next_label += len(peaks)
        pieces = segmentation.watershed(-distance[window], markers, mask=own)
        sheet[window][own] = pieces[own]
    return next_label


def _distance_inside(sheet):
    """Distance of each object pixel to the nearest pixel outside it, smoothed (sigma 1 px); 0 outside.

    On a pixel grid an elongated nucleus has a flat ridge of equal distances, which the peak search
    would cut into several nuclei; the smoothing rounds it to one peak.
    """
    inside = sheet > 0
    distance = smooth(ndi.distance_transform_edt(inside).astype(np.float32), 1.0)
    return np.where(inside, distance, np.float32(0))


def _at_border(sheet, boxes, windows, shape):
    """Labels on the sheet of the objects that touch the field's edge."""
    labels = []
    for box, window in zip(boxes, windows):
        own = sheet[window]
        for axis in (0, 1):
            if box[axis].start == 0:
                labels.append(own.take(0, axis))
            if box[axis].stop == shape[axis]:
                labels.append(own.take(-1, axis))
    return labels


def keep_objects(labels, *, min_area, max_area, exclude_border=True):
    """Drop the objects with fewer than min_area or more than max_area pixels and, with exclude_border,
    those touching the field's edge; renumber the rest 1..n in the order of their labels."""
    edges = (labels[0], labels[-1], labels[:, 0], labels[:, -1]) if exclude_border else []
    return _renumber(np.bincount(labels.ravel()), edges, min_area=min_area, max_area=max_area)[labels]


def _renumber(areas, border, *, min_area, max_area):
    """New label of each label: 1..n for those kept in their order, 0 for those dropped (by area, or in border)."""
    keep = (areas >= max(min_area, 1)) & (areas <= max_area)
    for labels in border:
        keep[labels] = False
    keep[0] = False
    return np.where(keep, np.cumsum(keep), 0).astype(np.int32)


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
