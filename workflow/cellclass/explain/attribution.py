"""Attribution maps: which pixels of a tile drive a classifier's score for a class.

Every method takes tiles (n, H, W, C) in [0, 1] (float16 is cast to float32) and
one target class per tile, runs the model in inference mode in batches of
`batch_size` with tf.GradientTape (on the GPU when TensorFlow sees one), and
differentiates the pre-softmax logit by default: softmax saturates, so the
gradients of a confident probability vanish. `attribute` is what the workflow
calls; the methods below it return the raw quantities that the tests check.

Only job scripts import this module, so it imports TensorFlow at module level.
"""

import keras
import numpy as np
import tensorflow as tf
from scipy import ndimage

from cellclass.learn.models import MODELS

METHODS = ("gradient_x_input", "integrated_gradients", "smoothgrad", "grad_cam")
OUTPUTS = ("logits", "probabilities")
BASELINES = ("black", "blurred")


def _score_tensor(model, output):
    """The symbolic class-score tensor: the "logits" layer's output, or the model's output."""
    if output == "probabilities":
        return model.outputs[0]
    if output != "logits":
        raise ValueError(f"output must be one of {OUTPUTS}, not {output!r}")
    try:
        return model.get_layer("logits").output
    except ValueError:
        raise ValueError(f"model '{model.name}' has no layer named 'logits'; use output='probabilities'") from None


def score_model(model, output="logits"):
    """A keras.Model from the input to the class scores: pre-softmax logits by default, or the probabilities.

    Logits by default because softmax saturates: a confident probability has (nearly) no gradient.
    """
    if output == "probabilities":
        return model
    return keras.Model(model.input, _score_tensor(model, output), name=f"{model.name}_{output}")


def _inputs(tiles, targets):
    tiles = np.asarray(tiles, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    if tiles.ndim != 4:
        raise ValueError(f"tiles must be (n, H, W, C); got shape {tiles.shape}")
    if len(targets) != len(tiles):
        raise ValueError(f"{len(tiles)} tiles but {len(targets)} targets")
    return tiles, targets


def _chunks(n, batch_size):
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    return (slice(start, min(start + batch_size, n)) for start in range(0, n, batch_size))


def _pick(scores, targets):
    """Each row's score for its own target; summing them keeps the rows' gradients separate."""
    return tf.gather(tf.cast(scores, tf.float32), targets, axis=1, batch_dims=1)


def _gradients(score, x, targets):
    """d score[i, targets[i]] / d x[i] for one batch (rows are independent in inference mode)."""
    x = tf.convert_to_tensor(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        picked = _pick(score(x, training=False), tf.convert_to_tensor(targets))
    return tape.gradient(picked, x).numpy()


def _all_gradients(score, tiles, targets, batch_size):
    grads = np.empty_like(tiles)
    for part in _chunks(len(tiles), batch_size):
        grads[part] = _gradients(score, tiles[part], targets[part])
    return grads


def gradient_x_input(model, tiles, targets, *, signed=False, batch_size=64, output="logits"):
    """The article's map |d score/d x| * x per pixel, summed over channels -> (n, H, W) float32.

    Unsigned (default) sums |grad * x| over channels, so channels pushing the score
    in opposite directions do not cancel; signed=True sums grad * x (for a linear
    model that is exactly the pixel's contribution to the logit).
    """
    tiles, targets = _inputs(tiles, targets)
    product = _all_gradients(score_model(model, output), tiles, targets, batch_size) * tiles
    return (product if signed else np.abs(product)).sum(axis=-1, dtype=np.float32)


def baseline_tiles(tiles, baseline="black", blur_sigma=5.0):
    """The reference input of integrated gradients: zeros, or each tile blurred per channel (sigma in px)."""
    tiles = np.asarray(tiles, dtype=np.float32)
    if baseline == "black":
        return np.zeros_like(tiles)
    if baseline == "blurred":
        # sigma 0 on the tile and channel axes: every channel of every tile is blurred on its own.
        return ndimage.gaussian_filter(tiles, sigma=(0, blur_sigma, blur_sigma, 0), mode="reflect")
    raise ValueError(f"baseline must be one of {BASELINES}, not {baseline!r}")


def integrated_gradients(
    model, tiles, targets, *, baseline="black", steps=32, batch_size=64, output="logits", blur_sigma=5.0
):
    """Integrated gradients (Sundararajan et al. 2017) -> raw (n, H, W, C) float32 attributions.

    (x - baseline) times the mean gradient along the straight path, by the trapezoid
    rule over `steps` intervals (steps + 1 points), so the attributions of a tile sum
    to about f(x) - f(baseline) ("completeness"). All (tile, point) pairs share batches.
    """
    tiles, targets = _inputs(tiles, targets)
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    reference = baseline_tiles(tiles, baseline, blur_sigma)
    delta = tiles - reference
    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
    weights = np.full(steps + 1, 1.0 / steps, dtype=np.float32)
    weights[[0, -1]] /= 2
    score = score_model(model, output)
    mean_gradient = np.zeros_like(tiles)
    for part in _chunks(len(tiles) * (steps + 1), batch_size):
        tile, point = np.divmod(np.arange(part.start, part.stop), steps + 1)
        x = reference[tile] + alphas[point, None, None, None] * delta[tile]
        grads = _gradients(score, x, targets[tile])
        np.add.at(mean_gradient, tile, weights[point, None, None, None] * grads)
    return delta * mean_gradient


def smoothgrad(model, tiles, targets, *, noise=0.1, samples=16, seed=0, batch_size=64, output="logits"):
    """SmoothGrad (Smilkov et al. 2017): mean over `samples` noisy copies of |gradient|, summed over channels.

    The plain gradient (not grad * input) so the map does not simply repeat the
    bright pixels. Gaussian noise has sd = noise * (max - min) of each tile, as in
    the paper; noise comes from numpy's Generator(seed), in tile order, so the map
    depends on the seed but not on batch_size. Returns (n, H, W) float32.
    """
    tiles, targets = _inputs(tiles, targets)
    if samples < 1:
        raise ValueError(f"samples must be >= 1; got {samples}")
    rng = np.random.default_rng(seed)
    sd = noise * (tiles.max(axis=(1, 2, 3)) - tiles.min(axis=(1, 2, 3)))
    score = score_model(model, output)
    total = np.zeros(tiles.shape[:3], dtype=np.float32)
    for part in _chunks(len(tiles) * samples, batch_size):
        tile = np.arange(part.start, part.stop) // samples
        draws = rng.standard_normal((len(tile), *tiles.shape[1:]), dtype=np.float32)
        x = tiles[tile] + sd[tile, None, None, None] * draws
        grads = _gradients(score, x, targets[tile])
        np.add.at(total, tile, np.abs(grads).sum(axis=-1))
    return total / samples


def grad_cam(model, tiles, targets, *, layer, batch_size=64, output="logits"):
    """Grad-CAM (Selvaraju et al. 2017) on conv layer `layer` -> (n, H, W) float32, bilinearly upsampled.

    ReLU of the feature maps weighted by their spatially averaged class-score
    gradients. Registry models name their layer in cellclass.learn.models.MODELS[name].last_conv.
    """
    tiles, targets = _inputs(tiles, targets)
    features = model.get_layer(layer).output
    if len(features.shape) != 4:
        raise ValueError(f"Grad-CAM needs a layer with (batch, h, w, channels) output; '{layer}' has {features.shape}")
    both = keras.Model(model.input, [features, _score_tensor(model, output)])
    maps = np.empty(tiles.shape[:3], dtype=np.float32)
    for part in _chunks(len(tiles), batch_size):
        x = tf.convert_to_tensor(tiles[part])
        with tf.GradientTape() as tape:
            tape.watch(x)
            feature_maps, scores = both(x, training=False)
            picked = _pick(scores, tf.convert_to_tensor(targets[part]))
        grads = tf.cast(tape.gradient(picked, feature_maps), tf.float32)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(feature_maps, tf.float32), axis=-1, keepdims=True))
        maps[part] = tf.image.resize(cam, tiles.shape[1:3], method="bilinear")[..., 0].numpy()
    return maps


