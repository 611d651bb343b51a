"""The registry of CNN classifiers, built with the Keras functional API.

Every layer has a stable name: `model_specs.MODELS[name].last_conv` names the map Grad-CAM
reads, and every model ends in a Dense layer "logits" followed by a separate
softmax "predictions", so attribution can take the class score before softmax
with `keras.Model(model.input, model.get_layer("logits").output)`. Input size,
channels and classes always come from the caller. Besides our own networks the registry holds backbones:
keras.applications networks built at our tile size and channel count, from scratch or from ImageNet weights.
"""

import inspect
import warnings

import keras
import numpy as np
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


def _tiles(input_shape, standardise):
    """The model's input "tiles" and what its first layer reads: the tiles themselves, or each channel
    standardised, (x - mean) / sd with the training tiles' channel means and variances.

    Standardising inside the model makes a network's start independent of how bright its data are (bit-depth
    scaling leaves 14-bit fields near 0.01), and the statistics travel wherever the model goes: prediction,
    attribution and the exported package read raw tiles as training did. The layer is a per-channel Rescaling
    (x * 1/sd + -mean/sd), what keras.layers.Normalization computes: Normalization holds its statistics as
    eager tensors, which the ONNX export of a package leaves as unfed inputs, where Rescaling's numbers become
    constants of the graph (and any Keras loads it, bioimage.io's tools too).
    """
    inputs = keras.Input(input_shape, name="tiles")
    if standardise is None:
        return inputs, inputs
    mean, variance = (np.asarray(v, dtype="float64") for v in standardise)
    sd = np.sqrt(variance)
    scale, offset = (1 / sd).tolist(), (-mean / sd).tolist()
    return inputs, layers.Rescaling(scale, offset, name="standardise")(inputs)


def _scaled(count, width):
    return max(1, round(count * width))


def _check_number(model, option, value, ok, wanted):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
        raise InputError(f"model '{model}': option {option} must be {wanted}; got {value!r}")


def _deep(input_shape, n_classes, *, shared_weights=False, standardise=None):
    """The article's DeepNetwork: 9 conv applications of 3x3, four 2x2 max-pools, Dense 512.

    In the article's code the repeated convolutions (conv16, conv32_2, conv64_2) are
    one layer object called twice, so each pair shares its weights. The default
    `shared_weights=False` builds the conventional network with separate layers
    (conv16_a, conv16_b, ...): it is the network a reader of the article's figure
    assumes, the sharing looks like a side effect of calling a Keras layer in a
    loop, and separate layers give each depth its own filters.
    `shared_weights=True` reproduces the article's code exactly.
    """
    return _deep_network(input_shape, n_classes, shared_weights, (512,), "deep", standardise)


def _deep50(input_shape, n_classes, *, shared_weights=False, standardise=None):
    """The article's best variant: DeepNetwork with an extra Dense(50, relu) before the output."""
    return _deep_network(input_shape, n_classes, shared_weights, (512, 50), "deep50", standardise)


def _deep_network(input_shape, n_classes, shared_weights, hidden, name, standardise):
    if not isinstance(shared_weights, bool):
        raise InputError(f"model '{name}': option shared_weights must be true or false; got {shared_weights!r}")

    def conv(filters, layer_name):
        return layers.Conv2D(filters, 3, padding="same", activation="relu", name=layer_name)

    def twice(x, filters, layer_name):
        if shared_weights:
            shared = conv(filters, layer_name)
            return shared(shared(x))
        return conv(filters, f"{layer_name}_b")(conv(filters, f"{layer_name}_a")(x))

    inputs, x = _tiles(input_shape, standardise)
    x = conv(16, "entry_conv")(x)
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


