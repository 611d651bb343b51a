"""Demo fields as another lab or microscope might record them: each shift changes one thing about the raw image.

Used to measure what image-level quality checks catch (bench/abstain.py, tests): magnification, a weaker stain,
blur, saturated pixels, one stain in both channels. Another cell density is rendered, not shifted
(cellclass.demo.synthetic.render_field's cells_per_field). Every shift is a pure function of the field and seed.
"""

import numpy as np
from scipy import ndimage

OFFSET = 100  # the demo camera's offset in ADU (cellclass.demo.synthetic): a weaker stain scales what is above it
SHIFTS = (
    "magnified_half",
    "magnified_2x",
    "stain_5x_weaker",
    "blur_2px",
    "blur_4px",
    "saturated_5pct",
    "one_stain_both_channels",
)


def shift(image, kind, *, seed=0):
    """`image` (C, Y, X) uint16 recorded differently: one of SHIFTS."""
    image = np.asarray(image)
    if kind.startswith("magnified_"):
        return magnify(image, {"magnified_half": 0.5, "magnified_2x": 2.0}[kind])
    if kind == "stain_5x_weaker":
        return (OFFSET + (image.astype(np.float32) - OFFSET) / 5).round().clip(0, 65535).astype(image.dtype)
    if kind.startswith("blur_"):
        sigma = float(kind.split("_")[1].rstrip("px"))
        return (
            np.stack([ndimage.gaussian_filter(c.astype(np.float32), sigma) for c in image]).round().astype(image.dtype)
        )
    if kind == "saturated_5pct":
        out = image.copy()
        hit = np.random.default_rng(seed).random(image.shape[1:]) < 0.05
        out[:, hit] = np.iinfo(image.dtype).max
        return out
    if kind == "one_stain_both_channels":
        return np.stack([image[1]] * image.shape[0])
    raise ValueError(f"unknown shift {kind!r}; expected one of {', '.join(SHIFTS)}")


def magnify(image, factor):
    """The field as seen through `factor` times the magnification, on a camera of the same pixel count: zoomed
    in, the centre fills the frame; zoomed out, the field shrinks (the frame's edge is cut to what was imaged)."""
    zoomed = np.stack([ndimage.zoom(c.astype(np.float32), factor, order=1) for c in image])
    if factor > 1:
        height, width = image.shape[1:]
        top, left = (zoomed.shape[1] - height) // 2, (zoomed.shape[2] - width) // 2
        zoomed = zoomed[:, top : top + height, left : left + width]
    return zoomed.round().clip(0, np.iinfo(image.dtype).max).astype(image.dtype)
