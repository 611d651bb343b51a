"""Cut raw fields into tiles of one or a few cells, skipping empty background.

The field is normalised once, a foreground mask is thresholded on the whole
field (so the threshold sees both cells and background), and a tile is kept
when enough of it is foreground.
"""

import logging

import numpy as np

from cellclass.io import contact_sheet, imageio, tilestore
from cellclass.io.errors import InputError
from cellclass.io.tilestore import TileSet
from cellclass.prepare import normalise, qc

# scikit-image, scipy and the nuclei segmentation are imported where a kind needs them: a tile job of
# single cells, and every Snakemake start (plan.py imports this module), skip their half second.

log = logging.getLogger(__name__)


def load_field(sample, settings):
    """Read a sample's raw image(s), select channels and normalise: (Y, X, C) float32 in [0, 1]."""
    raw = imageio.read_image(
        sample.files,
        channels=settings["channels"],
        plane=settings["plane"],
        bit_depth=settings["bit_depth"],
        planes=sample.planes,
        axes=settings.get("axes"),  # runs recorded before prepare.axes have none
    )
    norm = settings["normalise"]
    field = normalise.normalise(
        raw.pixels,
        method=norm["method"],
        bit_depth=raw.bit_depth,
        low=norm["low"],
        high=norm["high"],
        source=", ".join(sample.files),
    )
    return field, raw


def tile_positions(shape, size, stride):
    """Top-left corners of all whole tiles of a field."""
    height, width = shape[:2]
    rows = np.arange(0, height - size + 1, stride)
    cols = np.arange(0, width - size + 1, stride)
    return np.meshgrid(rows, cols, indexing="ij")


def foreground_fractions(mask, size, stride):
    """Foreground fraction of every tile, from one integral image (no per-tile loop)."""
    integral = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    r, c = tile_positions(mask.shape, size, stride)
    total = integral[r + size, c + size] - integral[r, c + size] - integral[r + size, c] + integral[r, c]
    return total / float(size * size)


def resize_tiles(tiles, out_size):
    if tiles.shape[1] == out_size:
        return tiles
    n, _, _, channels = tiles.shape
    if n == 0:
        return np.empty((0, out_size, out_size, channels), np.float32)
    from skimage import transform

    return transform.resize(tiles, (n, out_size, out_size, channels), order=1, anti_aliasing=True).astype(np.float32)


def tile_field(field, mask, *, size, stride, min_fraction, out_size, source="image"):
    """Tiles of `field` whose foreground fraction reaches `min_fraction`, with their positions."""
    from skimage.util import view_as_windows

    height, width, channels = field.shape
    if height < size or width < size:
        raise InputError(f"{source}: image is {height}x{width} px, smaller than one tile ({size} px)")
    fractions = foreground_fractions(mask, size, stride)
    rows, cols = tile_positions(field.shape, size, stride)
    keep = fractions >= min_fraction if min_fraction > 0 else np.ones_like(fractions, dtype=bool)
    windows = view_as_windows(field, (size, size, channels), step=(stride, stride, channels))[:, :, 0]
    tiles = windows[keep] if keep.any() else np.empty((0, size, size, channels), np.float32)
    return resize_tiles(np.ascontiguousarray(tiles), out_size), rows[keep], cols[keep]


def fit_cell(image, out_size):
    """One single-cell image → one square tile: pad to square with its border level, then resize."""
    height, width, channels = image.shape
    if height == width == out_size:
        return image[None]
    side = max(height, width)
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    background = np.median(border, axis=0)
    square = np.empty((side, side, channels), dtype=np.float32)
    square[:] = background
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = image
    return resize_tiles(square[None], out_size)


def output_size(settings):
    return settings["resize_to"] or settings["tile_size"]