def _alexnet(input_shape, n_classes, *, width=1.0, standardise=None):
    """The article's AlexNet clone, L2 5e-4 on every kernel; `width` scales filters and units.

    Pooling keeps the clone's "valid" padding, so the network matches the
    article's at the article's tile sizes; the price is that three 3x3/2 pools
    after the stride-4 first layer need tiles of at least 67 px (64 px tiles
    must be resized, e.g. prepare.resize_to: 67 or more).
    """
    _check_number("alexnet", "width", width, lambda v: v > 0, "a number > 0")
    l2 = keras.regularizers.L2(5e-4)

    def conv(filters, size, layer_name, **kwargs):
        return layers.Conv2D(
            _scaled(filters, width), size, activation="relu", kernel_regularizer=l2, name=layer_name, **kwargs
        )

    def pool(layer_name):
        return layers.MaxPooling2D(3, strides=2, name=layer_name)

    inputs, x = _tiles(input_shape, standardise)
    x = conv(96, 11, "conv1", strides=4)(x)
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


def _resnet(input_shape, n_classes, *, width=1.0, blocks_per_stage=2, dropout=0.2, stem_stride=1, standardise=None):
    """A small pre-activation ResNet (He et al. 2016) for training from scratch.

    Stem 3x3 conv, then three stages of basic residual blocks (32, 64, 128 filters
    times `width`), stride 2 and a 1x1 projection shortcut where a stage starts,
    a final BN-ReLU ("final_relu"), global average pooling and dropout. About 0.7 M
    parameters at the defaults: enough capacity for cell images, few enough for
    small data sets. `stem_stride` 2 makes the stem a stride-2 convolution: every stage then works on maps of
    half the side, a quarter of the arithmetic, for large tiles (96 px and up) whose detail is coarser than a pixel.
    """
    _check_number("resnet", "width", width, lambda v: v > 0, "a number > 0")
    if stem_stride not in (1, 2) or isinstance(stem_stride, bool):
        raise InputError(f"model 'resnet': option stem_stride must be 1 or 2; got {stem_stride!r}")
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

    inputs, x = _tiles(input_shape, standardise)
    x = conv(_scaled(32, width), 3, "stem_conv", stem_stride)(x)
    for stage, filters in enumerate((32, 64, 128), start=1):
        for b in range(1, blocks_per_stage + 1):
            strides = 2 if stage > 1 and b == 1 else 1
            x = block(x, _scaled(filters, width), strides, f"stage{stage}_block{b}")
    x = bn_relu(x, "final_bn", "final_relu")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, _head(x, n_classes), name="resnet")


