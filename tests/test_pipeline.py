"""The streaming pipeline: each tile once per pass, a global shuffle per pass, reproducible, channels selected."""

import numpy as np
from scipy import stats

from cellclass.learn import pipeline
from cellclass.io import tilestore
from cellclass.io.tilestore import TileSet


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
    data, total = pipeline.make_dataset(
        files, labels, n_classes=2, tile_shape=(4, 4, 1), batch_size=4, channels=[1]
    )
    assert total == 35 and data.cardinality().numpy() == 9
    batches = list(data.as_numpy_iterator())
    assert batches[0][0].shape == (4, 4, 4, 1) and np.allclose(batches[0][0], 0.9, atol=1e-3)  # float16 on disk
    assert sum(len(b[0]) for b in batches) == 35


def test_dataset_iterations_are_the_generators_passes(tmp_path):
    files, labels = tile_files(tmp_path)
    kwargs = dict(n_classes=2, tile_shape=(4, 4, 2), batch_size=4, shuffle=True, seed=3)
    data, _ = pipeline.make_dataset(files, labels, **kwargs)
    generate, _ = pipeline.batches(files, labels, n_classes=2, batch_size=4, shuffle=True, seed=3)
    for _ in range(2):  # each epoch a fresh, differently shuffled pass, in the generator's order
        streamed = np.concatenate([x for x, _ in data.as_numpy_iterator()])
        np.testing.assert_array_equal(streamed, one_pass(generate)[0])
    resumed, _ = pipeline.make_dataset(files, labels, first_pass=2, **kwargs)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in resumed.as_numpy_iterator()]), one_pass(generate)[0])
    endless = np.concatenate([x for x, _ in data.repeat().take(18).as_numpy_iterator()])
    assert sorted(np.rint(endless[:35, 0, 0, 0] * 100).astype(int)) == list(range(35))


def test_batches_mix_classes_as_a_global_shuffle_would(tmp_path):
    """The worst layout for a stream: 1,200 single-cell images of 6 classes, stored class by class in 12 shards
    (as per-class folders without hashing, or one file per image, would give). Every batch must still hold the
    classes in about their overall shares: the per-batch chi-square against those shares averages about its
    degrees of freedom (5) under a global shuffle, and in the hundreds for a stream that mixes a few files."""
    classes, per_class, batch = 6, 200, 32
    tilesets = [
        TileSet(np.full((1, 2, 2, 1), c / 10, np.float32), np.array([-1]), np.array([-1]),
                {"sample": f"c{c}/{i}", "class": str(c), "group": f"c{c}/{i}", "files": []})
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
