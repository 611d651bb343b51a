"""More training tiles by rotation and shifts resampled from the raw field, without inventing pixels.

Rotations by other angles than 90 degrees and shifts are resampled from the
raw field around the tile's centre, so a rotated tile's corners hold real
neighbouring cells, never empty fill. These copies are made once, here. The
lossless 90-degree rotations and flips (the dihedral group) only move pixels:
they are drawn afresh per batch in the input pipeline (cellclass.learn.pipeline),
for the originals and these copies alike, and never stored.
"""

import hashlib
import logging

import numpy as np
from scipy import ndimage as ndi

from cellclass.io import contact_sheet, tilestore
from cellclass.io.tilestore import TileSet
from cellclass.prepare.tiling import load_field, resize_tiles

log = logging.getLogger(__name__)


def rotated_crops(field, centres, size, angle):
    """Crops of side `size` at `angle` degrees around `centres`, sampled from `field`.

    A centre too close to the border is moved inward just enough for the whole
    rotated square to lie inside the field. Returns (tiles, ok); ok is False
    where the field is too small for that angle.
    """
    height, width, channels = field.shape
    theta = np.deg2rad(angle)
    cos, sin = np.cos(theta), np.sin(theta)
    offset = np.arange(size) - (size - 1) / 2
    dy, dx = np.meshgrid(offset, offset, indexing="ij")
    ry, rx = cos * dy + sin * dx, cos * dx - sin * dy  # counter-clockwise, as np.rot90
    half_y, half_x = np.abs(ry).max(), np.abs(rx).max()
    ok = np.full(len(centres), (height - 1) >= 2 * half_y and (width - 1) >= 2 * half_x)
    cy = np.clip(centres[:, 0], half_y, height - 1 - half_y)
    cx = np.clip(centres[:, 1], half_x, width - 1 - half_x)
    ys = cy[:, None, None] + ry[None]
    xs = cx[:, None, None] + rx[None]
    tiles = np.empty((len(centres), size, size, channels), dtype=np.float32)
    for c in range(channels):
        tiles[..., c] = ndi.map_coordinates(field[..., c], [ys, xs], order=1, mode="nearest")
    return tiles, ok


def augment(tileset, *, field=None, angles=(), translations=0, max_shift=8, seed=0):
    """Copies of a TileSet's tiles resampled from the raw `field`, the originals included (op 'rot0').

    Angles and translations need the raw `field` (fields and nuclei kinds); for single-cell
    images there is no field around the cell, so the originals alone are returned.
    """
    settings = tileset.meta["settings"]
    size, out_size = settings["tile_size"], tileset.tiles.shape[1] if len(tileset) else settings["tile_size"]
    tiles = [tileset.tiles.astype(np.float32)]
    parents = [np.arange(len(tileset))]
    ops = [np.full(len(tileset), "rot0")]
    if (angles or translations) and field is None:
        log.warning(
            "%s: single-cell images have no surrounding field; no rotated or shifted copies (training still "
            "flips and turns them by 90 degrees)",
            tileset.meta["sample"],
        )
    elif len(tileset):
        centres = np.stack([tileset.rows, tileset.cols], axis=1) + (size - 1) / 2
        for angle in angles:
            if angle % 360 == 0:
                continue
            crops, ok = rotated_crops(field, centres, size, angle)
            if not ok.all():
                log.warning("%s: field too small to rotate by %g degrees; skipped", tileset.meta["sample"], angle)
                continue
            tiles.append(resize_tiles(crops, out_size))
            parents.append(np.arange(len(tileset)))
            ops.append(np.full(len(tileset), f"angle{angle:g}"))
        rng = np.random.default_rng(
            [seed, int.from_bytes(hashlib.sha256(tileset.meta["sample"].encode()).digest()[:8])]
        )
        for _ in range(translations):
            shift = rng.integers(-max_shift, max_shift + 1, size=(len(tileset), 2))
            crops, _ = rotated_crops(field, centres + shift, size, 0.0)
            tiles.append(resize_tiles(crops, out_size))
            parents.append(np.arange(len(tileset)))
            ops.append(np.array([f"shift{dy:+d}{dx:+d}" for dy, dx in shift]))
    tiles, parents, ops = np.concatenate(tiles), np.concatenate(parents), np.concatenate(ops)
    # A crop's object (label, centroid, area) follows its copies; its masks would need the same ops, and
    # training needs none.
    carried = {k: np.asarray(v)[parents] for k, v in tileset.extra.items() if np.ndim(v) == 1}
    return TileSet(
        tiles,
        tileset.rows[parents],
        tileset.cols[parents],
        dict(tileset.meta, augmented=True),
        {**carried, "parent": parents, "op": ops},
    )


def augment_image(tileset, sample, options):
    """Resampled copies of one training image's tiles; angles and shifts resample its raw field, read again."""
    settings = tileset.meta["settings"]
    around = settings["kind"] in ("fields", "nuclei")  # a field surrounds the tile, to resample from
    needs_field = (options["angles"] or options["translations"]) and around and len(tileset)
    field = load_field(sample, settings)[0] if needs_field else None
    per_tile = {k: v for k, v in tileset.extra.items() if not isinstance(v, tilestore.StoredTiles)}
    return augment(
        TileSet(np.asarray(tileset.tiles), tileset.rows, tileset.cols, tileset.meta, per_tile),
        field=field,
        angles=options["angles"],
        translations=options["translations"],
        max_shift=options["max_shift"],
        seed=options["seed"],
    )


def write_augmented(tiles_path, samples, options, *, out_tiles, out_sheet, dataset):
    """The augment job: copies of the tiles of a shard's training images (`samples`) resampled from their raw
    fields, and a contact sheet of the first image's first three tiles' copies side by side."""
    wanted = {sample.id: sample for sample in samples}
    augmented, originals = [], 0
    for tileset in tilestore.load(tiles_path):
        if tileset.meta["sample"] in wanted:
            augmented.append(augment_image(tileset, wanted[tileset.meta["sample"]], options))
            originals += len(tileset)
            log.debug(
                "dataset %s: %s: %d tiles -> %d", dataset, tileset.meta["sample"], len(tileset), len(augmented[-1])
            )
    log.info(
        "dataset %s: %d training image(s): %d tiles -> %d",
        dataset,
        len(augmented),
        originals,
        sum(len(a) for a in augmented),
    )
    tilestore.save(out_tiles, augmented)
    first = next((a for a in augmented if len(a)), None)
    shown = np.empty((0, 1, 1, 1), np.float32)
    if first is not None:
        parent = first.extra["parent"]
        first_three = np.flatnonzero(parent < 3)
        shown = first.tiles[first_three[np.argsort(parent[first_three], kind="stable")]]
    contact_sheet.render(shown, out_sheet, message="no tiles")
