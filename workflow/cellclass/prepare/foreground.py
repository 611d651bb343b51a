"""Where the cells are: a thresholded foreground mask that is empty for a field without cells."""

import numpy as np
from scipy import ndimage as ndi
from skimage import filters

from cellclass.io.errors import InputError

THRESHOLDS = {"otsu": filters.threshold_otsu, "li": filters.threshold_li, "triangle": filters.threshold_triangle}


# Medians over every 7th pixel: robust statistics need far fewer than a field's
# million pixels, and the full medians dominated tiling time.
SUBSAMPLE = 7


def noise_sigma(image):
    """Robust per-pixel noise level from differences of horizontal neighbours."""
    diff = np.diff(image, axis=1).ravel()[::SUBSAMPLE]
    return 1.4826 * float(np.median(np.abs(diff - np.median(diff)))) / np.sqrt(2)


def foreground_mask(field, *, method, channel, smooth_sigma, min_contrast, **_):
    """Boolean (Y, X) mask of cells; all False when the field holds no cells.

    A threshold always splits a field in two, even pure noise; the split only
    counts as cells when foreground exceeds background by `min_contrast` times
    the pixel noise.
    """
    if method == "none":
        return np.ones(field.shape[:2], dtype=bool)
    if channel >= field.shape[-1]:
        raise InputError(f"foreground channel {channel} does not exist; the image has {field.shape[-1]} channel(s)")
    image = field[..., channel]
    smooth = ndi.gaussian_filter(image, smooth_sigma) if smooth_sigma > 0 else image
    if smooth.max() <= smooth.min():
        return np.zeros(image.shape, dtype=bool)
    mask = smooth > THRESHOLDS[method](smooth)
    if mask.all() or not mask.any():
        return mask
    sample, inside = smooth.ravel()[::SUBSAMPLE], mask.ravel()[::SUBSAMPLE]
    contrast = float(np.median(sample[inside]) - np.median(sample[~inside])) if inside.any() and not inside.all() else 0.0
    if contrast < min_contrast * max(noise_sigma(image), 1e-6):
        return np.zeros(image.shape, dtype=bool)
    return mask
