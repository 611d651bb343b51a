"""Where the cells are: a thresholded foreground mask that is empty for a field without cells."""

import numpy as np
from skimage import filters

from cellclass.io.errors import InputError

# Rows per band of a smoothing pass: a band's shifted copies stay in the CPU cache.
BAND = 64


def smooth(image, sigma):
    """Gaussian smoothing of a 2-D image as float32, as ndi.gaussian_filter gives up to float rounding.

    Each pass is a weighted sum of shifted views, a band of rows at a time. scipy's pass down the
    columns of a C-ordered field read memory with a stride and took five times longer than one along
    rows; transposing to avoid it took as long again.
    """
    radius = int(4.0 * sigma + 0.5)  # scipy's truncate=4
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights = (weights / weights.sum()).astype(np.float32)
    rows, cols = image.shape
    out = np.empty((rows, cols), np.float32)
    scratch = np.empty((min(BAND, rows), cols), np.float32)
    # scipy's "reflect" is numpy's "symmetric": the edge pixel is repeated.
    down = np.pad(image.astype(np.float32, copy=False), ((radius, radius), (0, 0)), mode="symmetric")
    for start in range(0, rows, BAND):
        band = down[start : start + min(BAND, rows - start) + 2 * radius]
        _weighted_sum(
            lambda k, band=band: band[radius + k : len(band) - radius + k],
            weights,
            radius,
            out[start : start + BAND],
            scratch,
        )
    across = np.pad(out, ((0, 0), (radius, radius)), mode="symmetric")
    for start in range(0, rows, BAND):
        band = across[start : start + BAND]
        _weighted_sum(
            lambda k, band=band: band[:, radius + k : radius + k + cols],
            weights,
            radius,
            out[start : start + BAND],
            scratch,
        )
    return out


def _weighted_sum(shifted, weights, radius, out, scratch):
    """out = sum over k of weights[radius + k] * shifted(k), pairing the symmetric weights."""
    scratch = scratch[: len(out)]
    np.multiply(shifted(0), weights[radius], out=out)
    for k in range(1, radius + 1):
        np.add(shifted(-k), shifted(k), out=scratch)
        scratch *= weights[radius + k]
        out += scratch


def threshold_otsu(image, nbins=256):
    """skimage's Otsu threshold from a histogram counted with np.bincount (np.histogram took 3/4 of the time)."""
    lo, hi = float(image.min()), float(image.max())
    index = ((image - np.float32(lo)) * np.float32(nbins / (hi - lo))).astype(np.intp)
    counts = np.bincount(index.ravel(), minlength=nbins + 1)
    counts[nbins - 1] += counts[nbins]  # the maximum belongs to the last bin, as in np.histogram
    centres = lo + (hi - lo) / nbins * (np.arange(nbins) + 0.5)
    return filters.threshold_otsu(hist=(counts[:nbins], centres))


THRESHOLDS = {"otsu": threshold_otsu, "li": filters.threshold_li, "triangle": filters.threshold_triangle}


# The threshold and medians from every 7th pixel (or row), and from about SAMPLES pixels
# of a larger field: robust statistics need far fewer than a field's million pixels, and
# over all of them they took a third of segmentation time.
SUBSAMPLE = 7
SAMPLES = 50_000


def noise_sigma(image):
    """Robust per-pixel noise level from differences of horizontal neighbours."""
    # Whole rows, every step-th: read in order, where scattered pixels of a large field missed the cache.
    diff = np.diff(image[:: _step(image)], axis=1).ravel()
    return 1.4826 * _median(np.abs(diff - _median(diff))) / np.sqrt(2)


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
    smoothed = smooth(image, smooth_sigma) if smooth_sigma > 0 else image
    if smoothed.max() <= smoothed.min():
        return np.zeros(image.shape, dtype=bool)
    step = _step(image)
    sample = smoothed.ravel()[::step]
    # The threshold is a statistic too; a sample without spread (a few small bright spots) leaves it to all pixels.
    mask = smoothed > THRESHOLDS[method](sample if sample.max() > sample.min() else smoothed)
    if mask.all() or not mask.any():
        return mask
    inside = mask.ravel()[::step]
    contrast = _median(sample[inside]) - _median(sample[~inside]) if inside.any() and not inside.all() else 0.0
    if contrast < min_contrast * max(noise_sigma(image), 1e-6):
        return np.zeros(image.shape, dtype=bool)
    return mask


def _median(values):
    """np.median of a 1-D array by one np.partition at the middle: here ten times faster than np.median's."""
    if not len(values):
        return float("nan")
    middle = len(values) // 2
    part = np.partition(values, middle)
    return float(part[middle]) if len(values) % 2 else (float(part[:middle].max()) + float(part[middle])) / 2


def _step(image):
    """Sample every step-th pixel: SUBSAMPLE, or more widely spaced to leave about SAMPLES pixels."""
    return max(SUBSAMPLE, image.size // SAMPLES)
