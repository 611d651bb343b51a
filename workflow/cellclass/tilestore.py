"""One file of tiles per raw image: the tiles, where they came from, and how they were made.

Tiles are stored as float16 in [0, 1] (ample for normalised microscopy and half
the disk of float32), in an uncompressed .npz that loads without pickle.
"""

import json
from dataclasses import dataclass, field

import numpy as np

from cellclass.atomic import atomic_path

NO_CELLS = "no cells found"


@dataclass
class TileSet:
    tiles: np.ndarray  # (n, size, size, channels), float in [0, 1]
    rows: np.ndarray  # top-left row of each tile in the raw field (-1: whole image)
    cols: np.ndarray
    meta: dict  # sample id, class, group, files, settings used, ...
    extra: dict = field(default_factory=dict)  # per-tile arrays, e.g. augmentation parent and op

    def __len__(self):
        return len(self.tiles)

    def tile_ids(self):
        """Stable ids: '<sample id>@<row>,<col>' (plus the op for augmented copies)."""
        base = [f"{self.meta['sample']}@{r},{c}" for r, c in zip(self.rows, self.cols)]
        if "op" in self.extra:
            return [f"{b}#{op}" for b, op in zip(base, self.extra["op"])]
        return base


def save(path, tileset):
    with atomic_path(path) as tmp:
        np.savez(
            tmp,
            tiles=tileset.tiles.astype(np.float16),
            rows=np.asarray(tileset.rows, dtype=np.int32),
            cols=np.asarray(tileset.cols, dtype=np.int32),
            meta=np.array(json.dumps(tileset.meta)),
            **{f"extra_{k}": np.asarray(v) for k, v in tileset.extra.items()},
        )


def load(path, *, tiles=True):
    """Read a tile file; tiles=False reads only the small arrays and metadata."""
    with np.load(path, allow_pickle=False) as data:
        extra = {k[len("extra_") :]: data[k] for k in data.files if k.startswith("extra_")}
        return TileSet(
            tiles=data["tiles"] if tiles else np.empty((0,)),
            rows=data["rows"],
            cols=data["cols"],
            meta=json.loads(str(data["meta"])),
            extra=extra,
        )


def empty_reason(tileset):
    """Why a tile file holds no tiles: the skip's error, or that no cells were found."""
    return f"skipped: {tileset.meta['skipped']}" if tileset.meta.get("skipped") else NO_CELLS
