"""How unlike the training data a tile is, in the eyes of the network that scores it.

A run's reference is where its training tiles lie in three of the network's feature spaces: the
penultimate features (the input of its `logits` layer) and the global averages of its last and its middle
feature maps. Per space, one mean per class and a covariance shared by the classes, shrunk by Ledoit-Wolf
so that a few hundred tiles suffice for hundreds of features (Lee et al., NeurIPS 2018, who also combine
layers). A tile's distance in a space is its squared Mahalanobis distance to the nearest class mean, in
units of the validation side's median there; its score is the largest of the three, and its novelty that
score divided by a quantile (0.99 by default) of the validation side's scores: above 1 it lies further out
than all but 1% of the held-out tiles of known classes, whatever the network's softmax says.

The penultimate features alone, trained to separate the classes, put striped test fields among the
controls (bench/abstain.py: 1% flagged); the feature maps keep what the cells look like and flag them all.

The reference is a run's file (novelty.npz), fitted once after training; prediction reads it.
"""

import ast
import functools
import math

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.covariance import LedoitWolf

FILE = "novelty.npz"
DEFAULT_QUANTILE = 0.99
# A quantile q of n held-out tiles is set by the n(1 - q) tiles beyond it. With fewer than this many beyond it,
# one tile more or less moves the threshold visibly: a 99th percentile wants at least 1000 tiles.
MIN_BEYOND = 10


