"""The streaming pipeline: each tile once per pass, shuffled per pass, reproducible, channels selected."""

import numpy as np

from cellclass import pipeline, tilestore
from cellclass.tilestore import TileSet


def tile_files(folder, n_files=5, per_file=7):
    """Files whose tiles carry their own global index in every pixel, so batches can be traced back."""
    files = []
    for f in range(n_files):
        values = np.arange(f * per_file, (f + 1) * per_file, dtype=np.float32) / 100
        tiles = np.repeat(values, 4 * 4 * 2).reshape(per_file, 4, 4, 2)
        tiles[..., 1] = 0.9
        meta = {"sample": f"s{f}", "class": "ab"[f % 2], "group": f"s{f}", "files": []}
        path = folder / f"f{f}.npz"
        tilestore.save(path, TileSet(tiles, np.zeros(per_file), np.zeros(per_file), meta))
        files.append(str(path))
    return files, [f % 2 for f in range(n_files)]


def one_pass(generate):
    xs, ys = zip(*generate())
    return np.concatenate(xs), np.concatenate(ys)


def test_every_tile_once_per_pass_with_its_label(tmp_path):
    files, labels = tile_files(tmp_path)
    generate = pipeline.batches(files, labels, n_classes=2, batch_size=4, shuffle=True, seed=0, files_at_once=2)
    x, y = one_pass(generate)
    index = np.rint(x[:, 0, 0, 0] * 100).astype(int)
    assert sorted(index) == list(range(35))
    np.testing.assert_array_equal(y.argmax(1), (index // 7) % 2)  # labels travel with their tiles
    second = np.rint(one_pass(generate)[0][:, 0, 0, 0] * 100).astype(int)
    assert sorted(second) == list(range(35)) and list(second) != list(index)


def test_same_seed_same_order_and_resume_continues_the_sequence(tmp_path):
    files, labels = tile_files(tmp_path)
    make = lambda first: pipeline.batches(files, labels, n_classes=2, batch_size=4, shuffle=True, first_pass=first)  # noqa: E731
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
    kwargs = dict(n_classes=2, tile_shape=(4, 4, 2), batch_size=4, shuffle=True, seed=3, files_at_once=2)
    data, _ = pipeline.make_dataset(files, labels, **kwargs)
    generate = pipeline.batches(files, labels, n_classes=2, batch_size=4, shuffle=True, seed=3, files_at_once=2)
    for _ in range(2):  # each epoch a fresh, differently shuffled pass, in the generator's order
        streamed = np.concatenate([x for x, _ in data.as_numpy_iterator()])
        np.testing.assert_array_equal(streamed, one_pass(generate)[0])
    resumed, _ = pipeline.make_dataset(files, labels, first_pass=2, **kwargs)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in resumed.as_numpy_iterator()]), one_pass(generate)[0])
    endless = np.concatenate([x for x, _ in data.repeat().take(18).as_numpy_iterator()])
    assert sorted(np.rint(endless[:35, 0, 0, 0] * 100).astype(int)) == list(range(35))
