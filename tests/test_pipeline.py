"""The streaming pipeline: each tile once per pass, a global shuffle per pass, reproducible, channels selected,
augmented on the fly as a pure function of (seed, pass, batch)."""

import numpy as np
import pytest
from scipy import stats

from cellclass.io import tilestore
from cellclass.io.tilestore import TileSet
from cellclass.learn import pipeline


def tile_files(folder, n_files=5, per_file=7):
    """Images, in two shard files, whose tiles carry their own global index in every pixel, so batches can be
    traced back; returns the memory-mapped TileSets and their labels."""
    tilesets = []
    for f in range(n_files):
        values = np.arange(f * per_file, (f + 1) * per_file, dtype=np.float32) / 100
        tiles = np.repeat(values, 4 * 4 * 2).reshape(per_file, 4, 4, 2)
        tiles[..., 1] = 0.9
        meta = {"sample": f"s{f}", "class": "ab"[f % 2], "group": f"s{f}", "files": []}
        tilesets.append(TileSet(tiles, np.zeros(per_file), np.zeros(per_file), meta))
    tilestore.save(folder / "shard0.npz", tilesets[:2])
    tilestore.save(folder / "shard1.npz", tilesets[2:])
    return tilestore.load_all([folder / "shard0.npz", folder / "shard1.npz"]), [f % 2 for f in range(n_files)]


def one_pass(generate):
    xs, ys = zip(*generate())
    return np.concatenate(xs), np.concatenate(ys)


