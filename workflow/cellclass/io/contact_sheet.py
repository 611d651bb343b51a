"""A PNG grid of tiles for people to look at (cheap, no plotting library)."""

import math

import numpy as np
from PIL import Image, ImageDraw
from skimage.util import montage

from cellclass.io.atomic import atomic_path


def display_rgb(tiles):
    """Tiles (..., h, w, C) in [0, 1] as float RGB: one channel gray, two green (ch0) + magenta (ch1),
    three or more as RGB of the first three."""
    tiles = np.clip(np.asarray(tiles, dtype=np.float32), 0.0, 1.0)
    channels = tiles.shape[-1]
    if channels == 1:
        return np.repeat(tiles, 3, axis=-1)
    if channels == 2:
        return np.stack([tiles[..., 1], tiles[..., 0], tiles[..., 1]], axis=-1)
    return tiles[..., :3]


def to_rgb(tiles):
    """(n, h, w, C) in [0, 1] -> uint8 RGB (see display_rgb)."""
    return (display_rgb(tiles) * 255).astype(np.uint8)


OUTLINE = (255, 255, 0)  # yellow: seen on both the green and the magenta channel


def render(tiles, path, *, max_tiles=100, gap=2, message=None, outlines=None):
    """Write up to `max_tiles` tiles as a square grid; `message` instead when there are none.

    `outlines` (n, h, w) bool, e.g. a crop's nucleus and cell boundaries, are drawn over the tiles.
    """
    tiles = np.asarray(tiles, dtype=np.float32)[:max_tiles]
    if len(tiles) == 0:
        image = Image.new("RGB", (320, 40), "black")
        ImageDraw.Draw(image).text((6, 12), message or "no tiles", fill="white")
    else:
        columns = math.ceil(math.sqrt(len(tiles)))
        rgb = to_rgb(tiles)
        if outlines is not None:
            rgb[np.asarray(outlines, bool)[:max_tiles]] = OUTLINE
        grid = montage(
            rgb,
            fill=(40, 40, 40),
            grid_shape=(math.ceil(len(tiles) / columns), columns),
            padding_width=gap,
            channel_axis=-1,
        )
        image = Image.fromarray(grid)
    with atomic_path(path) as tmp:
        image.save(tmp)
