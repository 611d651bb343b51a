"""Shard files: many images' tiles in one file, read back per image, memory-mapped, refusing what cannot stack."""

import numpy as np
import pytest

from cellclass.io import tilestore
from cellclass.io.errors import InputError
from cellclass.io.tilestore import TileSet


def image(name, n, channels=2, skipped=None):
    tiles = np.random.default_rng(len(name)).random((n, 8, 8, channels), dtype=np.float32)
    meta = {"sample": name, "class": "a", "group": name, "files": [f"{name}.tif"], "skipped": skipped}
    return TileSet(tiles, np.arange(n), np.arange(n) * 2, meta, {"op": np.array([f"op{i}" for i in range(n)])})


def test_round_trip_keeps_each_images_tiles_positions_and_metadata(tmp_path):
    images = [image("a", 3), image("b", 0, channels=1, skipped="unreadable"), image("c", 2)]
    tilestore.save(tmp_path / "s.npz", images)
    loaded = tilestore.load(tmp_path / "s.npz")
    assert [t.meta for t in loaded] == [t.meta for t in images]
    for before, after in zip(images, loaded):
        assert len(after) == len(before)
        if len(before):
            np.testing.assert_allclose(after.tiles, before.tiles, atol=1e-3)  # float16 on disk
        np.testing.assert_array_equal(after.cols, before.cols)
        assert after.tile_ids() == before.tile_ids()
    assert isinstance(loaded[0].tiles, tilestore.StoredTiles)  # read on demand, not into memory
    np.testing.assert_array_equal(loaded[0].tiles[[2, 0]], np.asarray(loaded[0].tiles)[[2, 0]])
    np.testing.assert_array_equal(loaded[2].tiles[1], np.asarray(loaded[2].tiles)[1])
    with pytest.raises(IndexError):
        loaded[2].tiles[[2]]
    light = tilestore.load(tmp_path / "s.npz", tiles=False)
    assert [len(t) for t in light] == [3, 0, 2] and light[0].tiles.size == 0


def test_images_whose_tiles_cannot_stack_are_named(tmp_path):
    with pytest.raises(InputError, match=r"c\.tif: tiles of shape \(8, 8, 1\), but a\.tif gave \(8, 8, 2\)"):
        tilestore.save(tmp_path / "s.npz", [image("a", 2), image("c", 2, channels=1)])
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_a_compressed_shard_is_refused_by_name(tmp_path):
    np.savez_compressed(
        tmp_path / "z.npz",
        tiles=np.zeros((2, 8, 8, 1), np.float16),
        image=np.zeros(2, np.int32),
        rows=np.zeros(2, np.int32),
        cols=np.zeros(2, np.int32),
        meta=np.array('[{"sample": "x"}]'),
    )
    with pytest.raises(InputError, match="z.npz: tiles.npy is compressed and cannot be read in parts"):
        tilestore.load(tmp_path / "z.npz")


def test_row_reader_reads_rows_of_many_files_and_arrays_at_once(tmp_path):
    tilestore.save(tmp_path / "s0.npz", [image("a", 3), image("bb", 4)])
    tilestore.save(tmp_path / "s1.npz", [image("ccc", 5)])
    stores = [t.tiles for t in tilestore.load_all([tmp_path / "s0.npz", tmp_path / "s1.npz"])]
    stores.append(image("in memory", 2).tiles.astype(np.float16))  # not on disk: read by NumPy
    which = np.array([2, 0, 1, 3, 2, 1, 0])
    rows = np.array([4, 0, 3, 1, 0, 3, 2])
    out = tilestore.RowReader(stores).read(which, rows, np.empty((7, 8, 8, 2), np.float16))
    expected = np.stack([np.asarray(stores[k])[r] for k, r in zip(which, rows)])
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(IndexError):
        tilestore.RowReader(stores).read(np.array([1]), np.array([4]), np.empty((1, 8, 8, 2), np.float16))


def test_row_reader_names_a_truncated_file(tmp_path):
    tilestore.save(tmp_path / "s.npz", [image("a", 3)])
    (stored,) = tilestore.load(tmp_path / "s.npz")
    end = stored.tiles.offset + 2 * stored.tiles.row_bytes + 10  # the last tile cut short
    with open(tmp_path / "s.npz", "r+b") as f:
        f.truncate(end)
    reader = tilestore.RowReader([stored.tiles])
    reader.read(np.array([0]), np.array([1]), np.empty((1, 8, 8, 2), np.float16))  # whole rows still read
    with pytest.raises(InputError, match=r"s\.npz: ends before byte .* truncated"):
        reader.read(np.array([0]), np.array([2]), np.empty((1, 8, 8, 2), np.float16))


def test_a_subset_keeps_its_rows_and_reads_stored_tiles_on_demand(tmp_path):
    tilestore.save(tmp_path / "s.npz", [image("a", 5)])
    [stored] = tilestore.load(tmp_path / "s.npz")
    part = stored.subset([False, True, False, True, True])
    assert isinstance(part.tiles, tilestore.RowSubset) and part.tiles.shape == (3, 8, 8, 2) and len(part) == 3
    np.testing.assert_array_equal(np.asarray(part.tiles), np.asarray(stored.tiles)[[1, 3, 4]])
    assert part.tile_ids() == [stored.tile_ids()[i] for i in (1, 3, 4)] and part.meta == stored.meta
    # A RowReader reads it as it reads the whole TileSet.
    out = np.empty((2, 8, 8, 2), np.float16)
    tilestore.RowReader([part.tiles]).read([0, 0], [2, 0], out)
    np.testing.assert_array_equal(out, np.asarray(stored.tiles)[[4, 1]])
    in_memory = image("b", 4).subset([0, 2])
    assert isinstance(in_memory.tiles, np.ndarray) and list(in_memory.rows) == [0, 2]


def test_read_tiles_joins_consecutive_stored_views_and_keeps_the_order(tmp_path):
    tilestore.save(tmp_path / "a.npz", [image(f"a{n}", n) for n in (2, 0, 3, 1)])
    tilestore.save(tmp_path / "b.npz", [image("b", 2)])
    loaded = tilestore.load(tmp_path / "a.npz") + tilestore.load(tmp_path / "b.npz")
    in_memory = TileSet(np.ones((2, 8, 8, 2), np.float16), np.zeros(2, int), np.zeros(2, int), {"sample": "m"})
    # Views of a.npz out of order, one of b.npz, one in memory: each run of neighbours is read once.
    order = [loaded[2], loaded[3], loaded[0], in_memory, loaded[4]]
    expected = np.concatenate([np.asarray(t.tiles) for t in order])
    np.testing.assert_array_equal(tilestore.read_tiles(order), expected)
    assert loaded[0].tiles.follows(loaded[2].tiles) and not loaded[2].tiles.follows(loaded[0].tiles)
    assert not loaded[3].tiles.follows(loaded[4].tiles)  # another file