def _small(input_shape, n_classes, *, standardise=None):
    """Three 3x3 conv-BN-ReLU blocks (16, 32, 64) with two max-pools, then global average pooling.

    BatchNorm is what lets it fit within a few epochs (without it, it needs tens).
    """
    inputs, x = _tiles(input_shape, standardise)
    for i, filters in enumerate((16, 32, 64), start=1):
        if i > 1:
            x = layers.MaxPooling2D(name=f"pool{i - 1}")(x)
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(momentum=_BN_MOMENTUM, name=f"bn{i}")(x)
        x = layers.Activation("relu", name=f"relu{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, _head(x, n_classes), name="small")


# Backbones -----------------------------------------------------------------------------------------------
#
# What a backbone model feeds its keras.applications network: our tiles are float in [0, 1] per channel, mapped
# by one affine "preprocess" layer (x * scale + offset) onto the range the ImageNet weights were trained on,
# instead of the applications' own preprocessing (which expects 0-255 RGB and is switched off):
# MobileNetV3 and ResNet50V2 take [-1, 1]; EfficientNetV2-B0 takes ImageNet's mean/std standardisation, here
# with the mean over RGB (mean 0.449, sd 0.226) for every channel, to match the first convolution's kernel
# averaged over RGB (see adapt_first_kernel). The same layer is there without pretrained weights, so a run
# from scratch and a pretrained one differ only in their starting weights.
_GREY_MEAN, _GREY_SD = (0.485 + 0.456 + 0.406) / 3, (0.229 + 0.224 + 0.225) / 3
_PREPROCESS = {
    "MobileNetV3Small": (2.0, -1.0),
    "ResNet50V2": (2.0, -1.0),
    "EfficientNetV2B0": (1 / _GREY_SD, -_GREY_MEAN / _GREY_SD),
}


def adapt_first_kernel(kernel, channels):
    """An RGB first-convolution kernel (kh, kw, 3, filters) for `channels` microscopy channels.

    Three channels keep the kernel as it is. Otherwise each channel gets the mean over RGB times 3 / channels:
    a tile whose channels are all equal to a grey image g then gives exactly the response of the RGB network to
    g in all three colours, so activations keep their magnitude whatever the number of channels.
    """
    kernel = np.asarray(kernel)
    if channels == kernel.shape[2]:
        return kernel
    mean = kernel.mean(axis=2, keepdims=True)
    return np.repeat(mean * (kernel.shape[2] / channels), channels, axis=2).astype(kernel.dtype)


def _application(spec, input_shape, weights):
    """keras.applications' network `spec.application` for `input_shape`, without top, pooling or its own preprocessing."""
    build = getattr(keras.applications, spec.application)
    options = {} if spec.application == "ResNet50V2" else {"include_preprocessing": False}
    with warnings.catch_warnings():
        # "usually expects 1 or 3 input channels" (2 or 4 are fine without pretrained weights), and
        # MobileNetV3's note that ImageNet weights were made at 224 px: both known, neither a problem here.
        warnings.filterwarnings("ignore", message=".*input channels.*|.*input_shape. is undefined or non-square.*")
        return build(include_top=False, weights=weights, input_shape=input_shape, pooling=None, **options)


def pretrained_backbone(name, input_shape, weights):
    """The backbone of registry model `name` for `input_shape` (H, W, C) with ImageNet `weights`.

    `weights` is "imagenet" (Keras downloads the file into ~/.keras/models/, so online only) or the path of
    that file (`MODELS[name].weights_file`, copied to a machine without internet). The network is built for
    RGB with those weights through the application's own `weights=` argument, then for C channels without
    weights, and the weights are copied layer by layer, the first convolution's kernel adapted
    (adapt_first_kernel).
    """
    spec = MODELS[name]
    try:
        rgb = _application(spec, (*input_shape[:2], 3), weights)
    except (ValueError, OSError) as error:
        raise InputError(
            f"model '{name}': could not load weights {weights}: {error}. A path must be Keras' ImageNet weights of "
            f"{spec.application} without top, the file {spec.weights_file} that Keras keeps in ~/.keras/models/"
        ) from None
    if input_shape[2] == 3:
        return rgb
    backbone = _application(spec, tuple(input_shape), None)
    adapted = False
    for source, target in zip(rgb.layers, backbone.layers, strict=True):
        values = source.get_weights()
        if not adapted and isinstance(source, layers.Conv2D):
            values[0] = adapt_first_kernel(values[0], input_shape[2])
            adapted = True
        target.set_weights(values)
    return backbone


def _backbone_model(name, input_shape, n_classes, *, weights, freeze_epochs, dropout, standardise):
    """Preprocess, the application (a nested model named "backbone"), then "feature_map", average pooling, dropout and the head.

    The backbone's output is its last feature map; the Identity layer "feature_map" names it in the outer
    model, where Grad-CAM can differentiate it (a nested model's inner layers are not outer tensors).
    With `standardise` the tiles' channels are standardised (mean 0, sd 1) instead of mapped from [0, 1] onto
    the ImageNet range: about the scale that ImageNet networks see after their own standardisation.
    """
    spec = MODELS[name]
    if not (weights is None or isinstance(weights, str)):
        raise InputError(f"model '{name}': option weights must be null, imagenet or a file path; got {weights!r}")
    if isinstance(freeze_epochs, bool) or not isinstance(freeze_epochs, int) or freeze_epochs < 0:
        raise InputError(f"model '{name}': option freeze_epochs must be an integer >= 0; got {freeze_epochs!r}")
    if freeze_epochs and weights is None:
        raise InputError(
            f"model '{name}': freeze_epochs {freeze_epochs} would train the head on a frozen random "
            "backbone; give weights (imagenet or a file) or set freeze_epochs to 0"
        )
    _check_number(name, "dropout", dropout, lambda v: 0 <= v < 1, "a number in [0, 1)")
    if weights is None:
        backbone = _application(spec, input_shape, None)
    else:
        backbone = pretrained_backbone(name, input_shape, weights)
    backbone.name = "backbone"
    for layer in backbone.layers:
        # The house's fast BatchNorm statistics (see _BN_MOMENTUM): from scratch they start at mean 0 and
        # variance 1; from ImageNet they describe photographs. Either way they must follow our tiles within
        # a short run. While the backbone is frozen its BatchNorm layers run in inference mode and keep them.
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = _BN_MOMENTUM
    inputs, x = _tiles(input_shape, standardise)
    if standardise is None:
        x = layers.Rescaling(*_PREPROCESS[spec.application], name="preprocess")(x)
    x = layers.Identity(name="feature_map")(backbone(x))
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, _head(x, n_classes), name=name)


