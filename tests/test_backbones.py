"""Backbones from keras.applications: offline ImageNet-style weights files load, the first convolution is adapted
to microscopy channels as documented, and the warm-up freezes exactly the backbone. Nothing is downloaded: the
weights files are written here from networks built with weights=None, in the format Keras caches."""

import h5py
import keras
import numpy as np
import pytest

from cellclass.io.errors import InputError
from cellclass.learn import models, training
from cellclass.learn.model_specs import MODELS

BACKBONES = [name for name, spec in MODELS.items() if spec.application]
SIDE = 32


def imagenet_style_file(folder, name, side=SIDE, seed=1):
    """The RGB network without top, its weights saved like Keras' cached ImageNet file (legacy HDF5, by layer
    order), under that file's name; returns (path, the RGB network).

    Every weight is drawn from U(0.5, 1.5), like no fresh build's (BatchNorm's start at 0 or 1): a value that
    reappears in a built model was read from the file.
    """
    from keras.src.legacy.saving import legacy_h5_format

    rgb = models._application(MODELS[name], (side, side, 3), None)
    rng = np.random.default_rng(seed)
    rgb.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) for w in rgb.get_weights()])
    path = folder / MODELS[name].weights_file
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, rgb)
    return path, rgb


@pytest.fixture(scope="module")
def mobilenet_file(tmp_path_factory):
    return imagenet_style_file(tmp_path_factory.mktemp("weights"), "mobilenetv3small")


def test_backbones_are_registry_models_with_their_weights_file_named():
    assert BACKBONES == ["mobilenetv3small", "efficientnetv2b0", "resnet50v2"]
    for name in BACKBONES:
        assert MODELS[name].weights_file.endswith(".h5") and MODELS[name].last_conv == "feature_map"


@pytest.mark.parametrize("name", BACKBONES)
def test_a_weights_file_loads_and_the_first_kernel_is_the_rgb_mean(name, tmp_path):
    path, rgb = imagenet_style_file(tmp_path, name)
    model = models.build_model(name, (SIDE, SIDE, 2), 3, weights=str(path))
    saved, loaded = rgb.get_weights(), models.backbone(model).get_weights()
    assert len(saved) == len(loaded)
    first = saved[0]
    assert first.ndim == 4 and first.shape[2] == 3  # the stem kernel (kh, kw, RGB, filters)
    np.testing.assert_allclose(loaded[0], np.repeat(first.mean(axis=2, keepdims=True) * 3 / 2, 2, axis=2), rtol=1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(saved[1:], loaded[1:]))


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_a_grey_tile_gets_the_rgb_networks_response_whatever_the_channels(mobilenet_file, channels):
    """The documented adaptation: every channel equal to a grey image g gives the RGB network's features of g."""
    path, rgb = mobilenet_file
    model = models.build_model("mobilenetv3small", (SIDE, SIDE, channels), 2, weights=str(path))
    grey = np.random.default_rng(0).random((2, SIDE, SIDE, 1), dtype=np.float32)
    preprocessed = model.get_layer("preprocess")(grey).numpy()  # the same affine map on every channel
    expected = rgb(np.repeat(preprocessed, 3, axis=-1), training=False).numpy()
    got = models.backbone(model)(np.repeat(preprocessed, channels, axis=-1), training=False).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_three_channels_keep_the_rgb_kernel():
    kernel = np.random.default_rng(0).random((3, 3, 3, 4)).astype(np.float32)
    assert np.array_equal(models.adapt_first_kernel(kernel, 3), kernel)
    one = models.adapt_first_kernel(kernel, 1)
    np.testing.assert_allclose(one[:, :, 0], kernel.sum(axis=2), rtol=1e-6)  # 3 x mean = the sum over RGB


def test_a_keras3_weights_file_loads_too(mobilenet_file, tmp_path):
    _, rgb = mobilenet_file
    rgb.save_weights(tmp_path / "mobilenet.weights.h5")
    model = models.build_model("mobilenetv3small", (SIDE, SIDE, 3), 2, weights=str(tmp_path / "mobilenet.weights.h5"))
    assert all(np.array_equal(a, b) for a, b in zip(rgb.get_weights(), models.backbone(model).get_weights()))


