"""How unlike the training data a tile is, in the eyes of the network that scores it.

A run's reference is where its training tiles lie in the network's penultimate features (the input of
its `logits` layer): one mean per class and a covariance shared by the classes, shrunk by Ledoit-Wolf so
that a few hundred tiles suffice for hundreds of features. A tile's novelty is its squared Mahalanobis
distance to the nearest class mean (Lee et al., NeurIPS 2018), divided by a quantile (0.99 by default) of
the validation side's distances: above 1 it lies further out than all but 1% of the held-out tiles of known
classes, whatever the network's softmax says.

The reference is a run's file (novelty.npz), fitted once after training; prediction reads it.
"""

import ast

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.covariance import LedoitWolf

FILE = "novelty.npz"
DEFAULT_QUANTILE = 0.99


def feature_model(model):
    """A model that gives `model`'s penultimate features: the input of its Dense layer named 'logits'
    (every registry model and backbone ends in one)."""
    import keras

    return keras.Model(model.inputs, model.get_layer("logits").input)


def features(model, tiles, batch_size=256, extract=True):
    """(n, d) float64 penultimate features of `tiles` under `model` (inference mode); `extract` False: `model`
    is already a feature_model."""
    extractor = feature_model(model) if extract else model
    parts = [np.asarray(extractor.predict_on_batch(tiles[i : i + batch_size]), np.float64)
             for i in range(0, len(tiles), batch_size)]
    return np.concatenate(parts) if parts else np.empty((0, extractor.output_shape[-1]))


class Reference:
    """Class means, the precision (inverse of the shared shrunk covariance), and the held-out tiles' distances
    that set the threshold at any quantile."""

    def __init__(self, means, precision, held_out, meta):
        self.means, self.precision = np.asarray(means, np.float64), np.asarray(precision, np.float64)
        self.held_out, self.meta = np.sort(np.asarray(held_out, np.float64)), dict(meta)

    def distances(self, feats):
        """(n,) squared Mahalanobis distance of each feature vector to its nearest class mean."""
        feats = np.asarray(feats, np.float64)
        if not len(feats):
            return np.empty(0)
        return cdist(feats, self.means, "mahalanobis", VI=self.precision).min(axis=1) ** 2

    def threshold(self, quantile=DEFAULT_QUANTILE):
        return max(float(np.quantile(self.held_out, quantile)), 1e-12)

    def novelty(self, feats, quantile=DEFAULT_QUANTILE):
        """(n,) distances in units of the threshold: above 1 is further out than all but 1 - quantile of the
        held-out tiles."""
        return self.distances(feats) / self.threshold(quantile)

    def arrays(self):
        return {"means": self.means, "precision": self.precision, "held_out": self.held_out,
                "meta": np.array(repr(self.meta))}

    @classmethod
    def from_arrays(cls, arrays):
        return cls(arrays["means"], arrays["precision"], arrays["held_out"], ast.literal_eval(str(arrays["meta"])))

    def save(self, path):
        np.savez(path, **self.arrays())

    @classmethod
    def load(cls, path):
        with np.load(path) as data:
            return cls.from_arrays(data)


def fit(train_features, train_labels, held_out_features, *, held_out="validation side"):
    """A Reference from training features and labels, with the distances of `held_out_features` (the
    validation side; `held_out` says what they are) to set thresholds."""
    train_features = np.asarray(train_features, np.float64)
    train_labels = np.asarray(train_labels)
    classes = np.unique(train_labels)
    means = np.stack([train_features[train_labels == c].mean(axis=0) for c in classes])
    centred = train_features - means[np.searchsorted(classes, train_labels)]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    distances = Reference(means, precision, [1.0], {}).distances(held_out_features)
    meta = {"threshold_from": f"{held_out}, {len(distances)} tiles", "reference_tiles": int(len(train_features)),
            "features": int(train_features.shape[1])}
    return Reference(means, precision, distances, meta)
