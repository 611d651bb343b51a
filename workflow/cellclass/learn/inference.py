"""The one path that scores tiles with a trained network: class probabilities, batch by batch.

Test-time augmentation (`evaluation.tta`): "dihedral" scores each tile in its 8 dihedral views (the 4
rotations by 90 degrees, each also mirrored) and averages the 8 probability vectors. A microscopy tile has
no up or left, so every view is as valid as the original; the average does not depend on which of the 8 views
of a tile is given, and it costs 8 network passes per tile.
"""

import functools

import numpy as np

from cellclass.io.errors import InputError

TTA = ("none", "dihedral")


def dihedral_views(tiles):
    """The 8 dihedral views of (n, H, W, C) square tiles: rotations by 0, 90, 180, 270 degrees, then the same mirrored."""
    rotations = [np.rot90(tiles, k, axes=(1, 2)) for k in range(4)]
    return rotations + [view[:, :, ::-1] for view in rotations]


def check_tta(tta, tiles):
    if tta not in TTA:
        raise InputError(f"unknown test-time augmentation '{tta}'; known: {', '.join(TTA)}")
    if tta == "dihedral" and tiles.shape[1] != tiles.shape[2]:
        raise InputError(
            f"dihedral test-time augmentation needs square tiles; these are {tiles.shape[1]}x{tiles.shape[2]} px"
        )


def probabilities(model, tiles, batch_size=256, tta="none"):
    """(n, classes) float32 softmax outputs of `model` for `tiles`, in inference mode; with `tta` "dihedral",
    the mean over each tile's 8 dihedral views.

    predict_on_batch runs the compiled step directly: Keras' predict() builds a
    tf.data pipeline per call, which costs time on small sets and makes
    TensorFlow print a harmless but alarming graph error on some versions.
    """
    tiles = np.asarray(tiles, dtype=np.float32)
    check_tta(tta, tiles)
    if not len(tiles):
        return np.empty((0, model.output_shape[-1]), np.float32)
    parts = []
    for i in range(0, len(tiles), batch_size):
        batch = tiles[i : i + batch_size]
        if tta == "none":
            parts.append(np.asarray(model.predict_on_batch(batch), np.float64))
        else:
            views = [np.ascontiguousarray(view) for view in dihedral_views(batch)]
            parts.append(np.mean([np.asarray(model.predict_on_batch(view), np.float64) for view in views], axis=0))
    return np.concatenate(parts).astype(np.float32)


@functools.lru_cache(maxsize=8)
def ensemble_step(models):
    """One compiled step that scores a batch with every member: (members, batch, classes) probabilities.

    Scored member by member, each member's predict step was traced once per batch shape (a ragged last
    batch is a second one), and TensorFlow counts the traces of all Keras models' steps together: five
    in ten calls, as the demo's 3-member prediction jobs made, and it warned of "excessive retracing".
    The ensemble's one step is traced once, or twice with a ragged last batch (reduce_retracing then
    leaves the batch size free), however many members it has; and it is made once per ensemble (`models`, a
    tuple) in a process: a training job scores its validation side and each test set, and a new step for each
    would be traced anew until TensorFlow warns.
    """
    import keras
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def step(batch):
        return keras.ops.stack([model(batch, training=False) for model in models])

    return step


def ensemble_scores(step, tiles, batch_size, tta):
    """(members, tiles, classes) probabilities from an ensemble_step; with `tta` "dihedral", each the mean over
    the tile's 8 dihedral views."""
    check_tta(tta, tiles)
    parts = []
    for i in range(0, len(tiles), batch_size):
        batch = tiles[i : i + batch_size]
        views = [batch] if tta == "none" else [np.ascontiguousarray(view) for view in dihedral_views(batch)]
        parts.append(np.mean([np.asarray(step(view), np.float64) for view in views], axis=0))
    return np.concatenate(parts, axis=1).astype(np.float32)


def chunks(tilesets, *, channels=None, chunk_tiles=8192):
    """(chunk, its tiles as one float32 array or None, bounds) for runs of consecutive TileSets of about
    `chunk_tiles` tiles: one network call per chunk, not per image (10^4 single-cell images would otherwise
    cost 10^4 calls), and memory bounded by the chunk. Tiles of chunk[i] are tiles[bounds[i]:bounds[i + 1]]."""
    from cellclass.io.tilestore import read_tiles
    from cellclass.learn.pipeline import select_channels

    groups, current, count = [], [], 0
    for tileset in tilesets:
        current.append(tileset)
        count += len(tileset)
        if count >= chunk_tiles:
            groups.append(current)
            current, count = [], 0
    groups.append(current)
    for chunk in groups:
        filled = [t for t in chunk if len(t)]
        tiles = select_channels(read_tiles(filled), channels).astype(np.float32) if filled else None
        yield chunk, tiles, np.cumsum([0] + [len(t) for t in chunk])


def per_image(models, tilesets, *, channels=None, n_classes, batch_size=256, chunk_tiles=8192, tta="none"):
    """Per TileSet, the (models, tiles, classes) probabilities of its tiles (`tta`: see probabilities)."""
    step = ensemble_step(tuple(models))
    for chunk, tiles, bounds in chunks(tilesets, channels=channels, chunk_tiles=chunk_tiles):
        scores = np.zeros((len(models), 0, n_classes), np.float32)
        if tiles is not None:
            scores = ensemble_scores(step, tiles, batch_size, tta)
        for i, _ in enumerate(chunk):
            yield scores[:, bounds[i] : bounds[i + 1]]


def scores_and_novelty(models, references, tiles, *, quantile, batch_size=256, tta="none"):
    """(models, tiles, classes) probabilities of `tiles` (`tta`: see probabilities) and their (models, tiles)
    novelty under each model's novelty.Reference (None without references): the tile as given, whatever the
    test-time augmentation, as distances are to the training tiles as stored. Without test-time augmentation
    one pass of the network gives both."""
    from cellclass.learn import novelty

    if references is None:
        return ensemble_scores(ensemble_step(tuple(models)), tiles, batch_size, tta), None
    step = novelty.feature_step(tuple(models), with_probabilities=True)
    per_model = novelty.features(step, tiles, batch_size)  # per model: its probed layers' features, then probabilities
    scores = np.stack([outputs[-1] for outputs in per_model]).astype(np.float32)
    if tta != "none":
        scores = ensemble_scores(ensemble_step(tuple(models)), tiles, batch_size, tta)
    return scores, np.stack(
        [reference.novelty(outputs[:-1], quantile) for reference, outputs in zip(references, per_model)]
    )
