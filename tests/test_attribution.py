"""Attribution maps obey their definitions (completeness, exactness on a linear model), enrichment scores masks,
and the overlay figures write real files."""

import keras
import numpy as np
import pandas as pd
import pytest

from cellclass.explain import attribution, enrichment, overlays
from cellclass.learn import models

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SIDE, CHANNELS = 16, 2
# Narrow variants keep the big registry models fast; the layer names are the same.
FAST = {"alexnet": {"width": 0.125}, "resnet": {"width": 0.25, "blocks_per_stage": 1}}


def head(x, n_classes=2):
    logits = keras.layers.Dense(n_classes, name="logits")(x)
    return keras.layers.Activation("softmax", name="predictions")(logits)


@pytest.fixture(scope="module")
def cnn():
    """A small nonlinear network: two convs (the second is Grad-CAM's layer), a pool, a tanh dense, logits."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIDE, SIDE, CHANNELS))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Dense(8, activation="tanh", name="hidden")(keras.layers.Flatten()(x))
    return keras.Model(inputs, head(x), name="tiny_cnn")


@pytest.fixture(scope="module")
def linear():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((SIDE, SIDE, CHANNELS))
    return keras.Model(inputs, head(keras.layers.Flatten()(inputs), 3), name="linear")


def tiles(n=3, side=SIDE, channels=CHANNELS, seed=0):
    return np.random.default_rng(seed).random((n, side, side, channels), dtype=np.float32)


def scores(model, x, targets):
    return attribution.score_model(model)(x).numpy()[np.arange(len(x)), targets]


@pytest.mark.parametrize("baseline", attribution.BASELINES)
def test_integrated_gradients_are_complete(cnn, baseline):
    x, targets = tiles(), np.array([0, 1, 1])
    ig = attribution.integrated_gradients(cnn, x, targets, baseline=baseline, steps=128, batch_size=50)
    assert ig.shape == x.shape and ig.dtype == np.float32
    difference = scores(cnn, x, targets) - scores(cnn, attribution.baseline_tiles(x, baseline), targets)
    assert np.all(np.abs(difference) > 1e-3)  # the check means something
    np.testing.assert_allclose(ig.sum(axis=(1, 2, 3)), difference, rtol=0.02)


def test_blurred_baseline_blurs_each_channel_of_each_tile():
    x = np.zeros((2, SIDE, SIDE, 2), dtype=np.float32)
    x[0, 8, 8, 1] = 1.0
    blurred = attribution.baseline_tiles(x, "blurred", blur_sigma=2.0)
    assert blurred[1].max() == 0 and blurred[0, ..., 0].max() == 0  # no leak across tiles or channels
    assert blurred[0, 8, 8, 1] < 1 and blurred[0, 8, 10, 1] > 0
    np.testing.assert_allclose(blurred.sum(), 1.0, rtol=1e-3)


def test_gradient_x_input_on_a_linear_model_is_weights_times_input(linear):
    x, targets = tiles(), np.array([0, 2, 1])
    kernel = linear.get_layer("logits").kernel.numpy()  # (SIDE * SIDE * CHANNELS, classes)
    weights = kernel.T[targets].reshape(x.shape)
    signed = attribution.gradient_x_input(linear, x, targets, signed=True, batch_size=2)
    np.testing.assert_array_equal(signed, (weights * x).sum(axis=-1))
    unsigned = attribution.gradient_x_input(linear, x, targets, batch_size=2)
    np.testing.assert_array_equal(unsigned, np.abs(weights * x).sum(axis=-1))


@pytest.mark.parametrize("method", attribution.METHODS)
def test_shapes_dtypes_range_and_determinism(cnn, method):
    x, targets = tiles(5).astype(np.float16), np.array([0, 1, 0, 1, 1])  # tiles are stored as float16
    raw = {
        "gradient_x_input": lambda: attribution.gradient_x_input(cnn, x, targets, batch_size=2),
        "integrated_gradients": lambda: attribution.integrated_gradients(cnn, x, targets, steps=8, batch_size=7),
        "smoothgrad": lambda: attribution.smoothgrad(cnn, x, targets, samples=4, seed=3, batch_size=3),
        "grad_cam": lambda: attribution.grad_cam(cnn, x, targets, layer="conv2", batch_size=2),
    }[method]
    first = raw()
    assert first.shape == (x.shape if method == "integrated_gradients" else x.shape[:3])
    assert first.dtype == np.float32 and np.isfinite(first).all()
    np.testing.assert_array_equal(raw(), first)

    options = {"integrated_gradients": {"steps": 8}, "smoothgrad": {"samples": 4}}.get(method)
    maps = attribution.attribute(cnn, x, targets, method, options=options, layer="conv2")
    assert maps.shape == x.shape[:3] and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    peaks = maps.max(axis=(1, 2))
    assert np.all((peaks == 1) | (peaks == 0))
    np.testing.assert_array_equal(attribution.attribute(cnn, x, targets, method, options=options, layer="conv2"), maps)


def test_smoothgrad_depends_on_the_seed_not_the_batch_size(cnn):
    x, targets = tiles(), np.array([0, 1, 0])
    base = attribution.smoothgrad(cnn, x, targets, samples=4, seed=0, batch_size=64)
    np.testing.assert_allclose(
        attribution.smoothgrad(cnn, x, targets, samples=4, seed=0, batch_size=5), base, rtol=1e-5
    )
    assert not np.allclose(attribution.smoothgrad(cnn, x, targets, samples=4, seed=1), base)


def test_logits_are_the_default_score_and_probabilities_are_available(cnn):
    x = tiles()
    logits = attribution.score_model(cnn)(x).numpy()
    np.testing.assert_allclose(keras.ops.softmax(logits).numpy(), cnn(x).numpy(), rtol=1e-5)
    assert attribution.score_model(cnn, "probabilities") is cnn
    with pytest.raises(ValueError, match="output must be"):
        attribution.score_model(cnn, "softmax")


def test_bad_requests_are_named(cnn):
    with pytest.raises(ValueError, match="unknown attribution method"):
        attribution.attribute(cnn, tiles(), [0, 1, 0], "lime")
    with pytest.raises(ValueError, match="3 tiles but 2 targets"):
        attribution.gradient_x_input(cnn, tiles(), [0, 1])
    with pytest.raises(ValueError, match="needs layer="):
        attribution.attribute(cnn, tiles(), [0, 1, 0], "grad_cam")


@pytest.mark.parametrize("name", models.MODELS)
def test_grad_cam_finds_the_registry_layer(name):
    side = max(models.MODELS[name].min_size, 32)
    model = models.build_model(name, (side, side, 2), 2, **FAST.get(name, {}))
    x, targets = tiles(4, side), np.array([0, 1, 0, 1])
    maps = attribution.grad_cam(model, x, targets, layer=models.MODELS[name].last_conv)
    assert maps.shape == (4, side, side) and np.isfinite(maps).all() and maps.min() >= 0
    # The registry name is enough: attribute() looks the layer up itself.
    np.testing.assert_array_equal(attribution.attribute(model, x, targets, "grad_cam"), attribution.normalise(maps))


def weights(model):
    return [w.numpy() for w in model.weights]


def test_randomised_copy_changes_weights_keeps_architecture_and_is_deterministic():
    model = models.build_model("small", (SIDE, SIDE, 2), 2)
    for w in model.trainable_weights:  # stand-in for training: weights no initialiser would produce
        w.assign(w.numpy() + 0.5)
    copy = attribution.randomised_copy(model, seed=7)
    assert [layer.name for layer in copy.layers] == [layer.name for layer in model.layers]
    assert [w.shape for w in copy.weights] == [w.shape for w in model.weights]
    changed = [not np.array_equal(a, b) for a, b in zip(weights(copy), weights(model))]
    assert all(changed[i] for i, w in enumerate(model.weights) if w.trainable)
    for a, b in zip(weights(attribution.randomised_copy(model, seed=7)), weights(copy)):
        np.testing.assert_array_equal(a, b)
    other = weights(attribution.randomised_copy(model, seed=8))
    assert not np.array_equal(other[0], weights(copy)[0])


def test_enrichment_scores_concentration_against_area():
    masks = np.zeros((4, 10, 10), dtype=bool)
    masks[:, :2, :5] = True  # 10 % of the tile
    maps = np.zeros((4, 10, 10))
    maps[0] = masks[0]  # all mass inside -> 1 / 0.1
    maps[1] = 1.0  # uniform -> 1
    maps[2] = ~masks[2]  # all mass outside -> 0
    # maps[3] sums to 0 -> NaN
    result = enrichment.enrichment(maps, masks)
    np.testing.assert_allclose(result[:3], [10.0, 1.0, 0.0])
    assert np.isnan(result[3])
    assert np.isnan(enrichment.enrichment(np.ones((1, 10, 10)), np.zeros((1, 10, 10), dtype=bool)))[0]


def test_puncta_mask_finds_bright_spots_on_a_noisy_background():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    field = 0.2 + 0.2 * xx / 64 + rng.normal(0, 0.02, (64, 64))  # uneven cytoplasm
    spots = [(10, 12), (30, 50), (50, 20)]
    truth = np.zeros((64, 64), dtype=bool)
    for r, c in spots:
        disc = (yy - r) ** 2 + (xx - c) ** 2 <= 4
        field[disc] += 0.5
        truth |= disc
    mask = enrichment.puncta_mask(field, radius=3)
    assert all(mask[r, c] for r, c in spots)
    assert (mask & truth).sum() / mask.sum() > 0.9  # the background stays out
    assert not enrichment.puncta_mask(np.full((16, 16), 0.3)).any()
    assert not enrichment.puncta_mask(field, threshold=10.0).any()


def test_tile_masks_crop_at_the_tiles_corners():
    field = np.zeros((20, 30), dtype=bool)
    field[5, 7] = True
    crops = enrichment.tile_masks(field, rows=[0, 4, 10], cols=[0, 6, 20], size=8)
    assert crops.shape == (3, 8, 8) and crops.dtype == bool
    assert crops[0, 5, 7] and crops[1, 1, 1] and not crops[2].any()
    assert crops.sum() == 2
    # A single-cell crop centred near the border reaches past it: the mask is empty there.
    [edge] = enrichment.tile_masks(field, rows=[-2], cols=[3], size=8)
    assert edge[7, 4] and edge.sum() == 1 and not edge[:2].any()
    with pytest.raises(ValueError, match="outside"):
        enrichment.tile_masks(field, rows=[25], cols=[0], size=8)


def test_class_tags_never_collide():
    six = ["Nucleoplasm", "Nucleoli", "Nuclear speckles", "Mitochondria", "Microtubules", "Golgi"]
    tags = overlays.class_initials(six)
    assert len(set(tags.values())) == 6
    assert tags["Nucleoplasm"] == "Nucleop" and tags["Nuclear speckles"] == "Nuclea" and tags["Golgi"] == "G"
    assert overlays.class_initials(["ab", "abc"]) == {"ab": "ab", "abc": "Abc"}


def test_class_initials_use_two_letters_only_where_initials_clash():
    assert overlays.class_initials(["control", "aggregates"]) == {"control": "C", "aggregates": "A"}
    assert overlays.class_initials(["aggregates", "atrophy", "control"]) == {
        "aggregates": "Ag",
        "atrophy": "At",
        "control": "C",
    }


def written(stem):
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert svg.stat().st_size > 0 and b"<svg" in svg.read_bytes()


def test_overlay_grid_and_enrichment_plot_write_png_and_svg(tmp_path):
    x = tiles(5)
    maps = attribution.normalise(np.random.default_rng(1).random((5, SIDE, SIDE)))
    fig = overlays.overlay_grid(
        tmp_path / "overlay",
        x,
        maps,
        [0, 1, 1, 0, 1],
        class_names=["aggregates", "control"],
        title="Grad-CAM",
        columns=3,
    )
    written(tmp_path / "overlay")
    assert fig.get_suptitle() == "Grad-CAM" and len(fig.axes) == 6  # 5 tiles on a 2 x 3 grid
    drawn = [ax for ax in fig.axes if ax.images]
    # Each tile: its channel 0 in gray under its map in purple, titled with its class's initial.
    assert [ax.get_title() for ax in drawn] == ["A", "C", "C", "A", "C"]
    for ax, tile, heat in zip(drawn, x, maps):
        gray, purple = ax.images
        assert np.array_equal(gray.get_array(), tile[..., 0]) and np.allclose(purple.get_array(), heat)
        assert purple.get_cmap() is overlays.ATTRIBUTION_CMAP

    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        [
            {"method": method, "model_state": state, "enrichment": rng.lognormal(0.5 if state == "trained" else 0, 0.3)}
            for method in attribution.METHODS
            for state in ("trained", "randomised")
            for _ in range(6)
        ]
        + [{"method": "grad_cam", "model_state": "trained", "enrichment": np.nan}]
    )
    fig = overlays.enrichment_plot(tmp_path / "enrichment", table)
    written(tmp_path / "enrichment")
    [ax] = fig.axes  # no experiment column: one panel
    assert fig.get_suptitle() == "Attribution inside the mask: trained vs randomised network"
    assert ax.get_ylabel() == "enrichment in the mask (1 = no preference)" and ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == [m.replace("_", " ") for m in attribution.METHODS]
    # A box and its 6 points per method and state, trained left of randomised; the NaN row is not drawn.
    drawn = [c.get_offsets() for c in ax.collections]
    assert len(drawn) == 2 * len(attribution.METHODS) and all(len(p) == 6 for p in drawn)
    expected = table.dropna().groupby(["method", "model_state"])["enrichment"]
    for i, method in enumerate(attribution.METHODS):
        for state, offset, points in zip(("trained", "randomised"), (-0.2, 0.2), drawn[2 * i : 2 * i + 2]):
            assert np.allclose(sorted(points[:, 1]), sorted(expected.get_group((method, state))))
            assert np.all(np.abs(points[:, 0] - (i + offset)) <= overlays.JITTER / 2)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["trained", "randomised"]
