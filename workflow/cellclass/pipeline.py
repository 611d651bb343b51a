"""Stream tiles from per-image files into Keras, in bounded memory.

Files are read `files_at_once` at a time in a random order; their tiles are
shuffled together and cut into batches, the remainder carried into the next
chunk. Memory is bounded by one chunk of files whatever the dataset's size,
and every batch still mixes tiles of many images (so of both classes).
"""

import math

import numpy as np

from cellclass import tilestore


def tile_counts(files):
    """Number of tiles in each file, read from the small arrays only."""
    return [len(tilestore.load(f, tiles=False).rows) for f in files]


def balancing_repeats(counts, labels, n_classes):
    """How often each file is read per pass so that every class brings about as many tiles as the largest.

    Whole files are repeated (an integer per class), so a pass has a fixed length.
    """
    per_class = np.bincount(np.asarray(labels, dtype=int), weights=np.asarray(counts, dtype=float), minlength=n_classes)
    present = per_class[per_class > 0]
    factor = np.ones(n_classes, dtype=int)
    if len(present):
        factor[per_class > 0] = np.maximum(1, np.rint(present.max() / present)).astype(int)
    return [int(factor[label]) for label in labels]


def batches(files, labels, *, n_classes, batch_size, channels=None, shuffle=False, seed=0, files_at_once=8,
            first_pass=0, repeats=None):
    """A generator factory: each call yields one pass of (tiles float32, one-hot labels) batches.

    Pass k shuffles with (seed, k), so a run resumed at epoch k sees the order
    an uninterrupted run would have seen. `repeats[i]` reads file i that many
    times per pass (balanced sampling of the classes).
    """
    repeats = repeats or [1] * len(files)
    # Files without tiles (skipped images, fields without cells) add nothing, and
    # their empty arrays need not have the others' channel count.
    kept = [i for i, n in enumerate(tile_counts(files)) for _ in range(repeats[i]) if n]
    files, labels = [files[i] for i in kept], [labels[i] for i in kept]
    passes = first_pass
    eye = np.eye(n_classes, dtype=np.float32)

    def generate():
        nonlocal passes
        rng = np.random.default_rng([seed, passes])
        passes += 1
        order = rng.permutation(len(files)) if shuffle else np.arange(len(files))
        carry_x, carry_y = None, np.empty(0, dtype=np.int64)
        for start in range(0, len(order), files_at_once):
            chunk = [select_channels(tilestore.load(files[i]).tiles, channels) for i in order[start : start + files_at_once]]
            x = np.concatenate(([carry_x] if carry_x is not None else []) + chunk)
            y = np.concatenate([carry_y] + [np.full(len(t), labels[i]) for t, i in zip(chunk, order[start:])])
            if shuffle:
                mix = rng.permutation(len(y))
                x, y = x[mix], y[mix]
            full = len(y) // batch_size * batch_size
            for b in range(0, full, batch_size):
                yield x[b : b + batch_size].astype(np.float32), eye[y[b : b + batch_size]]
            carry_x, carry_y = x[full:], y[full:]
        if len(carry_y):
            yield carry_x.astype(np.float32), eye[carry_y]

    return generate


def select_channels(tiles, channels):
    """The tiles' channels fed to the network (None: all)."""
    return tiles if channels is None else tiles[..., list(channels)]


def make_dataset(files, labels, *, n_classes, tile_shape, batch_size, channels=None, shuffle=False, seed=0,
                 files_at_once=8, first_pass=0, repeats=None):
    """A tf.data pipeline of (tiles, one-hot labels) batches with a known length; returns (dataset, n_tiles).

    Each iteration of the dataset is one pass of `batches`. The batches come
    through a sequential `map` of a NumPy function rather than
    `Dataset.from_generator`, which halved training speed on 2 CPU cores
    (bench/train.py measures the difference).
    """
    import tensorflow as tf  # here, so the NumPy helpers above serve jobs that never load TensorFlow

    repeats = repeats or [1] * len(files)
    total = sum(n * k for n, k in zip(tile_counts(files), repeats))
    n_batches = math.ceil(total / batch_size)
    generate = batches(files, labels, n_classes=n_classes, batch_size=batch_size, channels=channels,
                       shuffle=shuffle, seed=seed, files_at_once=files_at_once, first_pass=first_pass,
                       repeats=repeats)
    current = {}

    def next_batch(index):
        if index == 0:  # a new iteration of the dataset starts a new pass
            current["pass"] = generate()
        return next(current["pass"])

    def load(index):
        x, y = tf.numpy_function(next_batch, [index], (tf.float32, tf.float32), stateful=True)
        return tf.ensure_shape(x, (None, *tile_shape)), tf.ensure_shape(y, (None, n_classes))

    # map without num_parallel_calls runs in order, one batch at a time: the pass's order holds.
    data = tf.data.Dataset.range(n_batches).map(load)
    return data.prefetch(2), total
