"""One file of tiles per shard of raw images: the tiles, where they came from, and how they were made.

A shard file is an uncompressed .npz: `tiles` (every image's tiles, float16 in
[0, 1], ample for normalised microscopy and half the disk of float32), per-tile
`image`, `rows`, `cols` and extra arrays, and the images' metadata as JSON. It
loads without pickle, and the tiles are read on demand: training reads random
tiles from many shards while only the tiles in use are in memory (plain reads,
not a memory map, so nothing read stays counted against the job's memory, and
network file systems see ordinary reads).
"""

import json
import os
import struct
import zipfile
from dataclasses import dataclass, field

import numpy as np

from cellclass.io.atomic import atomic_path
from cellclass.io.errors import InputError

NO_CELLS = "no cells found"


@dataclass
class TileSet:
    """The tiles of one raw image (read from a shard file, `tiles` is a StoredTiles that reads on demand)."""

    tiles: np.ndarray  # (n, size, size, channels), float in [0, 1]
    rows: np.ndarray  # top-left row of each tile in the raw field (-1: whole image)
    cols: np.ndarray
    meta: dict  # sample id, class, group, files, settings used, ...
    extra: dict = field(default_factory=dict)  # per-tile arrays, e.g. augmentation parent and op

    def __len__(self):
        return len(self.rows)

    def tile_ids(self, op=True):
        """Stable ids: '<sample id>@<row>,<col>', or '<sample id>@cell<label>' for a crop of a labelled object
        (plus the op for augmented copies; op=False gives a copy its original's id)."""
        if "label" in self.extra:
            base = [f"{self.meta['sample']}@cell{label}" for label in self.extra["label"]]
        else:
            base = [f"{self.meta['sample']}@{r},{c}" for r, c in zip(self.rows, self.cols)]
        if op and "op" in self.extra:
            return [f"{b}#{op}" for b, op in zip(base, self.extra["op"])]
        return base

    def subset(self, keep):
        """The tiles at `keep` (row numbers or a boolean mask), with their positions and per-tile arrays; stored
        tiles stay on disk until read."""
        keep = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep, np.int64)

        def part(values):
            return values[keep] if isinstance(values, np.ndarray) else RowSubset(values, keep)

        return TileSet(
            part(self.tiles), self.rows[keep], self.cols[keep], self.meta, {k: part(v) for k, v in self.extra.items()}
        )


def tile_shape(tilesets):
    """(H, W, C) shared by the tiles of every non-empty TileSet; a clear error naming the image that differs."""
    shape, first = None, None
    for tileset in tilesets:
        if not len(tileset):
            continue
        if shape is None:
            shape, first = tileset.tiles.shape[1:], tileset
        elif tileset.tiles.shape[1:] != shape:
            raise InputError(
                f"{', '.join(tileset.meta['files'])}: tiles of shape {tileset.tiles.shape[1:]}, but "
                f"{', '.join(first.meta['files'])} gave {shape}; every image of a dataset needs the same channels"
            )
    return shape


def save(path, tilesets):
    """Write one shard file holding `tilesets` (empty ones keep their metadata: skipped, no cells)."""
    tilesets = list(tilesets)
    tile_shape(tilesets)  # every image's tiles must stack
    filled = [t for t in tilesets if len(t)]
    tiles = (
        np.concatenate([np.asarray(t.tiles, np.float16) for t in filled])
        if filled
        else np.empty((0, 1, 1, 1), np.float16)
    )
    extra_keys = sorted({k for t in tilesets for k in t.extra})
    with atomic_path(path) as tmp:
        np.savez(
            tmp,
            tiles=tiles,
            image=np.repeat(np.arange(len(tilesets), dtype=np.int32), [len(t) for t in tilesets]),
            rows=np.concatenate([np.asarray(t.rows, np.int32) for t in tilesets] or [np.empty(0, np.int32)]),
            cols=np.concatenate([np.asarray(t.cols, np.int32) for t in tilesets] or [np.empty(0, np.int32)]),
            meta=np.array(json.dumps([t.meta for t in tilesets])),
            # C order: per-tile arrays (a crop's masks) are read by rows, as the tiles.
            **{
                f"extra_{k}": np.ascontiguousarray(
                    np.concatenate([np.asarray(t.extra[k]) for t in tilesets if len(t)] or [np.empty(0)])
                )
                for k in extra_keys
            },
        )