def _mobilenetv3small(input_shape, n_classes, *, weights=None, freeze_epochs=0, dropout=0.2, standardise=None):
    """MobileNetV3Small (Howard et al. 2019) as the backbone: 0.9 M parameters, the fastest on a CPU.

    `weights`: null (from scratch), imagenet (downloaded by Keras), or the path of Keras' weights file.
    `freeze_epochs`: warm-up epochs that train only the head, with the backbone frozen (see cellclass.learn.training).
    """
    return _backbone_model(
        "mobilenetv3small",
        input_shape,
        n_classes,
        weights=weights,
        freeze_epochs=freeze_epochs,
        dropout=dropout,
        standardise=standardise,
    )


def _efficientnetv2b0(input_shape, n_classes, *, weights=None, freeze_epochs=0, dropout=0.2, standardise=None):
    """EfficientNetV2-B0 (Tan & Le 2021) as the backbone: 5.9 M parameters. Options as mobilenetv3small."""
    return _backbone_model(
        "efficientnetv2b0",
        input_shape,
        n_classes,
        weights=weights,
        freeze_epochs=freeze_epochs,
        dropout=dropout,
        standardise=standardise,
    )


def _resnet50v2(input_shape, n_classes, *, weights=None, freeze_epochs=0, dropout=0.2, standardise=None):
    """ResNet50V2 (He et al. 2016) as the backbone: 23.6 M parameters. Options as mobilenetv3small."""
    return _backbone_model(
        "resnet50v2",
        input_shape,
        n_classes,
        weights=weights,
        freeze_epochs=freeze_epochs,
        dropout=dropout,
        standardise=standardise,
    )


def backbone(model):
    """The nested "backbone" of a backbone model (what training freezes for its warm-up), or None."""
    try:
        return model.get_layer("backbone")
    except ValueError:
        return None


def freeze_epochs(name, options):
    """Warm-up epochs with the backbone frozen: the `freeze_epochs` option of a backbone model, else 0."""
    return int((options or {}).get("freeze_epochs", 0)) if MODELS[name].application else 0


# How to build each registry model (cellclass.learn.model_specs holds what planning needs to know about it).
BUILDERS = {
    "deep": _deep,
    "deep50": _deep50,
    "alexnet": _alexnet,
    "resnet": _resnet,
    "small": _small,
    "mobilenetv3small": _mobilenetv3small,
    "efficientnetv2b0": _efficientnetv2b0,
    "resnet50v2": _resnet50v2,
}


def build_model(name, input_shape, n_classes, *, standardise=None, **options):
    """Build registry model `name` for (H, W, C) tiles and `n_classes` classes; bad input raises InputError.

    `options` are the model's own (train.model_options); `standardise`, (mean, variance) per channel of the
    training tiles, puts a Normalization layer first (see _tiles).
    """
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
    known = [
        p.name
        for p in inspect.signature(build).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.name != "standardise"
    ]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InputError(f"model '{name}' has no option {', '.join(unknown)}; options: {', '.join(known) or 'none'}")
    return build(tuple(input_shape), n_classes, standardise=standardise, **options)


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
