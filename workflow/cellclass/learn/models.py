"""The registry of CNN classifiers, built with the Keras functional API.

Every layer has a stable name: `model_specs.MODELS[name].last_conv` names the map Grad-CAM
reads, and every model ends in a Dense layer "logits" followed by a separate
softmax "predictions", so attribution can take the class score before softmax
with `keras.Model(model.input, model.get_layer("logits").output)`. Input size,
channels and classes always come from the caller.
"""

import inspect

import keras
from keras import layers

from cellclass.io.errors import InputError
from cellclass.learn.model_specs import MODELS

# Fast-moving BatchNorm statistics. The moving variance starts at 1, far above the
# variance of low-contrast microscopy tiles; with Keras' default momentum (0.99),
# or even 0.9, that start still dominates after the few dozen steps of a short run
# and inference collapses onto one class. Conv statistics pool over
# batch x height x width, so the last couple of batches estimate them well.
_BN_MOMENTUM = 0.5


def _head(features, n_classes, **dense_kwargs):
    """Logits then softmax as separate layers, so the pre-softmax score stays reachable."""
    logits = layers.Dense(n_classes, name="logits", **dense_kwargs)(features)
    # float32 keeps the softmax stable under a mixed_float16 policy.
    return layers.Activation("softmax", name="predictions", dtype="float32")(logits)


def _scaled(count, width):
    return max(1, round(count * width))


def _check_number(model, option, value, ok, wanted):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
        raise InputError(f"model '{model}': option {option} must be {wanted}; got {value!r}")


def _deep(input_shape, n_classes, *, shared_weights=False):
    """The article's DeepNetwork: 9 conv applications of 3x3, four 2x2 max-pools, Dense 512.

    In the article's code the repeated convolutions (conv16, conv32_2, conv64_2) are
    one layer object called twice, so each pair shares its weights. The default
    `shared_weights=False` builds the conventional network with separate layers
    (conv16_a, conv16_b, ...): it is the network a reader of the article's figure
    assumes, the sharing looks like a side effect of calling a Keras layer in a
    loop, and separate layers give each depth its own filters.
    `shared_weights=True` reproduces the article's code exactly.
    """
    return _deep_network(input_shape, n_classes, shared_weights, (512,), "deep")


def _deep50(input_shape, n_classes, *, shared_weights=False):
    """The article's best variant: DeepNetwork with an extra Dense(50, relu) before the output."""
    return _deep_network(input_shape, n_classes, shared_weights, (512, 50), "deep50")


def _deep_network(input_shape, n_classes, shared_weights, hidden, name):
    if not isinstance(shared_weights, bool):
        raise InputError(f"model '{name}': option shared_weights must be true or false; got {shared_weights!r}")

    def conv(filters, layer_name):
        return layers.Conv2D(filters, 3, padding="same", activation="relu", name=layer_name)

    def twice(x, filters, layer_name):
        if shared_weights:
            shared = conv(filters, layer_name)
            return shared(shared(x))
        return conv(filters, f"{layer_name}_b")(conv(filters, f"{layer_name}_a")(x))

    inputs = keras.Input(input_shape, name="tiles")
    x = conv(16, "entry_conv")(inputs)
    x = twice(x, 16, "conv16")
    x = layers.MaxPooling2D(name="pool1")(x)
    x = conv(32, "conv32")(x)
    x = layers.MaxPooling2D(name="pool2")(x)
    x = twice(x, 32, "conv32_2")
    x = layers.MaxPooling2D(name="pool3")(x)
    x = conv(64, "conv64")(x)
    x = twice(x, 64, "conv64_2")
    # A shared layer's `.output` is its first call; this pins the last application for Grad-CAM.
    x = layers.Identity(name="feature_map")(x)
    x = layers.MaxPooling2D(name="pool4")(x)
    x = layers.Flatten(name="flatten")(x)
    for units in hidden:
        x = layers.Dense(units, activation="relu", name=f"dense{units}")(x)
    return keras.Model(inputs, _head(x, n_classes), name=name)


def _alexnet(input_shape, n_classes, *, width=1.0):
    """The article's AlexNet clone, L2 5e-4 on every kernel; `width` scales filters and units.

    Pooling keeps the clone's "valid" padding, so the network matches the
    article's at the article's tile sizes; the price is that three 3x3/2 pools
    after the stride-4 first layer need tiles of at least 67 px (64 px tiles
    must be resized, e.g. prepare.resize_to: 67 or more).
    """
    _check_number("alexnet", "width", width, lambda v: v > 0, "a number > 0")
    l2 = keras.regularizers.L2(5e-4)

    def conv(filters, size, layer_name, **kwargs):
        return layers.Conv2D(_scaled(filters, width), size, activation="relu", kernel_regularizer=l2, name=layer_name, **kwargs)

    def pool(layer_name):
        return layers.MaxPooling2D(3, strides=2, name=layer_name)

    inputs = keras.Input(input_shape, name="tiles")
    x = conv(96, 11, "conv1", strides=4)(inputs)
    # Keras' default BatchNorm momentum, as in the article.
    x = layers.BatchNormalization(name="bn1")(pool("pool1")(x))
    x = conv(256, 5, "conv2", padding="same")(x)
    x = layers.BatchNormalization(name="bn2")(pool("pool2")(x))
    x = conv(384, 3, "conv3", padding="same")(x)
    x = conv(384, 3, "conv4", padding="same")(x)
    x = conv(256, 3, "conv5", padding="same")(x)
    x = layers.Flatten(name="flatten")(pool("pool3")(x))
    for i in (1, 2):
        x = layers.Dropout(0.5, name=f"dropout{i}")(x)
        x = layers.Dense(_scaled(2048, width), activation="relu", kernel_regularizer=l2, name=f"fc{i}")(x)
    return keras.Model(inputs, _head(x, n_classes, kernel_regularizer=l2), name="alexnet")