def probed_layers(model):
    """The names of the layers whose outputs are compared: the middle and the last of the model's own
    layers giving feature maps (4-D outputs), and `logits`, whose input is the penultimate features. A nested
    backbone's own output is a tensor of its inner graph, not of the model's, so it is passed over: the map
    that follows it (`feature_map`) is its output."""
    import keras

    maps = [layer.name for layer in model.layers[1:] if _rank(layer) == 4 and not isinstance(layer, keras.Model)]
    picked = [maps[len(maps) // 2], maps[-1]] if len(maps) > 1 else maps
    return [*dict.fromkeys(picked), "logits"]


def _rank(layer):
    """The rank of a layer's output; 0 for a layer called more than once (shared weights), which has none."""
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):
        return 0


def feature_model(model, with_probabilities=False):
    """A model that gives, per probed layer, its features: feature maps averaged over the tile, and the
    input of `logits`; with_probabilities, the model's own output after them (prediction needs both, and one
    pass of the network gives them: two passes took twice the time)."""
    import keras

    outputs = []
    for name in probed_layers(model):
        layer = model.get_layer(name)
        if name == "logits":
            outputs.append(layer.input)
        else:
            outputs.append(keras.layers.GlobalAveragePooling2D(name=f"novelty_{name}")(layer.output))
    return keras.Model(model.inputs, outputs + (list(model.outputs) if with_probabilities else []))


@functools.lru_cache(maxsize=8)
def feature_step(models, with_probabilities=False):
    """One compiled step giving, for a batch, each model's feature_model outputs: traced once per batch shape
    for all of them and made once per tuple of `models` in a process, as inference.ensemble_step, where
    predict_on_batch per model, or a new step per call, makes TensorFlow retrace and warn."""
    import tensorflow as tf

    extractors = [feature_model(model, with_probabilities) for model in models]

    @tf.function(reduce_retracing=True)
    def step(batch):
        return [extractor(batch, training=False) for extractor in extractors]

    step.extractors = extractors
    return step


def features(step, tiles, batch_size=256):
    """Per extractor of a feature_step, per probed layer, the (n, d) float64 features of `tiles`."""
    parts = [
        [[np.asarray(f, np.float64) for f in outputs] for outputs in step(tiles[i : i + batch_size])]
        for i in range(0, len(tiles), batch_size)
    ]
    if not parts:
        return [[np.empty((0, output.shape[-1])) for output in extractor.outputs] for extractor in step.extractors]
    return [[np.concatenate(layer) for layer in zip(*per_extractor)] for per_extractor in zip(*parts)]


class Space:
    """One feature space: class means, the precision (inverse of the shared shrunk covariance) and the
    validation side's median distance, the unit."""

    def __init__(self, means, precision, scale=1.0):
        self.means, self.precision = np.asarray(means, np.float64), np.asarray(precision, np.float64)
        self.scale = float(scale)

    def distances(self, feats):
        """(n,) squared Mahalanobis distance to the nearest class mean, in units of `scale`."""
        feats = np.asarray(feats, np.float64)
        if not len(feats):
            return np.empty(0)
        return cdist(feats, self.means, "mahalanobis", VI=self.precision).min(axis=1) ** 2 / self.scale


class Reference:
    """The feature spaces of one run, and the validation side's scores that set the threshold at any quantile."""

    def __init__(self, spaces, held_out, meta):
        self.spaces, self.held_out, self.meta = list(spaces), np.sort(np.asarray(held_out, np.float64)), dict(meta)

    def scores(self, feature_sets):
        """(n,) the largest of a tile's distances over the spaces (`feature_sets`: per space, (n, d))."""
        return np.max([space.distances(feats) for space, feats in zip(self.spaces, feature_sets)], axis=0)

    def threshold(self, quantile=DEFAULT_QUANTILE):
        return max(float(np.quantile(self.held_out, quantile)), 1e-12)

    def novelty(self, feature_sets, quantile=DEFAULT_QUANTILE):
        """(n,) scores in units of the threshold: above 1 is further out than all but 1 - quantile of the
        held-out tiles."""
        return self.scores(feature_sets) / self.threshold(quantile)

    def arrays(self):
        arrays = {"held_out": self.held_out, "meta": np.array(repr(self.meta))}
        for i, space in enumerate(self.spaces):
            arrays |= {
                f"space{i}/means": space.means,
                f"space{i}/precision": space.precision,
                f"space{i}/scale": np.array(space.scale),
            }
        return arrays

    @classmethod
    def from_arrays(cls, arrays):
        count = len({key.split("/")[0] for key in arrays if key.startswith("space")})
        spaces = [
            Space(arrays[f"space{i}/means"], arrays[f"space{i}/precision"], arrays[f"space{i}/scale"])
            for i in range(count)
        ]
        return cls(spaces, arrays["held_out"], ast.literal_eval(str(arrays["meta"])))

    def save(self, path):
        np.savez(path, **self.arrays())

    @classmethod
    def load(cls, path):
        with np.load(path) as data:
            return cls.from_arrays({key: data[key] for key in data.files})


def tiles_needed(quantile=DEFAULT_QUANTILE):
    """The fewest held-out tiles that leave MIN_BEYOND of them beyond the `quantile`: 1000 for 0.99."""
    return math.ceil(round(MIN_BEYOND / (1 - quantile), 6))


def sample_size(tiles, quantile=DEFAULT_QUANTILE):
    """metrics.json's word on the threshold's sample: how many held-out tiles set the `quantile`, how many it
    needs (tiles_needed) and, when fewer, a note that says so."""
    needed = tiles_needed(quantile)
    note = None
    if tiles < needed:
        note = (
            f"the novelty threshold (the {quantile:g} quantile) rests on {tiles} held-out tiles, about "
            f"{tiles * (1 - quantile):.1f} of them beyond it; it needs {needed} to leave {MIN_BEYOND} beyond "
            "it, so which new tiles count as unlike the training data is decided by a handful"
        )
    return {
        "threshold_quantile": quantile,
        "threshold_tiles": int(tiles),
        "threshold_tiles_needed": needed,
        "threshold_note": note,
    }


def fit(train_features, train_labels, held_out_features, *, held_out="validation side", layers=None):
    """A Reference from training features (per space, (n, d)) and labels, with the held-out tiles' features
    (the validation side; `held_out` says what they are) setting each space's unit and the threshold."""
    train_labels = np.asarray(train_labels)
    classes = np.unique(train_labels)
    spaces = []
    for train, other in zip(train_features, held_out_features):
        train = np.asarray(train, np.float64)
        means = np.stack([train[train_labels == c].mean(axis=0) for c in classes])
        centred = train - means[np.searchsorted(classes, train_labels)]
        space = Space(means, LedoitWolf(assume_centered=True).fit(centred).precision_)
        space.scale = max(float(np.median(space.distances(other))), 1e-12) if len(other) else 1.0
        spaces.append(space)
    reference = Reference(spaces, [1.0], {})
    meta = {
        "threshold_from": f"{held_out}, {len(held_out_features[0])} tiles",
        "held_out_tiles": int(len(held_out_features[0])),
        "reference_tiles": int(len(train_labels)),
        "features": [int(np.shape(f)[1]) for f in train_features],
        "layers": list(layers or []),
    }
    return Reference(spaces, reference.scores(held_out_features), meta)
