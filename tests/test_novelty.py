"""Novelty: distance to the nearest training class in a network's features, in units of a held-out quantile;
and what prediction does with it (abstain per tile, left out of images, groups and wells)."""

import numpy as np
import pandas as pd

from cellclass.assay.wells import well_table
from cellclass.learn import novelty
from cellclass.predict import abstention, call_tables


def clusters(rng, n, centres, scale=1.0):
    labels = np.arange(n) % len(centres)
    return centres[labels] + scale * rng.standard_normal((n, centres.shape[1])), labels


def two_spaces(rng, n, centres, shift=0.0):
    """Features of n tiles in two spaces: the classes' clusters in the first, and a second space of its own
    where `shift` moves every tile away."""
    first, labels = clusters(rng, n, centres)
    second = rng.standard_normal((n, 8)) + shift
    return [first, second], labels


def test_held_out_tiles_of_known_classes_pass_and_far_ones_do_not(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (3, 40))
    train, labels = two_spaces(rng, 600, centres)
    reference = novelty.fit(train, labels, two_spaces(rng, 600, centres)[0], layers=["a", "b"])
    same, _ = two_spaces(rng, 2000, centres)
    assert 0.0 < (reference.novelty(same) > 1).mean() < 0.04  # about 1 - 0.99, with room for sampling
    far = two_spaces(rng, 500, centres + 6)[0]
    assert (reference.novelty(far) > 1).mean() > 0.95
    # Far in one space is enough, whatever the other says: the score is the largest over the spaces.
    odd = two_spaces(rng, 500, centres, shift=6)[0]
    assert (reference.novelty(odd) > 1).mean() > 0.95
    # A class mean is judged by its nearest class.
    assert reference.spaces[0].distances(centres).max() < 1
    reference.save(tmp_path / "n.npz")
    again = novelty.Reference.load(tmp_path / "n.npz")
    np.testing.assert_allclose(again.novelty(far), reference.novelty(far))
    assert again.meta == reference.meta and again.meta["threshold_from"] == "validation side, 600 tiles"
    assert again.meta["layers"] == ["a", "b"] and again.meta["features"] == [40, 8]


def test_the_threshold_is_the_held_out_quantile_so_fresh_tiles_abstain_at_one_minus_q():
    """Held-out and fresh tiles of one distribution are exchangeable, so at any quantile q about 1 - q of fresh
    tiles lie beyond the threshold, whatever the features' law: a lower q abstains on more because the data say
    so. A wider held-out side moves the threshold with it; tiles from a shifted distribution lie beyond it."""
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 5, (2, 10))

    def sample(n, spread=1.0, offset=0.0):
        first, labels = clusters(rng, n, centres + offset, spread)
        return [first, spread * rng.standard_normal((n, 8))], labels

    train, labels = sample(400)
    held_tiles, fresh_tiles = 2000, 20000
    for spread in (1.0, 1.5):  # held out like the training tiles, or wider than them
        held, fresh = sample(held_tiles, spread)[0], sample(fresh_tiles, spread)[0]
        reference = novelty.fit(train, labels, held)
        for q in (0.5, 0.8, 0.9, 0.99):
            # Per tile: n(1 - q) of the held-out tiles lie beyond their own q quantile, to one tile.
            assert abs((reference.novelty(held, q) > 1).mean() - (1 - q)) <= 1 / held_tiles + 1e-9
            # Fresh tiles: binomial spread of both samples, four standard deviations.
            bound = 4 * np.sqrt(q * (1 - q) * (1 / held_tiles + 1 / fresh_tiles))
            assert abs((reference.novelty(fresh, q) > 1).mean() - (1 - q)) < bound, (spread, q)
    # The threshold came from the wider held-out side: tiles like the training ones rarely pass 0.9 of it ...
    assert (reference.novelty(sample(fresh_tiles)[0], 0.9) > 1).mean() < 0.01
    # ... while tiles from a shifted distribution lie beyond nearly all of it.
    reference = novelty.fit(train, labels, sample(held_tiles)[0])
    assert (reference.novelty(sample(2000, offset=3.0)[0], 0.99) > 1).mean() > 0.95