def load(path, *, tiles=True):
    """The TileSets of one shard file, in stored order, their tiles read on demand; tiles=False reads only the
    small arrays and metadata."""
    with np.load(path, allow_pickle=False) as data:
        image, rows, cols = data["image"], data["rows"], data["cols"]
        metas = json.loads(str(data["meta"]))
        extra_keys = [k for k in data.files if k.startswith("extra_")]
    # Per-tile numbers are read now; per-tile images (a crop's masks) on demand, as the tiles.
    extra = {}
    for key in extra_keys:
        stored = StoredTiles.of(path, f"{key}.npy")
        extra[key[len("extra_") :]] = stored if stored.row_shape else np.asarray(stored)
    all_tiles = StoredTiles.of(path, "tiles.npy") if tiles else None
    bounds = np.searchsorted(image, np.arange(len(metas) + 1))
    tilesets = []
    for i, meta in enumerate(metas):
        part = slice(bounds[i], bounds[i + 1])
        tilesets.append(
            TileSet(
                tiles=all_tiles.view(bounds[i], bounds[i + 1]) if tiles else np.empty((0,)),
                rows=rows[part],
                cols=cols[part],
                meta=meta,
                extra={
                    k: v.view(bounds[i], bounds[i + 1]) if isinstance(v, StoredTiles) else v[part]
                    for k, v in extra.items()
                },
            )
        )
    return tilesets


def load_all(paths, *, tiles=True):
    """The TileSets of several shard files, in order."""
    return [tileset for path in paths for tileset in load(path, tiles=tiles)]


def read_tiles(tilesets):
    """The tiles of `tilesets`, in order, as one array. Consecutive views of one stored array are read in one
    go: a shard of 5,000 single-cell images is one read, not 5,000 (each an open, a read and a close)."""
    parts, pending = [], None
    for tileset in tilesets:
        stored = tileset.tiles
        if pending is not None and isinstance(stored, StoredTiles) and pending.follows(stored):
            pending = StoredTiles(
                pending.path, pending.offset, (0, *pending.row_shape), pending.dtype, pending.start, stored.stop
            )
            continue
        if pending is not None:
            parts.append(np.asarray(pending))
        pending = stored if isinstance(stored, StoredTiles) else None
        if pending is None:
            parts.append(np.asarray(stored))
    if pending is not None:
        parts.append(np.asarray(pending))
    return np.concatenate(parts) if parts else np.empty((0,))


class StoredTiles:
    """Rows [start, stop) of an array stored uncompressed in an .npz, read from the file when indexed.

    Indexing with an int, a slice or an array of row numbers returns a new
    ndarray of those rows; slicing with a step of 1 reads one contiguous block.
    """

    def __init__(self, path, offset, shape, dtype, start=0, stop=None):
        self.path, self.offset, self.dtype = str(path), offset, np.dtype(dtype)
        self.row_shape = tuple(shape[1:])
        self.start, self.stop = start, shape[0] if stop is None else stop
        self.row_bytes = int(np.prod(self.row_shape)) * self.dtype.itemsize

    @classmethod
    def of(cls, path, member):
        """The array `member` of the .npz at `path` (as np.savez writes them: stored, not compressed)."""
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(member)
        if info.compress_type != zipfile.ZIP_STORED:
            raise InputError(f"{path}: {member} is compressed and cannot be read in parts; remake the file")
        with open(path, "rb") as handle:
            handle.seek(info.header_offset)
            name_length, extra_length = struct.unpack("<HH", handle.read(30)[26:30])
            handle.seek(info.header_offset + 30 + name_length + extra_length)
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran_order, dtype = read_header(handle)
            if fortran_order:
                raise InputError(f"{path}: {member} is stored in Fortran order; remake the file")
            return cls(path, handle.tell(), shape, dtype)

    @property
    def shape(self):
        return (self.stop - self.start, *self.row_shape)

    def __len__(self):
        return self.stop - self.start

    def __array__(self, dtype=None, copy=None):
        rows = self._read(0, len(self))
        return rows if dtype is None else rows.astype(dtype)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            index = range(len(self))[key]
            return self._read(index, index + 1)[0]
        if isinstance(key, slice):
            begin, end, step = key.indices(len(self))
            if step == 1:
                return self._read(begin, max(begin, end))
            key = np.arange(begin, end, step)
        rows = np.asarray(key, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"{self.path}: tile rows out of range 0..{len(self) - 1}")
        out = np.empty((len(rows), *self.row_shape), self.dtype)
        with open(self.path, "rb") as handle:
            for i, row in enumerate(rows):
                out[i] = np.frombuffer(os.pread(handle.fileno(), self.row_bytes, self._at(row)), self.dtype).reshape(
                    self.row_shape
                )
        return out

    def _at(self, row):
        return self.offset + (self.start + int(row)) * self.row_bytes

    def _read(self, begin, end):
        """Rows [begin, end) of this view, in one read, as a new array."""
        count = end - begin
        if count <= 0:
            return np.empty((0, *self.row_shape), self.dtype)
        with open(self.path, "rb") as handle:
            data = os.pread(handle.fileno(), count * self.row_bytes, self._at(begin))
        return np.frombuffer(data, self.dtype).reshape(count, *self.row_shape).copy()

    def follows(self, other):
        """Whether `other` is the rows of the same stored array that come right after this view's."""
        return (other.path, other.offset, other.dtype, other.row_shape) == (
            self.path,
            self.offset,
            self.dtype,
            self.row_shape,
        ) and other.start == self.stop

    def view(self, begin, end):
        """Rows [begin, end) of this view, still on disk."""
        return StoredTiles(
            self.path, self.offset, (0, *self.row_shape), self.dtype, self.start + begin, self.start + end
        )


