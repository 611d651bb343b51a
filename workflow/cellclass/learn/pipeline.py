"""Stream tiles from memory-mapped shard files into Keras, in bounded memory.

Each pass is a global shuffle: a seeded permutation of every training tile,
cut into batches, each batch gathered from the memory-mapped shards it touches.
So a batch mixes images and classes as well as an in-memory shuffle would,
however the images are spread over shards, and only the batch being made is in
memory whatever the dataset's size.
"""

import math

import numpy as np


def class_repeats(tile_labels, n_classes):
    """How often each class's tiles are drawn per pass so that every class brings about as many tiles as the
    largest (an integer per class, so a pass has a fixed length)."""
    per_class = np.bincount(np.asarray(tile_labels, dtype=int), minlength=n_classes)
    present = per_class[per_class > 0]
    factor = np.ones(n_classes, dtype=int)
    if len(present):
        factor[per_class > 0] = np.maximum(1, np.rint(present.max() / present)).astype(int)
    return factor


def tile_index(tilesets, labels):
    """Per tile of `tilesets`: which TileSet it is in, its row there, and its label."""
    counts = [len(t) for t in tilesets]
    owner = np.repeat(np.arange(len(tilesets)), counts)
    row = np.concatenate([np.arange(n) for n in counts] or [np.empty(0, int)])
    return owner, row, np.repeat(np.asarray(labels, dtype=int), counts)


def gather(tilesets, owner, row, channels):
    """The tiles (owner[i], row[i]) as one float32 array, read from each TileSet's (memory-mapped) tiles."""
    first = tilesets[owner[0]].tiles
    shape = select_channels(first[:1], channels).shape[1:]
    out = np.empty((len(owner), *shape), dtype=np.float32)
    for t in np.unique(owner):
        at = np.flatnonzero(owner == t)
        out[at] = select_channels(tilesets[t].tiles[row[at]], channels)
    return out


def batches(tilesets, labels, *, n_classes, batch_size, channels=None, shuffle=False, seed=0, first_pass=0,
            balance=False):
    """A generator factory: each call yields one pass of (tiles float32, one-hot labels) batches.

    `labels[i]` is the class index of tilesets[i]. Pass k shuffles with (seed, k),
    so a run resumed at epoch k sees the order an uninterrupted run would have
    seen. `balance` draws every class about as often as the largest.
    """
    owner, row, tile_labels = tile_index(tilesets, labels)
    draws = np.arange(len(owner))
    if balance:
        draws = np.repeat(draws, class_repeats(tile_labels, n_classes)[tile_labels])
    passes = first_pass
    eye = np.eye(n_classes, dtype=np.float32)

    def generate():
        nonlocal passes
        rng = np.random.default_rng([seed, passes])
        passes += 1
        order = rng.permutation(draws) if shuffle else draws
        for start in range(0, len(order), batch_size):
            pick = order[start : start + batch_size]
            yield gather(tilesets, owner[pick], row[pick], channels), eye[tile_labels[pick]]

    return generate, len(draws)


def select_channels(tiles, channels):
    """The tiles' channels fed to the network (None: all)."""
    return tiles if channels is None else tiles[..., list(channels)]


def make_dataset(tilesets, labels, *, n_classes, tile_shape, batch_size, channels=None, shuffle=False, seed=0,
                 first_pass=0, balance=False):
    """A tf.data pipeline of (tiles, one-hot labels) batches with a known length; returns (dataset, n_tiles).

    Each iteration of the dataset is one pass of `batches`. The batches come
    through a sequential `map` of a NumPy function rather than
    `Dataset.from_generator`, which halved training speed on 2 CPU cores
    (bench/train.py measures the difference).
    """
    import tensorflow as tf  # here, so the NumPy helpers above serve jobs that never load TensorFlow

    generate, total = batches(tilesets, labels, n_classes=n_classes, batch_size=batch_size, channels=channels,
                              shuffle=shuffle, seed=seed, first_pass=first_pass, balance=balance)
    current = {}

    def next_batch(index):
        if index == 0:  # a new iteration of the dataset starts a new pass
            current["pass"] = generate()
        return next(current["pass"])

    def load(index):
        x, y = tf.numpy_function(next_batch, [index], (tf.float32, tf.float32), stateful=True)
        return tf.ensure_shape(x, (None, *tile_shape)), tf.ensure_shape(y, (None, n_classes))

    # map without num_parallel_calls runs in order, one batch at a time: the pass's order holds.
    data = tf.data.Dataset.range(math.ceil(total / batch_size)).map(load)
    return data.prefetch(2), total