def tile_sample(sample, settings, dataset=""):
    """All tiles of one sample as a TileSet (empty, with the reason, if it is skipped)."""
    size = settings["tile_size"]
    stride = settings["stride"] or size
    meta = {
        "dataset": dataset,
        "sample": sample.id,
        "class": sample.cls,
        "group": sample.group,
        "files": list(sample.files),
        "planes": sample.planes,
        "settings": settings,
        "skipped": None,
    }
    source = ", ".join(sample.files)
    try:
        field, raw = load_field(sample, settings)
        meta.update(field_shape=list(field.shape), bit_depth=raw.bit_depth, dtype=str(raw.pixels.dtype))
        if settings["kind"] == "cells":
            meta["qc"] = quality(raw, None)
            tiles = fit_cell(field, output_size(settings))
            return TileSet(tiles, np.array([-1]), np.array([-1]), meta)
        if settings["kind"] == "nuclei":
            return crop_sample(sample, field, settings, meta, raw)
        from cellclass.prepare.foreground import foreground_mask

        mask = foreground_mask(field, **settings["foreground"])
        meta["qc"] = quality(raw, mask)
        tiles, rows, cols = tile_field(
            field,
            mask,
            size=size,
            stride=stride,
            min_fraction=settings["foreground"]["min_fraction"],
            out_size=output_size(settings),
            source=source,
        )
    except InputError as error:
        if settings["on_bad_image"] != "skip":
            raise
        log.warning("skipping %s: %s", source, error)
        meta["skipped"] = str(error)
        out = output_size(settings)
        return TileSet(np.empty((0, out, out, 1), np.float32), np.empty(0, int), np.empty(0, int), meta)
    if len(tiles) == 0:
        log.warning("%s: %s (no tile reaches the foreground fraction)", source, tilestore.NO_CELLS)
    return TileSet(tiles, rows, cols, meta)


def quality(raw, objects):
    """The image's quality measures (cellclass.prepare.qc) from its raw pixels, as its meta records them."""
    values, note = qc.measure(raw.pixels, raw.bit_depth, objects, imageio.pixel_size(raw.paths[0]))
    if note:
        log.warning("%s: quality measures %s", ", ".join(map(str, raw.paths)), note)
    # None, not NaN, for a measure it lacks: JSON has no NaN, and the tile store keeps metadata as JSON.
    return {"values": {k: v if np.isfinite(v) else None for k, v in values.items()}, "note": note}


def crop_sample(sample, field, settings, meta, raw):
    """A TileSet of one crop per nucleus of a field (kind nuclei), with each crop's object and masks."""
    from cellclass.prepare import crops

    nuclei, cells, objects = crops.find_objects(sample, field, settings["nuclei"])
    meta["qc"] = quality(raw, nuclei)
    tiles, rows, cols, extra = crops.crop_objects(field, nuclei, cells, size=settings["tile_size"])
    out = output_size(settings)
    extra["compartments"] = crops.resize_codes(extra["compartments"], out)
    meta.update(objects=objects, compartments=crops.WITH_CELLS if cells is not None else crops.NUCLEI_ONLY)
    if sample.labels:
        meta["label_files"] = [f for f in (sample.labels, sample.cell_labels) if f]
    if not len(tiles):
        log.warning("%s: %s (no nucleus)", ", ".join(sample.files), tilestore.NO_CELLS)
    return TileSet(resize_tiles(tiles, out), rows, cols, meta, extra)


def tile_shard(samples, settings, dataset=""):
    """The TileSets of a shard's samples, in order, tiled by one process."""
    return [tile_sample(sample, settings, dataset=dataset) for sample in samples]


def sheet_tiles(tilesets, max_tiles=100):
    """Tiles for a shard's contact sheet, the first few of every image, up to `max_tiles` in all, and the
    outlines of each crop's nucleus and cell (None for grid tiles)."""
    filled = [t for t in tilesets if len(t)]
    if not filled:
        return np.empty((0, 1, 1, 1), np.float32), None
    each = max(1, -(-max_tiles // len(filled)))
    tiles = np.concatenate([np.asarray(t.tiles[:each], np.float32) for t in filled])[:max_tiles]
    if not all("compartments" in t.extra for t in filled):
        return tiles, None
    codes = np.concatenate([np.asarray(t.extra["compartments"][:each]) for t in filled])[:max_tiles]
    from cellclass.prepare import segment

    return tiles, np.stack([segment.outlines(c) for c in codes])


def empty_message(tilesets):
    """What an empty contact sheet says: the one image's reason, or how many images gave no tiles."""
    if len(tilesets) == 1:
        return tilestore.empty_reason(tilesets[0])
    return f"no tiles: {len(tilesets)} images skipped or without cells"


def write_shard(tilesets, tiles_path, sheet_path, *, dataset):
    """A tile job's outputs: the shard file and its contact sheet (which says why when it is empty)."""
    tilestore.save(tiles_path, tilesets)
    tiles, outlines = sheet_tiles(tilesets)
    contact_sheet.render(tiles, sheet_path, message=empty_message(tilesets), outlines=outlines)
    for tileset in tilesets:
        log.debug("dataset %s: %s: %d tiles", dataset, tileset.meta["sample"], len(tileset))
    empty = sum(not len(t) for t in tilesets)
    log.info(
        "dataset %s: %d image(s), %d tiles%s",
        dataset,
        len(tilesets),
        sum(len(t) for t in tilesets),
        f"; {empty} image(s) without tiles" if empty else "",
    )