class RowSubset:
    """Rows `index` of a StoredTiles, read on demand like it: a TileSet.subset of tiles on disk. A RowReader reads
    it row by row through indexing."""

    def __init__(self, store, index):
        self.store, self.index = store, np.asarray(index, np.int64)
        self.dtype = store.dtype

    @property
    def shape(self):
        return (len(self.index), *self.store.shape[1:])

    def __len__(self):
        return len(self.index)

    def __array__(self, dtype=None, copy=None):
        rows = self.store[self.index]
        return rows if dtype is None else rows.astype(dtype)

    def __getitem__(self, key):
        return self.store[self.index[key]]


class RowReader:
    """Reads rows of several StoredTiles (or in-memory arrays) at once: `read(which, rows, out)` sets
    out[i] = stores[which[i]][rows[i]].

    Training reads batches of tiles from anywhere in the training set. Where
    each row lies is worked out once, here; a read opens each file it needs
    once and reads every row straight into `out`, with no copy in between.
    Reads may run in several threads at once.
    """

    def __init__(self, stores):
        self.stores = stores
        on_disk = [s if isinstance(s, StoredTiles) else None for s in stores]
        self.paths = sorted({s.path for s in on_disk if s})
        number = {path: i for i, path in enumerate(self.paths)}
        self.file = np.array([number[s.path] if s else -1 for s in on_disk], np.int64)
        self.base = np.array([s.offset + s.start * s.row_bytes if s else 0 for s in on_disk], np.int64)
        self.row_bytes = np.array([s.row_bytes if s else 0 for s in on_disk], np.int64)
        self.length = np.array([len(s) for s in stores], np.int64)
        self.dtypes = [np.dtype(s.dtype) for s in stores]
        self.dtype_names = np.array([d.str for d in self.dtypes])

    def read(self, which, rows, out):
        which, rows = np.asarray(which, np.int64), np.asarray(rows, np.int64)
        if len(rows) and ((rows < 0) | (rows >= self.length[which])).any():
            raise IndexError("tile rows out of range")
        flat = out.reshape(len(out), -1).view(np.uint8)
        # Read straight from the file: rows on disk of out's dtype and size (NumPy reads and checks the rest).
        direct = (
            (self.file[which] >= 0)
            & (self.dtype_names[which] == out.dtype.str)
            & (self.row_bytes[which] == flat.shape[1])
        )
        for k in np.unique(which[~direct]):  # in memory, or to be converted: NumPy reads them
            at = np.flatnonzero((which == k) & ~direct)
            out[at] = self.stores[k][rows[at]]
        at = np.flatnonzero(direct)
        files, offsets = self.file[which[at]], self.base[which[at]] + rows[at] * self.row_bytes[which[at]]
        handles = {}
        try:
            for f in np.unique(files).tolist():
                handles[f] = os.open(self.paths[f], os.O_RDONLY)
            for i, f, offset in zip(at.tolist(), files.tolist(), offsets.tolist()):
                if os.preadv(handles[f], [flat[i]], offset) != flat.shape[1]:
                    raise InputError(
                        f"{self.paths[f]}: ends before byte {offset + flat.shape[1]}; the file is truncated, remake it"
                    )
        finally:
            for handle in handles.values():
                os.close(handle)
        return out


def empty_reason(tileset):
    """Why a TileSet holds no tiles: the skip's error, or that no cells were found."""
    return f"skipped: {tileset.meta['skipped']}" if tileset.meta.get("skipped") else NO_CELLS