def normalise(maps):
    """Each map divided by its maximum, so it lies in [0, 1]; an all-zero map stays zero."""
    maps = np.asarray(maps, dtype=np.float32)
    peak = maps.max(axis=(1, 2), keepdims=True, initial=0.0)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def attribute(model, tiles, targets, method, *, options=None, layer=None):
    """Non-negative (n, H, W) maps, each scaled to [0, 1] per tile: what the workflow calls.

    `options` are the method's keyword arguments (e.g. {"steps": 64, "baseline": "blurred"}).
    Integrated gradients sum |attribution| over channels; signed gradient x input
    is shown as its magnitude. Grad-CAM takes `layer`, by default the registry's
    last_conv for a model named like a registry entry.
    """
    options = dict(options or {})
    if method == "gradient_x_input":
        maps = np.abs(gradient_x_input(model, tiles, targets, **options))
    elif method == "integrated_gradients":
        maps = np.abs(integrated_gradients(model, tiles, targets, **options)).sum(axis=-1)
    elif method == "smoothgrad":
        maps = smoothgrad(model, tiles, targets, **options)
    elif method == "grad_cam":
        if layer is None:
            if model.name not in MODELS:
                raise ValueError(f"grad_cam needs layer= for model '{model.name}' (not a registry name)")
            layer = MODELS[model.name].last_conv
        maps = grad_cam(model, tiles, targets, layer=layer, **options)
    else:
        raise ValueError(f"unknown attribution method {method!r}; known: {', '.join(METHODS)}")
    return normalise(maps)


def randomised_copy(model, seed):
    """The model's architecture with every weight freshly initialised (the model-randomisation sanity check).

    An attribution that does not change when the weights are random is not
    explaining the model (Adebayo et al. 2018). Seeds Keras' global RNGs
    (keras.utils.set_random_seed), so a seed always gives the same copy.
    """
    keras.utils.set_random_seed(seed)
    return keras.models.clone_model(model)
