"""Turn raw pixel values into floats in [0, 1], once, by a named method."""

import logging

import numpy as np

from cellclass.io.errors import InputError

log = logging.getLogger(__name__)

METHODS = ("bit_depth", "percentile")


def normalise(pixels, *, method, bit_depth=None, low=0.5, high=99.9, source="image"):
    """Scale (Y, X, C) pixels to float32 in [0, 1].

    bit_depth: divide by the largest value the camera can write (the article's
    1/255 for 8-bit), so brightness stays comparable across images.
    percentile: stretch each channel of this image between its low and high
    percentiles, which copes with uneven exposure between fields.
    """
    pixels = np.asarray(pixels)
    if method == "bit_depth":
        if bit_depth is None:
            raise InputError(f"{source}: float pixels have no bit depth; use normalise method 'percentile'")
        return np.clip(pixels.astype(np.float32) / float(2**bit_depth - 1), 0.0, 1.0)
    if method == "percentile":
        if not 0 <= low < high <= 100:
            raise InputError(f"normalise: need 0 <= low < high <= 100, got low={low}, high={high}")
        out = np.empty(pixels.shape, dtype=np.float32)
        for c in range(pixels.shape[-1]):
            channel = pixels[..., c].astype(np.float32)
            lo, hi = np.percentile(channel, [low, high])
            if hi <= lo:
                log.warning("%s: channel %d is constant (%g); it normalises to 0", source, c, lo)
                out[..., c] = 0.0
            else:
                out[..., c] = np.clip((channel - lo) / (hi - lo), 0.0, 1.0)
        return out
    raise InputError(f"unknown normalise method '{method}'; known: {', '.join(METHODS)}")