def test_wrong_weights_and_options_are_input_errors(mobilenet_file, tmp_path):
    path, _ = mobilenet_file
    with pytest.raises(
        InputError, match=r"model 'resnet50v2': could not load weights .*resnet50v2_weights_tf_dim_ordering"
    ):
        models.build_model("resnet50v2", (SIDE, SIDE, 2), 2, weights=str(path))
    with pytest.raises(InputError, match="freeze_epochs 2 would train the head on a frozen random backbone"):
        models.build_model("mobilenetv3small", (SIDE, SIDE, 2), 2, freeze_epochs=2)
    with pytest.raises(InputError, match="freeze_epochs must be an integer >= 0"):
        models.build_model("mobilenetv3small", (SIDE, SIDE, 2), 2, weights=str(path), freeze_epochs=-1)
    with pytest.raises(InputError, match="has no option width; options: weights, freeze_epochs, dropout"):
        models.build_model("mobilenetv3small", (SIDE, SIDE, 2), 2, width=2)


def test_the_config_checks_the_weights_file_before_any_job(tmp_path, mobilenet_file):
    from cellclass.config import validate

    def config(weights):
        return {
            "datasets": {"d": {"demo": {"pattern": "aggregates"}}},
            "train": {"models": ["mobilenetv3small"], "model_options": {"mobilenetv3small": {"weights": weights}}},
        }

    path, _ = mobilenet_file
    checked = validate(config(path.name), base_dir=path.parent)
    assert checked["experiments"]["d"]["train"]["model_options"]["mobilenetv3small"]["weights"] == str(path)
    with pytest.raises(
        InputError,
        match=r"model_options.mobilenetv3small.weights: .*missing.h5 is not a file.*"
        r"weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
    ):
        validate(config("missing.h5"), base_dir=tmp_path)
    assert (
        validate(config("imagenet"))["experiments"]["d"]["train"]["model_options"]["mobilenetv3small"]["weights"]
        == "imagenet"
    )


def with_backbone():
    """A tiny stand-in for a backbone model: a nested "backbone" (conv, BatchNorm, ReLU), pooling and a head."""
    inner_input = keras.Input((16, 16, 2))
    x = keras.layers.Conv2D(4, 3, name="conv")(inner_input)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.5, name="bn")(x))
    backbone = keras.Model(inner_input, x, name="backbone")
    inputs = keras.Input((16, 16, 2))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="logits")(x))


def test_warm_up_trains_the_head_then_every_layer_on_one_epoch_counter(tmp_path):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((32, 16, 16, 2), dtype=np.float32)
    y = keras.utils.to_categorical(np.arange(32) % 2, 2)
    model = with_backbone()

    def compile_model(m):
        m.compile(optimizer=models.make_optimizer("adam"), loss="categorical_crossentropy")

    compile_model(model)
    seen = []

    def record(epoch, logs):
        seen.append(
            (
                epoch,
                [w.copy() for w in models.backbone(model).get_weights()],
                model.get_layer("logits").get_weights()[0].copy(),
            )
        )

    start_backbone = models.backbone(model).get_weights()
    start_head = model.get_layer("logits").get_weights()[0]
    fit = dict(y=y, batch_size=8, verbose=0, callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=record)])
    training.fit_with_warm_up(model, compile_model, 1, x, epochs=2, initial_epoch=0, **fit)
    assert [epoch for epoch, _, _ in seen] == [0, 1]
    (_, frozen, head1), (_, tuned, _) = seen
    # Frozen: no weight moves, not even BatchNorm's moving statistics (inference mode); the head learns.
    assert all(np.array_equal(a, b) for a, b in zip(start_backbone, frozen))
    assert not np.array_equal(head1, start_head)
    assert all(not np.array_equal(a, b) for a, b in zip(frozen, tuned))  # kernel, bias, gamma, beta, moving stats
    assert models.backbone(model).trainable

    # A run killed after its warm-up epoch resumes from that checkpoint (backbone still frozen) in fine-tuning.
    model = with_backbone()
    compile_model(model)
    training.fit_with_warm_up(model, compile_model, 1, x, epochs=1, initial_epoch=0, **fit)
    model.save(tmp_path / "epoch1.keras")
    restored = keras.saving.load_model(tmp_path / "epoch1.keras")
    assert not models.backbone(restored).trainable
    seen.clear()
    model = restored
    training.fit_with_warm_up(model, compile_model, 1, x, epochs=2, initial_epoch=1, **fit)
    assert [epoch for epoch, _, _ in seen] == [1] and models.backbone(model).trainable


def test_models_without_a_backbone_train_in_one_fit():
    model = models.build_model("small", (16, 16, 2), 2)
    assert models.backbone(model) is None and models.freeze_epochs("small", {}) == 0
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = np.random.default_rng(0).random((8, 16, 16, 2), dtype=np.float32)
    y = keras.utils.to_categorical(np.arange(8) % 2, 2)
    history = []
    training.fit_with_warm_up(
        model,
        None,
        0,
        x,
        y=y,
        epochs=2,
        initial_epoch=0,
        verbose=0,
        callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: history.append(e))],
    )
    assert history == [0, 1]
