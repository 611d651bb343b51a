"""The model registry: shapes, exact parameter counts, names Grad-CAM relies on, honest minimum sizes."""

import keras
import numpy as np
import pytest

from cellclass.io.errors import InputError
from cellclass.learn import models

# Narrow variants keep the big models fast; the architecture is the same.
FAST = {"alexnet": {"width": 0.125}, "resnet": {"width": 0.25, "blocks_per_stage": 1}}


def square(name, side, channels=2):
    """(side, side, channels), raised to the model's minimum (alexnet needs 67 px)."""
    side = max(side, models.MODELS[name].min_size)
    return (side, side, channels)


def build(name, shape=None, n_classes=2, **options):
    return models.build_model(name, shape or square(name, 64), n_classes, **{**FAST.get(name, {}), **options})


def tiles(shape, n=3, seed=0):
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def run(model, x):
    return model(x).numpy()


# Every model once, plus the deep models with the article's shared layers.
VARIANTS = [(name, {}) for name in models.MODELS] + [(name, {"shared_weights": True}) for name in ("deep", "deep50")]


@pytest.mark.parametrize("name", models.MODELS)
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_every_model_builds_and_outputs_probabilities(name, channels, n_classes):
    shape = square(name, 64, channels)
    model = build(name, shape, n_classes)
    assert model.output.shape == (None, n_classes)
    probabilities = run(model, tiles(shape))
    assert probabilities.shape == (3, n_classes)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


def conv(k, c_in, c_out):
    return k * k * c_in * c_out + c_out


def dense(n_in, n_out):
    return n_in * n_out + n_out


def deep_parameters(channels, n_classes, shared):
    repeats = 1 if shared else 2  # the article calls one layer twice: its weights count once
    return (
        conv(3, channels, 16)  # entry_conv
        + repeats * conv(3, 16, 16)  # conv16
        + conv(3, 16, 32)  # conv32
        + repeats * conv(3, 32, 32)  # conv32_2
        + conv(3, 32, 64)  # conv64
        + repeats * conv(3, 64, 64)  # conv64_2
        + dense(4 * 4 * 64, 512)  # 64 px / 2**4 pools = 4 px, 64 channels
        + dense(512, n_classes)  # logits
    )


@pytest.mark.parametrize("shared", [False, True])
def test_deep_parameter_and_layer_counts(shared):
    model = models.build_model("deep", (64, 64, 2), 3, shared_weights=shared)
    assert model.count_params() == deep_parameters(2, 3, shared)
    assert deep_parameters(2, 3, False) == 646_771
    # input, 9 or 6 conv layers, 4 pools, feature_map, flatten, dense512, logits, predictions
    assert len(model.layers) == 1 + (9 if not shared else 6) + 4 + 1 + 1 + 1 + 1 + 1
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in model.layers) == (6 if shared else 9)


def test_deep_defaults_to_separate_layers():
    names = {layer.name for layer in build("deep").layers}
    assert {"conv16_a", "conv16_b", "conv32_2_a", "conv32_2_b", "conv64_2_a", "conv64_2_b"} <= names
    assert "conv16" not in names


@pytest.mark.parametrize("shared", [False, True])
def test_deep50_adds_one_dense_50(shared):
    deep = models.build_model("deep", (64, 64, 2), 3, shared_weights=shared)
    deep50 = models.build_model("deep50", (64, 64, 2), 3, shared_weights=shared)
    n_dense = [sum(isinstance(layer, keras.layers.Dense) for layer in m.layers) for m in (deep, deep50)]
    assert n_dense[1] == n_dense[0] + 1
    assert deep50.get_layer("dense50").units == 50
    # dense512 -> logits becomes dense512 -> dense50 -> logits
    extra = dense(512, 50) + dense(50, 3) - dense(512, 3)
    assert deep50.count_params() - deep.count_params() == extra


def test_shared_weights_calls_one_layer_twice():
    model = models.build_model("deep", (64, 64, 2), 2, shared_weights=True)
    config = {entry["name"]: entry for entry in model.get_config()["layers"]}
    for name in ("conv16", "conv32_2", "conv64_2"):
        assert [layer.name for layer in model.layers].count(name) == 1
        assert len(config[name]["inbound_nodes"]) == 2
    separate = models.build_model("deep", (64, 64, 2), 2, shared_weights=False)
    assert separate.get_layer("conv16_a").kernel is not separate.get_layer("conv16_b").kernel