def test_the_probed_layers_are_the_middle_and_last_feature_maps_and_the_penultimate_features():
    from cellclass.learn import models

    for name, shared in (("deep", False), ("deep", True), ("small", False), ("mobilenetv3small", False)):
        model = models.build_model(name, (32, 32, 2), 2, **({"shared_weights": True} if shared else {}))
        layers = novelty.probed_layers(model)
        assert len(layers) == (2 if name == "mobilenetv3small" else 3) and layers[-1] == "logits"
        step = novelty.feature_step((model, model))
        [first, second] = novelty.features(step, np.zeros((3, 32, 32, 2), np.float32), batch_size=2)
        assert [f.shape[0] for f in first] == [3] * len(layers) and all(f.ndim == 2 for f in first)
        assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_unlike_the_training_data_wins_over_uncertain_and_either_can_be_off():
    mean = np.array([[0.9, 0.1], [0.55, 0.45], [0.55, 0.45], [0.99, 0.01]])
    far = np.array([0.2, 0.3, 1.5, 3.0])
    options = {"novelty_quantile": 0.99, "min_probability": 0.6}
    assert list(abstention.abstentions(mean, far, options)) == [
        "",
        abstention.UNCERTAIN,
        abstention.UNLIKE,
        abstention.UNLIKE,
    ]
    assert list(abstention.abstentions(mean, None, options)) == ["", abstention.UNCERTAIN, abstention.UNCERTAIN, ""]
    assert list(abstention.abstentions(mean, far, abstention.ABSTAIN_DEFAULTS)) == [
        "",
        "",
        abstention.UNLIKE,
        abstention.UNLIKE,
    ]


class FakeTiles:  # a TileSet's meta and length are all image_table reads
    def __init__(self, n, sample="a"):
        self.meta = {
            "sample": sample,
            "group": "w1",
            "files": [f"{sample}.tif"],
            "class": "x",
            "settings": {"kind": "fields"},
        }
        self.n = n

    def __len__(self):
        return self.n


def test_an_image_leaves_its_abstained_tiles_out_and_one_all_abstained_makes_no_call():
    scores = np.array([[[0.9, 0.1], [0.2, 0.8], [0.1, 0.9]]])  # 1 member, 3 tiles
    row = call_tables.image_table([FakeTiles(3)], scores, ["x", "y"], ["", abstention.UNLIKE, abstention.UNLIKE]).iloc[
        0
    ]
    assert row["call"] == "x" and row["p_x"] == 0.9 and row["unlike_training"] == 2
    assert row["abstained_share"] == 2 / 3 and row["called_y"] == 0 and row["correct"]
    row = call_tables.image_table([FakeTiles(3)], scores, ["x", "y"], [abstention.UNLIKE] * 3).iloc[0]
    assert row["call"] == abstention.UNLIKE and np.isnan(row["p_x"]) and row["correct"] is None


def test_wells_count_abstained_cells_and_score_only_the_others():
    layout = [
        {
            "sample": s,
            "plate": "P",
            "well": w,
            "row": "A",
            "column": c,
            "role": "sample",
            "dose": 1.0,
            "unit": "uM",
            "condition": "",
            "class": "",
        }
        for s, w, c in (("a", "A01", 1), ("b", "A02", 2))
    ]
    tiles = pd.DataFrame(
        {
            "image": ["a", "a", "a", "b"],
            "p_x": [0.2, 0.4, 1.0, 0.5],
            "p_y": [0.8, 0.6, 0.0, 0.5],
            "abstain": [np.nan, np.nan, abstention.UNLIKE, np.nan],
        }
    )
    wells = well_table(tiles, layout, ["x", "y"], "x", resamples=99).set_index("well")
    assert wells.loc["A01", "abstained"] == 1 and wells.loc["A01", "cells"] == 2
    assert np.isclose(wells.loc["A01", "score"], 0.3) and wells.loc["A02", "abstained"] == 0


def test_the_thresholds_sample_size_is_recorded_and_a_small_one_is_named():
    """A quantile q wants 10 held-out tiles beyond it: 1000 for the 99th percentile, 100 for the 90th."""
    assert novelty.tiles_needed(0.99) == 1000 and novelty.tiles_needed(0.9) == 100
    enough = novelty.sample_size(1200)
    assert enough == {
        "threshold_quantile": 0.99,
        "threshold_tiles": 1200,
        "threshold_tiles_needed": 1000,
        "threshold_note": None,
    }
    few = novelty.sample_size(300)
    assert few["threshold_tiles"] == 300
    assert "rests on 300 held-out tiles, about 3.0 of them beyond it" in few["threshold_note"]
    assert novelty.sample_size(300, 0.9)["threshold_note"] is None
    rng = np.random.default_rng(2)
    centres = rng.normal(0, 5, (2, 10))
    train, labels = two_spaces(rng, 100, centres)
    assert novelty.fit(train, labels, two_spaces(rng, 70, centres)[0]).meta["held_out_tiles"] == 70
