"""Scoring tiles with trained networks: class probabilities, batch by batch, in inference mode."""

import numpy as np


def probabilities(model, tiles, batch_size=256):
    """(n, classes) float32 softmax outputs of `model` for `tiles`, in inference mode.

    predict_on_batch runs the compiled step directly: Keras' predict() builds a
    tf.data pipeline per call, which costs time on small sets and makes
    TensorFlow print a harmless but alarming graph error on some versions.
    """
    tiles = np.asarray(tiles, dtype=np.float32)
    if not len(tiles):
        return np.empty((0, model.output_shape[-1]), np.float32)
    parts = [np.asarray(model.predict_on_batch(tiles[i : i + batch_size])) for i in range(0, len(tiles), batch_size)]
    return np.concatenate(parts).astype(np.float32)


def ensemble_step(models):
    """One compiled step that scores a batch with every member: (members, batch, classes) probabilities.

    Scored member by member, each member's predict step was traced once per batch shape (a ragged last
    batch is a second one), and TensorFlow counts the traces of all Keras models' steps together: five
    in ten calls, as the demo's 3-member prediction jobs made, and it warned of "excessive retracing".
    The ensemble's one step is traced once, or twice with a ragged last batch (reduce_retracing then
    leaves the batch size free), however many members it has.
    """
    import keras
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def step(batch):
        return keras.ops.stack([model(batch, training=False) for model in models])

    return step


def per_image(models, tilesets, *, channels=None, n_classes, batch_size=256, chunk_tiles=8192):
    """Per TileSet, the (models, tiles, classes) probabilities of its tiles.

    Tiles of consecutive images are scored together, about `chunk_tiles` at a
    time: one network call per chunk, not per image (10^4 single-cell images
    would otherwise cost 10^4 calls), and memory bounded by the chunk.
    """
    from cellclass.learn.pipeline import select_channels

    chunks, current = [], []
    for tileset in tilesets:
        current.append(tileset)
        if sum(len(t) for t in current) >= chunk_tiles:
            chunks.append(current)
            current = []
    chunks.append(current)
    step = ensemble_step(models)
    for chunk in chunks:
        filled = [t for t in chunk if len(t)]
        scores = np.zeros((len(models), 0, n_classes), np.float32)
        if filled:
            tiles = np.concatenate([select_channels(np.asarray(t.tiles), channels) for t in filled]).astype(np.float32)
            parts = [np.asarray(step(tiles[i : i + batch_size])) for i in range(0, len(tiles), batch_size)]
            scores = np.concatenate(parts, axis=1).astype(np.float32)
        bounds = np.cumsum([0] + [len(t) for t in chunk])
        for i, _ in enumerate(chunk):
            yield scores[:, bounds[i] : bounds[i + 1]]