@pytest.mark.parametrize("name, options", VARIANTS)
def test_last_conv_is_the_map_the_head_reads(name, options):
    """Grad-CAM needs the feature map the classifier really consumes, not a shared layer's first call."""
    model = build(name, square(name, 32), **options)
    last = model.get_layer(models.MODELS[name].last_conv)
    assert len(last.output.shape) == 4
    x = tiles(square(name, 32))
    features = keras.Model(model.input, last.output)(x)
    after = model.layers[[layer.name for layer in model.layers].index(last.name) + 1 :]
    y = features
    for layer in after:
        y = layer(y)
    np.testing.assert_allclose(y.numpy(), run(model, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", models.MODELS)
def test_logits_model_gives_the_score_before_softmax(name):
    model = build(name, square(name, 32), n_classes=3)
    logits_model = keras.Model(model.input, model.get_layer("logits").output)
    x = tiles(square(name, 32))
    probabilities = keras.ops.softmax(run(logits_model, x)).numpy()
    np.testing.assert_allclose(probabilities, run(model, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", models.MODELS)
def test_min_size_is_exactly_the_smallest_tile_that_builds(name):
    spec = models.MODELS[name]
    size = spec.min_size
    build(name, (size, size, 1))
    if size > 1:
        with pytest.raises(ValueError):  # the raw network breaks one pixel below
            models.BUILDERS[name]((size - 1, size - 1, 1), 2, **FAST.get(name, {}))
        with pytest.raises(InputError, match=f"model '{name}' needs tiles of at least {size} px; got {size - 1} px"):
            build(name, (size - 1, size + 10, 1))


def test_alexnet_regularises_every_kernel_and_rejects_small_tiles():
    model = build("alexnet")
    kernels = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    assert len(kernels) == 5 + 2 + 1  # conv1-5, fc1-2, logits
    assert len(model.losses) == len(kernels)
    assert all(layer.kernel_regularizer is not None for layer in kernels)
    assert models.MODELS["alexnet"].optimizer == "sgd"
    with pytest.raises(InputError, match=r"model 'alexnet' needs tiles of at least 67 px; got 32 px"):
        models.build_model("alexnet", (32, 32, 2), 2)


def test_width_scales_alexnet_and_resnet():
    assert build("alexnet", width=0.5).get_layer("conv1").filters == 48
    resnet = build("resnet", width=0.5, blocks_per_stage=3)
    assert resnet.get_layer("stage3_block3_conv2").filters == 64
    assert 300_000 < models.build_model("resnet", (64, 64, 2), 2).count_params() < 1_000_000


def test_bad_names_and_options_are_input_errors():
    with pytest.raises(
        InputError, match="unknown model 'vgg'; known: deep, deep50, alexnet, resnet, small, mobilenetv3small, "
    ):
        models.build_model("vgg", (64, 64, 2), 2)
    with pytest.raises(InputError, match="model 'deep' has no option width; options: shared_weights"):
        models.build_model("deep", (64, 64, 2), 2, width=0.5)
    with pytest.raises(InputError, match="model 'small' has no option dropout; options: none"):
        models.build_model("small", (64, 64, 2), 2, dropout=0.5)
    with pytest.raises(InputError, match="width must be a number > 0"):
        models.build_model("alexnet", (67, 67, 2), 2, width=0)
    with pytest.raises(InputError, match="blocks_per_stage"):
        models.build_model("resnet", (64, 64, 2), 2, blocks_per_stage=1.5)
    with pytest.raises(InputError, match="shared_weights"):
        models.build_model("deep", (64, 64, 2), 2, shared_weights="yes")
    with pytest.raises(InputError, match="at least 2 classes"):
        models.build_model("small", (64, 64, 2), 1)


def test_make_optimizer():
    adam = models.make_optimizer("adam")
    assert isinstance(adam, keras.optimizers.Adam)
    assert float(adam.learning_rate) == pytest.approx(1e-3)
    sgd = models.make_optimizer("sgd")
    assert isinstance(sgd, keras.optimizers.SGD)
    assert sgd.momentum == 0.9
    assert float(sgd.learning_rate) == pytest.approx(0.01)
    assert float(models.make_optimizer("sgd", 0.1).learning_rate) == pytest.approx(0.1)
    with pytest.raises(InputError, match="unknown optimizer 'rmsprop'"):
        models.make_optimizer("rmsprop")


def test_building_is_deterministic_under_a_seed():
    def weights(seed):
        keras.utils.set_random_seed(seed)
        return build("resnet").get_weights()

    first, again, other = weights(0), weights(0), weights(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize("name, options", VARIANTS)
def test_saved_models_load_back(name, options, tmp_path):
    model = build(name, square(name, 32), **options)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    x = tiles(square(name, 32))
    np.testing.assert_allclose(run(loaded, x), run(model, x), rtol=1e-5, atol=1e-6)


def test_softmax_stays_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build("small", (32, 32, 2))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("logits").compute_dtype == "float16"
    assert model.output.dtype == "float32"


def test_small_memorises_random_tiles():
    """32 noise tiles with arbitrary labels: reaching 100 % training accuracy shows gradients reach every layer."""
    keras.utils.set_random_seed(0)
    x = tiles((32, 32, 2), n=32)
    y = keras.utils.to_categorical(np.random.default_rng(1).permutation(np.arange(32) % 2), 2)
    model = models.build_model("small", (32, 32, 2), 2)
    model.compile(models.make_optimizer("adam"), "categorical_crossentropy", metrics=["accuracy"])
    stop_when_perfect = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: setattr(model, "stop_training", logs["accuracy"] == 1.0)
    )
    # Stops at the first perfect epoch (a dozen on our CPUs); the head room is for other CPUs' float order.
    history = model.fit(x, y, epochs=80, batch_size=8, verbose=0, callbacks=[stop_when_perfect])
    assert history.history["accuracy"][-1] == 1.0


@pytest.mark.parametrize("name", ["small", "resnet"])
def test_batchnorm_models_predict_well_after_a_short_run(name):
    """Low-contrast tiles, 72 steps: the moving BatchNorm statistics must have caught up by inference.

    Stale statistics give chance (0.5). The bound leaves room for other CPUs' float order
    (oneDNN on or off): one x86-64 machine gave 0.896 after half as many steps.
    """
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 0.05, (192, 16, 16, 2)).astype(np.float32)
    labels = np.arange(192) % 2
    for tile in x[labels == 1]:
        row, col = rng.integers(2, 14, 2)
        tile[row - 1 : row + 2, col - 1 : col + 2, 0] = 1.0  # one bright spot marks class 1
    y = keras.utils.to_categorical(labels, 2)
    model = build(name, (16, 16, 2))
    model.compile(models.make_optimizer("adam"), "categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=6, batch_size=16, verbose=0)
    assert model.evaluate(x, y, verbose=0)[1] >= 0.75