def _resnet(input_shape, n_classes, *, width=1.0, blocks_per_stage=2, dropout=0.2):
    """A small pre-activation ResNet (He et al. 2016) for training from scratch.

    Stem 3x3 conv, then three stages of basic residual blocks (32, 64, 128 filters
    times `width`), stride 2 and a 1x1 projection shortcut where a stage starts,
    a final BN-ReLU ("final_relu"), global average pooling and dropout. About 0.7 M
    parameters at the defaults: enough capacity for cell images, few enough for
    small data sets.
    """
    _check_number("resnet", "width", width, lambda v: v > 0, "a number > 0")
    if not isinstance(blocks_per_stage, int) or isinstance(blocks_per_stage, bool) or blocks_per_stage < 1:
        raise InputError(f"model 'resnet': option blocks_per_stage must be an integer >= 1; got {blocks_per_stage!r}")
    _check_number("resnet", "dropout", dropout, lambda v: 0 <= v < 1, "a number in [0, 1)")

    def conv(filters, size, layer_name, strides=1):
        # No bias: every conv output reaches a BatchNormalization before any nonlinearity.
        return layers.Conv2D(filters, size, strides=strides, padding="same", use_bias=False, name=layer_name)

    def bn_relu(x, bn_name, relu_name):
        x = layers.BatchNormalization(momentum=_BN_MOMENTUM, name=bn_name)(x)
        return layers.Activation("relu", name=relu_name)(x)

    def block(x, filters, strides, prefix):
        pre = bn_relu(x, f"{prefix}_bn1", f"{prefix}_relu1")
        if strides != 1 or x.shape[-1] != filters:
            shortcut = conv(filters, 1, f"{prefix}_proj", strides)(pre)
        else:
            shortcut = x
        r = conv(filters, 3, f"{prefix}_conv1", strides)(pre)
        r = bn_relu(r, f"{prefix}_bn2", f"{prefix}_relu2")
        r = conv(filters, 3, f"{prefix}_conv2")(r)
        return layers.Add(name=f"{prefix}_add")([shortcut, r])

    inputs = keras.Input(input_shape, name="tiles")
    x = conv(_scaled(32, width), 3, "stem_conv")(inputs)
    for stage, filters in enumerate((32, 64, 128), start=1):
        for b in range(1, blocks_per_stage + 1):
            strides = 2 if stage > 1 and b == 1 else 1
            x = block(x, _scaled(filters, width), strides, f"stage{stage}_block{b}")
    x = bn_relu(x, "final_bn", "final_relu")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, _head(x, n_classes), name="resnet")


def _small(input_shape, n_classes):
    """Three 3x3 conv-BN-ReLU blocks (16, 32, 64) with two max-pools, then global average pooling.

    BatchNorm is what lets it fit within a few epochs (without it, it needs tens).
    """
    inputs = keras.Input(input_shape, name="tiles")
    x = inputs
    for i, filters in enumerate((16, 32, 64), start=1):
        if i > 1:
            x = layers.MaxPooling2D(name=f"pool{i - 1}")(x)
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(momentum=_BN_MOMENTUM, name=f"bn{i}")(x)
        x = layers.Activation("relu", name=f"relu{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, _head(x, n_classes), name="small")


# How to build each registry model (cellclass.learn.model_specs holds what planning needs to know about it).
BUILDERS = {"deep": _deep, "deep50": _deep50, "alexnet": _alexnet, "resnet": _resnet, "small": _small}


def build_model(name, input_shape, n_classes, **options):
    """Build registry model `name` for (H, W, C) tiles and `n_classes` classes; bad input raises InputError."""
    spec = MODELS.get(name)
    if spec is None:
        raise InputError(f"unknown model '{name}'; known: {', '.join(MODELS)}")
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise InputError(f"model '{name}' needs an input shape (height, width, channels); got {tuple(input_shape)}")
    side = min(input_shape[:2])
    if side < spec.min_size:
        raise InputError(f"model '{name}' needs tiles of at least {spec.min_size} px; got {side} px")
    if n_classes < 2:
        raise InputError(f"model '{name}' needs at least 2 classes; got {n_classes}")
    build = BUILDERS[name]
    known = [p.name for p in inspect.signature(build).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InputError(f"model '{name}' has no option {', '.join(unknown)}; options: {', '.join(known) or 'none'}")
    return build(tuple(input_shape), n_classes, **options)


# The optimizers' default learning rates: Keras' for Adam and AdamW, the article's AlexNet rate for SGD.
DEFAULT_LEARNING_RATES = {"adam": 1e-3, "adamw": 1e-3, "sgd": 0.01}


def make_optimizer(name, learning_rate=None, weight_decay=0.0):
    """Adam, AdamW or SGD with momentum 0.9, at `learning_rate` (a number or a Keras schedule; None: the default).

    `weight_decay` is Keras' decoupled decay, which any of them applies (each step shrinks every weight by
    rate x weight_decay); 0 leaves Adam and SGD exactly as they were without it. AdamW is Adam with it.
    """
    if name not in DEFAULT_LEARNING_RATES:
        raise InputError(f"unknown optimizer '{name}'; known: {', '.join(DEFAULT_LEARNING_RATES)}")
    rate = DEFAULT_LEARNING_RATES[name] if learning_rate is None else learning_rate
    decay = {"weight_decay": weight_decay} if weight_decay else {}
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=rate, **decay)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=rate, weight_decay=weight_decay)
    return keras.optimizers.SGD(learning_rate=rate, momentum=0.9, **decay)
