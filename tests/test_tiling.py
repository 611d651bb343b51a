"""Tiling: foreground mask, background tiles skipped, positions, single-cell images, bad images."""

import numpy as np
import pytest
import tifffile

from cellclass.config import validate
from cellclass.io import tilestore
from cellclass.io.datasets import Sample
from cellclass.io.errors import InputError
from cellclass.prepare import foreground, tiling


def blob_field(size=256, centres=((64, 64), (64, 190), (190, 128)), radius=20, seed=0):
    """A noisy field with round bright 'cells' on a dark background, as uint16 counts."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    signal = np.zeros((size, size))
    for cy, cx in centres:
        signal += 2000.0 * (((yy - cy) ** 2 + (xx - cx) ** 2) < radius**2)
    return (100 + rng.poisson(signal + 50) + rng.normal(0, 3, signal.shape)).clip(0, 65535).astype(np.uint16)


def settings(**prepare):
    config = validate({"prepare": prepare, "datasets": {"d": {"demo": {"pattern": "aggregates"}}}})
    return config["datasets"]["d"]["prepare"]


def test_foreground_mask_finds_cells_and_rejects_pure_noise():
    field = blob_field()[..., None] / 65535.0
    mask = foreground.foreground_mask(field, **settings()["foreground"])
    assert mask[64, 64] and mask[190, 128] and not mask[128, 20]
    noise = np.random.default_rng(1).normal(0.1, 0.01, (256, 256, 1))
    assert not foreground.foreground_mask(noise, **settings()["foreground"]).any()


def test_fractions_match_a_direct_count():
    mask = np.random.default_rng(0).random((100, 90)) > 0.7
    fractions = tiling.foreground_fractions(mask, 32, 16)
    rows, cols = tiling.tile_positions(mask.shape, 32, 16)
    for r, c, f in zip(rows.ravel(), cols.ravel(), fractions.ravel()):
        assert f == pytest.approx(mask[r : r + 32, c : c + 32].mean())


def test_background_tiles_are_skipped_and_positions_point_at_pixels():
    field = np.random.default_rng(0).random((128, 128, 2)).astype(np.float32)
    mask = np.zeros((128, 128), bool)
    mask[0:32, 64:96] = True
    tiles, rows, cols = tiling.tile_field(field, mask, size=32, stride=32, min_fraction=0.5, out_size=32)
    assert (rows.tolist(), cols.tolist()) == ([0], [64])
    np.testing.assert_array_equal(tiles[0], field[0:32, 64:96])


def test_resize_to_network_size():
    field = np.random.default_rng(0).random((128, 128, 1)).astype(np.float32)
    tiles, _, _ = tiling.tile_field(field, np.ones((128, 128), bool), size=64, stride=64, min_fraction=0, out_size=32)
    assert tiles.shape == (4, 32, 32, 1)


def test_fit_cell_pads_to_square_and_resizes():
    cell = np.zeros((30, 50, 1), np.float32)
    cell[5:25, 5:45] = 1.0
    tile = tiling.fit_cell(cell, 40)
    assert tile.shape == (1, 40, 40, 1)
    assert tile[0, 0, 20, 0] == pytest.approx(0.0) and tile[0, 20, 20, 0] == pytest.approx(1.0)


def write_tiff(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array)
    return Sample("control/" + path.stem, (str(path),), "control", "g")


def test_tile_sample_end_to_end_and_round_trip(tmp_path):
    sample = write_tiff(tmp_path / "control" / "f.tif", blob_field())
    tileset = tiling.tile_sample(sample, settings(tile_size=32), dataset="d")
    assert 8 <= len(tileset) <= 40
    assert tileset.tiles.dtype == np.float32 and 0 <= tileset.tiles.min() and tileset.tiles.max() <= 1
    assert tileset.meta["bit_depth"] == 16 and tileset.meta["settings"]["tile_size"] == 32
    tilestore.save(tmp_path / "out.npz", [tileset])
    (loaded,) = tilestore.load(tmp_path / "out.npz")
    np.testing.assert_allclose(loaded.tiles, tileset.tiles, atol=1e-3)
    assert loaded.tile_ids()[0].startswith("control/f@")
    assert loaded.meta == tileset.meta


def test_tiling_is_deterministic(tmp_path):
    sample = write_tiff(tmp_path / "control" / "f.tif", blob_field())
    a = tiling.tile_sample(sample, settings(tile_size=32))
    b = tiling.tile_sample(sample, settings(tile_size=32))
    np.testing.assert_array_equal(a.tiles, b.tiles)


def test_empty_field_gives_no_tiles_not_an_error(tmp_path, caplog):
    noise = np.random.default_rng(0).poisson(100, (128, 128)).astype(np.uint16)
    sample = write_tiff(tmp_path / "control" / "empty.tif", noise)
    assert len(tiling.tile_sample(sample, settings(tile_size=32))) == 0
    assert "no cells found" in caplog.text


def test_image_smaller_than_a_tile(tmp_path):
    sample = write_tiff(tmp_path / "control" / "small.tif", blob_field()[:20, :20])
    with pytest.raises(InputError, match=r"small.tif: image is 20x20 px, smaller than one tile \(32 px\)"):
        tiling.tile_sample(sample, settings(tile_size=32))


@pytest.mark.parametrize("content", [b"", b"this is not a tiff"])
def test_bad_image_fails_or_is_skipped_as_configured(tmp_path, content, caplog):
    path = tmp_path / "control" / "bad.tif"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    sample = Sample("control/bad", (str(path),), "control", "g")
    with pytest.raises(InputError, match="bad.tif"):
        tiling.tile_sample(sample, settings())
    skipped = tiling.tile_sample(sample, settings(on_bad_image="skip"))
    assert len(skipped) == 0 and "bad.tif" in skipped.meta["skipped"]
    assert "skipping" in caplog.text


def test_complex_pixels_are_rejected(tmp_path):
    sample = write_tiff(tmp_path / "control" / "complex.tif", np.ones((64, 64), np.complex64))
    with pytest.raises(InputError, match="complex.tif"):
        tiling.tile_sample(sample, settings(tile_size=32))


def test_cells_kind_gives_one_tile_per_image(tmp_path):
    sample = write_tiff(tmp_path / "control" / "cell.tif", blob_field(size=50, centres=((25, 25),)))
    tileset = tiling.tile_sample(sample, settings(kind="cells", tile_size=32))
    assert tileset.tiles.shape == (1, 32, 32, 1)
