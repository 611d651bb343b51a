"""Precomputed augmentation: rotations and shifts resampled from the field with no empty corners, each tile's
copies stored once (the lossless rotations and flips happen in the input pipeline: test_pipeline.py)."""

import numpy as np
import pytest

from cellclass.io.tilestore import TileSet
from cellclass.prepare import augment


def tileset_of(field, positions, size):
    rows, cols = np.array(positions).T
    tiles = np.stack([field[r : r + size, c : c + size] for r, c in positions])
    settings = {"tile_size": size, "kind": "fields"}
    return TileSet(tiles, rows, cols, {"sample": "control/f", "settings": settings})


@pytest.fixture
def field():
    # Strictly positive everywhere: a zero anywhere in a rotated tile would be invented fill.
    return (np.random.default_rng(0).random((200, 220, 2)) * 0.9 + 0.1).astype(np.float32)


def test_only_resampled_copies_are_stored_never_the_rotations_and_flips(field):
    tiles = tileset_of(field, [(50, 50), (100, 120)], 32)
    out = augment.augment(tiles, field=field, angles=[30, 90], translations=1)
    assert len(out) == 2 * 4  # the originals, two angles, one shift: no 8 flips/rotations of each
    assert [op for op in out.extra["op"] if not op.startswith("shift")] == ["rot0"] * 2 + ["angle30"] * 2 + [
        "angle90"
    ] * 2
    np.testing.assert_array_equal(out.tiles[out.extra["op"] == "rot0"], tiles.tiles)
    np.testing.assert_array_equal(out.extra["parent"], np.tile([0, 1], 4))
    assert len(augment.augment(tiles)) == 2  # nothing asked: the originals alone


def test_arbitrary_angles_fill_every_corner_from_the_field(field):
    # Tiles at the very border force the sampling window inward instead of padding.
    tiles = tileset_of(field, [(0, 0), (168, 188), (80, 90)], 32)
    out = augment.augment(tiles, field=field, angles=[18, 45, 333])
    rotated = out.tiles[out.extra["op"] != "rot0"]
    assert len(rotated) == 9
    assert rotated.min() >= 0.1 - 1e-6  # no zero (invented) pixels, corners included
    corners = rotated[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners > 0.1 - 1e-6).all()


def test_rotation_by_zero_reproduces_the_tile_and_90_matches_rot90(field):
    size, r, c = 32, 80, 90
    centre = np.array([[r + (size - 1) / 2, c + (size - 1) / 2]])
    same, ok = augment.rotated_crops(field, centre, size, 0.0)
    np.testing.assert_allclose(same[0], field[r : r + size, c : c + size], atol=1e-6)
    quarter, _ = augment.rotated_crops(field, centre, size, 90.0)
    np.testing.assert_allclose(quarter[0], np.rot90(field[r : r + size, c : c + size], 1), atol=1e-5)
    assert ok.all()


def test_translations_are_deterministic_and_shifted(field):
    tiles = tileset_of(field, [(80, 90)], 32)
    a = augment.augment(tiles, field=field, translations=3, max_shift=5, seed=1)
    b = augment.augment(tiles, field=field, translations=3, max_shift=5, seed=1)
    np.testing.assert_array_equal(a.tiles, b.tiles)
    assert len(a) == 4 and all(op.startswith("shift") for op in a.extra["op"][1:])


def test_single_cell_images_get_no_resampled_copies(field, caplog):
    tiles = tileset_of(field, [(0, 0)], 32)
    out = augment.augment(tiles, field=None, angles=[18])
    assert len(out) == 1
    assert "no rotated or shifted copies" in caplog.text


def test_field_too_small_for_an_angle_is_skipped(caplog):
    small = np.ones((34, 34, 1), np.float32)
    tiles = tileset_of(small, [(1, 1)], 32)
    out = augment.augment(tiles, field=small, angles=[45])
    assert len(out) == 1 and "too small to rotate" in caplog.text
