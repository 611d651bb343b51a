"""Does the network look at the aggregates? Attribution mass inside a mask relative to the mask's area.

Masks come from ground truth where it exists, otherwise from `puncta_mask`, which
finds small bright spots (the aggregates) in the protein channel. No TensorFlow here.
"""

import numpy as np
from skimage.filters import threshold_otsu
from skimage.morphology import disk, white_tophat


def enrichment(maps, masks):
    """Per tile: (share of the map's mass inside the mask) / (share of the tile the mask covers) -> (n,) float.

    1 means no preference for the mask, above 1 the map concentrates on it; the
    maximum is 1 / area share. Maps should be non-negative (attribute's output).
    A tile whose mask is empty or whose map sums to 0 gets NaN: there is nothing to compare.
    """
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks, dtype=bool)
    if maps.shape != masks.shape or maps.ndim != 3:
        raise ValueError(f"maps and masks must both be (n, H, W); got {maps.shape} and {masks.shape}")
    total = maps.sum(axis=(1, 2))
    inside = np.where(masks, maps, 0.0).sum(axis=(1, 2))
    area = masks.mean(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (inside / total) / area
    return np.where((total > 0) & (area > 0), ratio, np.nan)


def puncta_mask(channel_image, *, radius=3, threshold="otsu"):
    """Bright spots up to about `radius` px: white top-hat with a disk, then a threshold -> bool mask.

    The top-hat removes the smooth cytoplasmic background so only puncta remain;
    `threshold` is "otsu" (on the top-hat image) or a fixed float on the top-hat
    values. Works on a 2-D tile or a whole field; a featureless image gives an empty mask.
    """
    image = np.asarray(channel_image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"puncta_mask needs a 2-D image; got shape {image.shape}")
    tophat = white_tophat(image, disk(radius))
    if isinstance(threshold, str):
        if threshold != "otsu":
            raise ValueError(f"threshold must be 'otsu' or a number, not {threshold!r}")
        if tophat.min() == tophat.max():
            return np.zeros(image.shape, dtype=bool)
        threshold = threshold_otsu(tophat)
    return tophat > threshold


def tile_masks(mask_field, rows, cols, size):
    """Crops (n, size, size) of a field-sized mask at the tiles' top-left corners (tile files store rows, cols).

    A tile at row r, col c covers field[r:r + size, c:c + size]; a single-cell crop centred near the
    border reaches beyond the field, where the mask is empty.
    """
    padded = np.pad(np.asarray(mask_field, dtype=bool), size)
    crops = np.zeros((len(rows), size, size), dtype=bool)
    for i, (r, c) in enumerate(zip(rows, cols)):
        r, c = int(r) + size, int(c) + size
        if r < 0 or c < 0 or r > padded.shape[0] - size or c > padded.shape[1] - size:
            raise ValueError(
                f"tile at ({r - size}, {c - size}) of size {size} lies outside the {mask_field.shape} field"
            )
        crops[i] = padded[r : r + size, c : c + size]
    return crops
