"""The one path that scores tiles with a trained network: class probabilities, batch by batch."""

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