def test_every_tile_once_per_pass_with_its_label(tmp_path):
    files, labels = tile_files(tmp_path)
    generate, total = pipeline.batches(files, labels, n_classes=2, batch_size=4, shuffle=True, seed=0)
    assert total == 35
    x, y = one_pass(generate)
    index = np.rint(x[:, 0, 0, 0] * 100).astype(int)
    assert sorted(index) == list(range(35))
    np.testing.assert_array_equal(y.argmax(1), (index // 7) % 2)  # labels travel with their tiles
    second = np.rint(one_pass(generate)[0][:, 0, 0, 0] * 100).astype(int)
    assert sorted(second) == list(range(35)) and list(second) != list(index)


def test_same_seed_same_order_and_resume_continues_the_sequence(tmp_path):
    files, labels = tile_files(tmp_path)
    make = lambda first: pipeline.batches(files, labels, n_classes=2, batch_size=4, shuffle=True, first_pass=first)[0]  # noqa: E731
    fresh = make(0)
    one_pass(fresh)
    np.testing.assert_array_equal(one_pass(fresh)[0], one_pass(make(1))[0])


def test_channel_selection_and_dataset_length(tmp_path):
    files, labels = tile_files(tmp_path)
    data, stream = pipeline.make_dataset(files, labels, n_classes=2, tile_shape=(4, 4, 1), batch_size=4, channels=[1])
    assert stream.tiles_per_pass == 35 and data.cardinality().numpy() == 9
    batches = list(data.as_numpy_iterator())
    assert batches[0][0].shape == (4, 4, 4, 1) and np.allclose(batches[0][0], 0.9, atol=1e-3)  # float16 on disk
    assert sum(len(b[0]) for b in batches) == 35
    assert [len(b[0]) for b in data.as_numpy_iterator()] == [4] * 8 + [3]  # each iteration the same, whole pass


def test_the_endless_stream_is_the_generators_passes_one_after_another(tmp_path):
    files, labels = tile_files(tmp_path)
    kwargs = dict(n_classes=2, batch_size=4, shuffle=True, seed=3)
    data, stream = pipeline.make_dataset(files, labels, tile_shape=(4, 4, 2), endless=True, **kwargs)
    generate, _ = pipeline.batches(files, labels, **kwargs)
    streamed = np.concatenate([x for x, _ in data.take(3 * stream.per_pass).as_numpy_iterator()])
    passes = [one_pass(generate)[0] for _ in range(3)]
    np.testing.assert_array_equal(streamed, np.concatenate(passes))
    index = np.rint(streamed[:, 0, 0, 0] * 100).astype(int).reshape(3, 35)
    assert all(sorted(p) == list(range(35)) for p in index) and len({tuple(p) for p in index}) == 3


def test_tiles_as_stored_without_augmentation(tmp_path):
    files, labels = tile_files(tmp_path)
    for augment in (None, pipeline.NO_AUGMENTATION):
        stream = pipeline.Batches(files, labels, n_classes=2, batch_size=35, augment=augment)
        x, _ = stream.batch(0, 0)
        stored = np.concatenate([np.asarray(t.tiles) for t in files]).astype(np.float32)
        np.testing.assert_array_equal(x, stored)


def test_batches_mix_classes_as_a_global_shuffle_would(tmp_path):
    """The worst layout for a stream: 1,200 single-cell images of 6 classes, stored class by class in 12 shards
    (as per-class folders without hashing, or one file per image, would give). Every batch must still hold the
    classes in about their overall shares: the per-batch chi-square against those shares averages about its
    degrees of freedom (5) under a global shuffle, and in the hundreds for a stream that mixes a few files."""
    classes, per_class, batch = 6, 200, 32
    tilesets = [
        TileSet(
            np.full((1, 2, 2, 1), c / 10, np.float32),
            np.array([-1]),
            np.array([-1]),
            {"sample": f"c{c}/{i}", "class": str(c), "group": f"c{c}/{i}", "files": []},
        )
        for c in range(classes)
        for i in range(per_class)
    ]
    paths = []
    for k in range(12):
        paths.append(tmp_path / f"shard{k}.npz")
        tilestore.save(paths[-1], tilesets[k * 100 : (k + 1) * 100])
    loaded = tilestore.load_all(paths)
    labels = [int(t.meta["class"]) for t in loaded]
    generate, _ = pipeline.batches(loaded, labels, n_classes=classes, batch_size=batch, shuffle=True, seed=0)
    full = [y.sum(axis=0) for _, y in generate() if len(y) == batch]
    chi2 = [stats.chisquare(counts, np.full(classes, batch / classes)).statistic for counts in full]
    assert np.mean(chi2) < 8
    assert min(np.count_nonzero(counts) for counts in full) >= 4


# --- augmentation on the fly ---

OPTIONS = dict(pipeline.NO_AUGMENTATION, dihedral=True, brightness=0.1, contrast=0.2, noise=0.05, scale=0.1)


def random_tiles(n=16, size=12, channels=3, seed=0):
    return np.random.default_rng(seed).random((n, size, size, channels), dtype=np.float32)


def dihedral_copies(tile):
    """The 8 rotations/flips of one (h, w, c) tile, by np.rot90 and np.fliplr."""
    return [np.rot90(t, k) for t in (tile, np.fliplr(tile)) for k in range(4)]


def test_dihedral_ops_are_the_eight_rotations_and_flips_each_a_permutation_of_pixels():
    tiles = random_tiles(n=8)
    turned = pipeline.dihedral(tiles, np.arange(8))
    for tile, out in zip(tiles, turned):
        matches = [k for k, copy in enumerate(dihedral_copies(tile)) if np.array_equal(out, copy)]
        assert len(matches) == 1  # one of the group, and the random tile tells them apart
        np.testing.assert_array_equal(np.sort(out, axis=None), np.sort(tile, axis=None))  # pixels moved, none made
    same = np.repeat(tiles[:1], 8, axis=0)
    found = {
        next(k for k, c in enumerate(dihedral_copies(same[0])) if np.array_equal(o, c))
        for o in pipeline.dihedral(same, np.arange(8))
    }
    assert found == set(range(8))  # the 8 ops are the whole group
    np.testing.assert_array_equal(pipeline.dihedral(tiles, np.zeros(8, int)), tiles)


def test_non_square_tiles_are_only_flipped():
    tiles = random_tiles(n=8)[:, :, :9]
    out = pipeline.augment_batch(tiles.copy(), np.random.default_rng(0), dict(pipeline.NO_AUGMENTATION, dihedral=True))
    assert out.shape == tiles.shape
    for tile, o in zip(tiles, out):
        assert any(np.array_equal(o, f) for f in (tile, tile[::-1], tile[:, ::-1], tile[::-1, ::-1]))


def test_brightness_adds_one_offset_per_tile_and_channel_within_its_range():
    tiles = random_tiles(n=200)
    base = dict(pipeline.NO_AUGMENTATION, dihedral=True)
    plain = pipeline.augment_batch(tiles.copy(), np.random.default_rng(5), base)
    bright = pipeline.augment_batch(tiles.copy(), np.random.default_rng(5), dict(base, brightness=0.1))
    offset = bright - plain  # the same rotation/flip either way: an op's draws do not depend on the others
    per_channel = offset[:, :1, :1, :]
    np.testing.assert_allclose(offset, np.broadcast_to(per_channel, offset.shape), atol=1e-6)
    assert np.abs(per_channel).max() <= 0.1 + 1e-6 and np.abs(per_channel).max() > 0.09
    assert per_channel.min() < -0.05 and per_channel.max() > 0.05  # both ways


def test_contrast_scales_about_each_channels_mean_within_its_range():
    tiles = random_tiles(n=200)
    out = pipeline.augment_batch(tiles.copy(), np.random.default_rng(1), dict(pipeline.NO_AUGMENTATION, contrast=0.2))
    mean = tiles.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out.mean(axis=(1, 2), keepdims=True), mean, atol=1e-5)
    centred = tiles - mean
    factor = ((out - mean) * centred).sum(axis=(1, 2)) / (centred**2).sum(axis=(1, 2))  # per tile and channel
    np.testing.assert_allclose(out - mean, centred * factor[:, None, None, :], atol=1e-5)  # and nothing else
    assert factor.min() >= 0.8 - 1e-4 and factor.max() <= 1.2 + 1e-4 and factor.max() - factor.min() > 0.3


def test_noise_has_the_asked_spread_and_no_bias():
    tiles = np.full((50, 32, 32, 2), 0.5, np.float32)
    out = pipeline.augment_batch(tiles.copy(), np.random.default_rng(2), dict(pipeline.NO_AUGMENTATION, noise=0.05))
    noise = out - tiles
    # 102,400 draws: the sample mean and sd lie within a few standard errors (1.6e-4, 1.1e-4) of 0 and 0.05.
    assert abs(noise.mean()) < 0.001 and abs(noise.std() - 0.05) < 0.001


def test_zoom_keeps_the_tile_at_one_and_magnifies_about_the_centre():
    tiles = random_tiles(n=4)
    np.testing.assert_array_equal(pipeline.zoom(tiles, np.ones(4)), tiles)
    # A ramp along the rows (and one along the columns) zoomed by s: value (i - c) / s + c, bilinear is exact on it.
    size, centre = 12, 5.5
    ramp = np.broadcast_to(np.arange(size, dtype=np.float32)[:, None, None], (size, size, 2)).copy()
    ramp[..., 1] = ramp[..., 0].T
    factors = np.array([1.1, 1.05, 0.95, 0.9])
    out = pipeline.zoom(np.repeat(ramp[None], 4, axis=0), factors)
    for o, s in zip(out, factors):
        expected = np.clip(centre + (np.arange(size) - centre) / s, 0, size - 1)  # zooming out repeats the edge
        np.testing.assert_allclose(o[:, 3, 0], expected, atol=1e-5)
        np.testing.assert_allclose(o[7, :, 1], expected, atol=1e-5)
    zoomed = pipeline.zoom(tiles, factors)
    assert zoomed.min() >= tiles.min() - 1e-6 and zoomed.max() <= tiles.max() + 1e-6  # means of real pixels only


def test_augmented_batches_are_a_pure_function_of_seed_pass_and_batch(tmp_path):
    files, labels = tile_files(tmp_path, per_file=20)
    for t in files:
        t.tiles = np.random.default_rng(len(t.meta["sample"])).random((len(t), 4, 4, 2), dtype=np.float32)

    def make(seed=0):
        return pipeline.Batches(files, labels, n_classes=2, batch_size=8, shuffle=True, seed=seed, augment=OPTIONS)

    a, b = make(), make()
    np.testing.assert_array_equal(a.batch(2, 3)[0], b.batch(2, 3)[0])  # another instance, same batch
    np.testing.assert_array_equal(a.batch(2, 3)[0], a.batch(2, 3)[0])
    assert not np.array_equal(a.batch(2, 3)[0], a.batch(3, 3)[0])  # another epoch
    assert not np.array_equal(a.batch(2, 3)[0], make(seed=1).batch(2, 3)[0])  # another run seed
    # The same tiles in two passes are augmented differently: same order, other draws.
    plain = pipeline.Batches(files, labels, n_classes=2, batch_size=100, augment=OPTIONS)
    assert not np.array_equal(plain.batch(0, 0)[0], plain.batch(1, 0)[0])
    np.testing.assert_array_equal(plain.batch(0, 0)[1], plain.batch(1, 0)[1])


@pytest.mark.parametrize("epoch_tiles", [None, 48])
def test_a_resumed_run_sees_what_an_uninterrupted_run_would_have(tmp_path, epoch_tiles):
    files, labels = tile_files(tmp_path)
    kwargs = dict(n_classes=2, tile_shape=(4, 4, 2), batch_size=4, epoch_tiles=epoch_tiles, seed=7, augment=OPTIONS)
    data, steps, total = pipeline.training_stream(files, labels, **kwargs)
    assert total == 35 and steps == (9 if epoch_tiles is None else 12)
    uninterrupted = [x for x, _ in data.take(3 * steps).as_numpy_iterator()]
    resumed, _, _ = pipeline.training_stream(files, labels, epochs_done=2, **kwargs)
    for got, expected in zip(resumed.take(steps).as_numpy_iterator(), uninterrupted[2 * steps :], strict=True):
        np.testing.assert_array_equal(got[0], expected)
    assert not np.array_equal(np.concatenate(uninterrupted[:steps]), np.concatenate(uninterrupted[steps : 2 * steps]))


def test_batches_made_in_parallel_are_those_made_one_by_one(tmp_path):
    files, labels = tile_files(tmp_path, n_files=8, per_file=40)
    stream = pipeline.Batches(files, labels, n_classes=2, batch_size=16, shuffle=True, seed=1, augment=OPTIONS)
    one = [x for x, _ in pipeline.as_dataset(stream, (4, 4, 2), endless=True, workers=1).take(40).as_numpy_iterator()]
    four = [x for x, _ in pipeline.as_dataset(stream, (4, 4, 2), endless=True, workers=4).take(40).as_numpy_iterator()]
    for a, b in zip(one, four, strict=True):
        np.testing.assert_array_equal(a, b)


def stored_copies(tileset):
    """A TileSet's 8 dihedral copies as the augment job stored them before augmentation moved into the pipeline:
    np.rot90 by 0-3 quarter turns of the tiles, then of the tiles flipped left-right, each block all tiles."""
    tiles = np.asarray(tileset.tiles, dtype=np.float32)
    blocks = [np.rot90(base, k, axes=(1, 2)) for base in (tiles, tiles[:, :, ::-1]) for k in range(4)]
    n = 8 * len(tileset)
    return TileSet(np.concatenate(blocks), np.zeros(n), np.zeros(n), tileset.meta)


@pytest.mark.parametrize("balance", [False, True])
def test_views_all_gives_batch_for_batch_what_stored_copies_gave(tmp_path, balance):
    rng = np.random.default_rng(0)
    tilesets = [
        TileSet(rng.random((n, 4, 4, 2), dtype=np.float32), np.zeros(n), np.zeros(n), {"sample": f"s{n}"})
        for n in (3, 5, 2, 9)
    ]
    labels = [0, 1, 1, 1]
    common = dict(n_classes=2, batch_size=6, shuffle=True, seed=3, balance=balance)
    stored = pipeline.Batches([stored_copies(t) for t in tilesets], labels, **common)
    on_the_fly = pipeline.Batches(tilesets, labels, augment={"dihedral": True}, views="all", **common)
    assert on_the_fly.per_pass == stored.per_pass
    for p in range(2):
        for b in range(stored.per_pass):
            for new, old in zip(on_the_fly.batch(p, b), stored.batch(p, b)):
                np.testing.assert_array_equal(new, old)


def test_views_all_shows_every_tile_in_each_view_once_a_pass(tmp_path):
    files, labels = tile_files(tmp_path)
    stream = pipeline.Batches(
        files, labels, n_classes=2, batch_size=8, shuffle=True, augment={"dihedral": True}, views="all"
    )
    assert stream.tiles_per_pass == 8 * 35
    pairs = {(o, r, v) for o, r, v in zip(stream.owner, stream.row, stream.view)}
    assert len(pairs) == 8 * 35 and {v for *_, v in pairs} == set(range(8))
