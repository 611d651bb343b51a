"""Where the cells are: a thresholded foreground mask that is empty for a field without cells."""

import numpy as np
from scipy import ndimage as ndi
from skimage import filters

from cellclass.io.errors import InputError



def smooth(image, sigma):
    """Gaussian smoothing of a 2-D image, as ndi.gaussian_filter gives up to float rounding, transposed.

    Both passes run along rows, and the result is left transposed (C-ordered): a pass down the columns
    of a C-ordered field reads memory with a stride and took five times longer than one along rows.
    """
    rows = ndi.gaussian_filter1d(image, sigma, axis=1)
    return ndi.gaussian_filter1d(np.ascontiguousarray(rows.T), sigma, axis=1)


def threshold_otsu(image, nbins=256):
    """skimage's Otsu threshold from a histogram counted with np.bincount (np.histogram took 3/4 of the time)."""
    lo, hi = float(image.min()), float(image.max())
    index = ((image - np.float32(lo)) * np.float32(nbins / (hi - lo))).astype(np.intp)
    counts = np.bincount(index.ravel(), minlength=nbins + 1)
    counts[nbins - 1] += counts[nbins]  # the maximum belongs to the last bin, as in np.histogram
    centres = lo + (hi - lo) / nbins * (np.arange(nbins) + 0.5)
    return filters.threshold_otsu(hist=(counts[:nbins], centres))


THRESHOLDS = {"otsu": threshold_otsu, "li": filters.threshold_li, "triangle": filters.threshold_triangle}


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
    # Transposed from here on (as smooth gives it); the mask is transposed back at the end.
    smoothed = smooth(image, smooth_sigma) if smooth_sigma > 0 else np.ascontiguousarray(image.T)
    if smoothed.max() <= smoothed.min():
        return np.zeros(image.shape, dtype=bool)
    mask = smoothed > THRESHOLDS[method](smoothed)
    if mask.all() or not mask.any():
        return np.ascontiguousarray(mask.T)
    sample, inside = smoothed.ravel()[::SUBSAMPLE], mask.ravel()[::SUBSAMPLE]
    contrast = float(np.median(sample[inside]) - np.median(sample[~inside])) if inside.any() and not inside.all() else 0.0
    if contrast < min_contrast * max(noise_sigma(image), 1e-6):
        return np.zeros(image.shape, dtype=bool)
    return np.ascontiguousarray(mask.T)
