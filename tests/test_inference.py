"""Batched inference and its test-time augmentation (the mean over the 8 dihedral views of each tile)."""

import keras
import numpy as np
import pytest

from cellclass.io.errors import InputError
from cellclass.io.tilestore import TileSet
from cellclass.learn import inference


@pytest.fixture(scope="module")
def model():
    """A network with no symmetry of its own (Flatten keeps where each pixel is): its calls change when a tile turns."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 2))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    logits = keras.layers.Dense(3, kernel_initializer=keras.initializers.RandomNormal(stddev=0.3))(
        keras.layers.Flatten()(x)
    )
    return keras.Model(inputs, keras.layers.Softmax()(logits))


def tiles(n=5, side=16, seed=0):
    return np.random.default_rng(seed).random((n, side, side, 2), dtype=np.float32)


def test_the_eight_views_are_the_dihedral_group():
    x = tiles(1)
    views = inference.dihedral_views(x)
    assert len(views) == 8 and np.array_equal(views[0], x)
    assert len({view.tobytes() for view in views}) == 8  # a random tile has no symmetry: 8 distinct views
    # Turning or mirroring a view gives another view: the set is closed.
    for turned in (np.rot90(views[3], 1, axes=(1, 2)), views[5][:, ::-1]):
        assert any(np.array_equal(turned, view) for view in views)


def test_tta_is_invariant_to_turning_and_mirroring_the_tile(model):
    x = tiles()
    plain = inference.probabilities(model, x)
    averaged = inference.probabilities(model, x, tta="dihedral")
    np.testing.assert_allclose(averaged.sum(axis=1), 1, rtol=1e-5)
    for view in inference.dihedral_views(x)[1:]:
        assert np.abs(inference.probabilities(model, view) - plain).max() > 0.05  # the check means something
        np.testing.assert_allclose(inference.probabilities(model, view, tta="dihedral"), averaged, atol=1e-6)


def test_tta_is_the_mean_of_the_views_scored_one_by_one(model):
    x = tiles(7)
    by_hand = np.mean([model.predict_on_batch(np.ascontiguousarray(v)) for v in inference.dihedral_views(x)], axis=0)
    np.testing.assert_allclose(inference.probabilities(model, x, batch_size=3, tta="dihedral"), by_hand, atol=1e-6)


def test_a_rotation_invariant_network_is_unchanged_by_tta():
    """Pixel-wise layers then global pooling see a turned tile as the same tile: TTA must give its plain output."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 2))
    x = keras.layers.Conv2D(4, 1, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    invariant = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    x = tiles()
    np.testing.assert_allclose(
        inference.probabilities(invariant, x, tta="dihedral"), inference.probabilities(invariant, x), atol=1e-6
    )


def test_per_image_passes_tta_on(model):
    x = tiles(6)
    images = [
        TileSet(x[:4], np.zeros(4), np.zeros(4), {}),
        TileSet(x[:0], np.zeros(0), np.zeros(0), {}),
        TileSet(x[4:], np.zeros(2), np.zeros(2), {}),
    ]
    scored = list(inference.per_image([model], images, n_classes=3, tta="dihedral"))
    assert [s.shape for s in scored] == [(1, 4, 3), (1, 0, 3), (1, 2, 3)]
    np.testing.assert_allclose(
        np.concatenate([s[0] for s in scored]), inference.probabilities(model, x, tta="dihedral"), atol=1e-6
    )


def test_bad_tta_requests_are_input_errors(model):
    with pytest.raises(InputError, match="unknown test-time augmentation 'flips'; known: none, dihedral"):
        inference.probabilities(model, tiles(), tta="flips")
    rectangles = keras.Model(
        *(lambda i: (i, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(i))))(
            keras.Input((16, 8, 2))
        )
    )
    with pytest.raises(InputError, match="needs square tiles; these are 16x8 px"):
        inference.probabilities(rectangles, np.zeros((2, 16, 8, 2), np.float32), tta="dihedral")
