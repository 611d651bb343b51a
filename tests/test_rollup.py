"""Roll-ups only to units of one class, and networks that give many cells one constant output.

Cases: groups (smears) that hold images of every class, images that hold tiles of every class, a few mixed
groups among many, a constant output over many tiles or over a group, outputs that are nearly constant but vary,
saturated outputs (a sure network's, and a dead network's constant), outputs calibration squeezed together,
a dense cloud of scores on a big test side, and a plate well whose cells all got one score.
"""

import numpy as np
import pandas as pd
import pytest
from test_evaluate import THRESHOLDS, history, run_rows, tiles

from cellclass.assay import wells as assay
from cellclass.evaluate import degenerate, findings, metrics
from cellclass.evaluate import tables as evaluate
from cellclass.learn import calibration


def evaluated(predictions):
    seeds = sorted(set(predictions["seed"]))
    table = evaluate.run_table(
        predictions,
        pd.concat([history([1.0], seed=s) for s in seeds]),
        run_rows(predictions),
        thresholds=THRESHOLDS,
        resamples=199,
    )
    return table, evaluate.summary_table(predictions, table, resamples=199)


def smears(n_groups=4, per_image=5, mixed_images=False, seed=0):
    """Every group (smear) holds one image of class a and one of b; with `mixed_images` each image holds tiles
    of both classes. Calls are right but for one tile of each image."""
    items = []
    for g in range(n_groups):
        for cls, other in (("a", "b"), ("b", "a")):
            for k in range(per_image):
                true = (cls if k % 2 == 0 else other) if mixed_images else cls
                items.append((f"s{g}/{cls}", f"s{g}", true, true if k else ("b" if true == "a" else "a"), 0.8))
    return tiles(items, ["a", "b"], seed=seed)


def test_groups_of_several_classes_are_not_called_and_the_headline_is_per_image():
    predictions = pd.concat([smears(seed=s) for s in range(2)], ignore_index=True)
    assert metrics.headline_choice(predictions) == ("image", "4 of 4 test groups hold several classes")
    assert metrics.rollup(predictions, "group").empty  # no group has a class of its own
    listed = metrics.rollup(predictions, "group", mixed=True)
    assert listed["mixed"].all() and listed["true"].isna().all() and listed["predicted"].isna().all()
    assert set(metrics.class_table(predictions)["level"]) == {"tile", "image"}
    table, summary = evaluated(predictions)
    group = table[table["level"] == "group"]
    assert (group["n_units"] == 0).all() and (group["mixed_units"] == 4).all()
    assert group["balanced_accuracy"].isna().all() and not group["headline"].any()
    assert table.loc[table["headline"], "level"].unique().tolist() == ["image"]
    ba = summary[summary["metric"] == "balanced_accuracy"].set_index("level")
    assert (
        ba.loc["image", "headline"] and ba.loc["image", "headline_reason"] == "4 of 4 test groups hold several classes"
    )
    assert ba.loc["group", ["n_units", "mixed_units"]].tolist() == [0, 4] and np.isnan(ba.loc["group", "estimate"])
    assert ba.loc["image", "estimate"] == pytest.approx(1.0)  # 4 of 5 tiles right in every image
    [line] = findings.headline(summary)
    assert "balanced accuracy per image 1.00 over 4 test groups" in line and "per tile 0.80" in line
    assert "The headline is per image because 4 of 4 test groups hold several classes" in line
    assert "has no class of its own" in line


def test_images_of_several_classes_put_the_headline_per_tile():
    predictions = smears(mixed_images=True)
    level, reason = metrics.headline_choice(predictions)
    assert (
        level == "tile" and reason == "4 of 4 test groups hold several classes; 8 of 8 test images hold several classes"
    )
    table, summary = evaluated(predictions)
    assert table.loc[table["headline"], "level"].tolist() == ["tile"]
    assert table.loc[table["level"] == "image", "mixed_units"].tolist() == [8]
    [line] = findings.headline(summary)
    assert line.startswith("e/deep on its own test side (d): balanced accuracy per tile")
    assert line.count("per tile 0.80") == 1  # not the same number twice
    assert "The headline is per tile because 4 of 4 test groups hold several classes; 8 of 8 test images" in line
    # Groups of one image each: only the images' mixing is named.
    single = predictions.assign(group=predictions["sample"])
    assert metrics.headline_choice(single) == ("tile", "8 of 8 test images hold several classes")


def test_a_few_mixed_groups_are_left_out_and_the_headline_stays_per_group():
    items = []
    for g in range(20):
        for cls in ("a", "b"):
            true = cls if g else "a"  # group 0 is all class a but its b image: mixed
            items += [
                (f"g{g}/{cls}{i}", f"g{g}{'' if g == 0 else cls}", true if i == 0 or g else cls, true, 0.8)
                for i in range(2)
            ]
    predictions = tiles(items, ["a", "b"])
    mixed, n = metrics.mixed_units(predictions, "group")
    assert (mixed, n) == (1, 39) and mixed <= metrics.MAX_MIXED_SHARE * n
    assert metrics.headline_choice(predictions) == ("group", "")
    table, summary = evaluated(predictions)
    group = table[table["level"] == "group"].iloc[0]
    assert group["headline"] and (group["n_units"], group["mixed_units"]) == (38, 1)
    [line] = findings.headline(summary)
    assert "balanced accuracy per group 1.00 over 38 test groups" in line
    assert "1 of 39 test groups hold several classes and are left out of the per-group scores" in line
    assert "The headline is per" not in line


def varied(n, rng, low=0.05, high=0.95):
    return rng.uniform(low, high, n)


def two_class(p_a, first_group=()):
    """Prediction rows of one run with p_a per tile (true class a for the first half) in groups of one class:
    `first_group` names the group of the first tiles, the rest go to 10 groups per class."""
    n = len(p_a)
    true = ["a" if i < n // 2 else "b" for i in range(n)]
    groups = [*first_group, *(f"{true[i]}{i % 10}" for i in range(len(first_group), n))]
    return pd.DataFrame(
        {
            "experiment": "e",
            "dataset": "d",
            "model": "deep",
            "fold": 0,
            "seed": 0,
            "test_set": "d",
            "tile": [f"t{i}" for i in range(n)],
            "sample": groups,
            "group": groups,
            "true": true,
            "predicted": np.where(np.asarray(p_a) >= 0.5, "a", "b"),
            "p_a": p_a,
            "p_b": 1 - np.asarray(p_a),
        }
    )


def test_a_constant_output_over_many_tiles_is_flagged_with_its_numbers():
    rng = np.random.default_rng(0)
    p_a = np.concatenate([0.542 + rng.uniform(-1e-6, 1e-6, 30), varied(170, rng)])
    predictions = two_class(p_a)
    [flags] = degenerate.run_flags(predictions).to_dict("records")
    assert flags["constant_output"] and flags["constant_tiles"] == 30 and flags["constant_groups"] == 0
    assert flags["constant_value"] == "p_a 0.5420, p_b 0.4580"
    table, _ = evaluated(predictions)
    tile = table[table["level"] == "tile"].iloc[0]
    assert tile["constant_output"] and not tile["collapsed"]  # calls are not one class: no collapse
    assert not table.loc[table["level"] != "tile", "constant_output"].any()
    [line] = findings.constant_outputs(table)
    assert "constant output — 30 of its 200 tiles got one probability vector (p_a 0.5420, p_b 0.4580" in line


def test_a_group_whose_tiles_all_got_one_output_is_flagged():
    rng = np.random.default_rng(1)
    p_a = np.concatenate([np.full(8, 0.542), varied(192, rng)])
    predictions = two_class(p_a, ["well1"] * 8)
    [flags] = degenerate.run_flags(predictions).to_dict("records")
    assert flags["constant_output"] and flags["constant_groups"] == 1 and flags["constant_tiles"] == 0
    table, _ = evaluated(predictions)
    [line] = findings.constant_outputs(table)
    assert "in 1 test group(s) nearly every tile got one and the same" in line and "0 of" not in line


@pytest.mark.parametrize("spread", [5e-4, 5e-3])
def test_outputs_that_are_nearly_constant_but_vary_are_not_flagged(spread):
    p_a = np.linspace(0.54 - spread, 0.54 + spread, 300)
    [flags] = degenerate.run_flags(two_class(p_a)).to_dict("records")
    assert not flags["constant_output"] and flags["constant_tiles"] == 0 and flags["constant_value"] == ""


def sure_network(n, rng):
    """A sure network's float32 softmax: the minority class 1e-9 to 1e-4, different for every tile, so that p of
    the call often rounds to exactly 1.0; the first half called a, the rest b."""
    minority = (10.0 ** rng.uniform(-9, -4, n)).astype(np.float32)
    p_a = np.where(np.arange(n) < n // 2, np.float32(1) - minority, minority)
    table = two_class(p_a)
    table["p_b"] = np.where(np.arange(n) < n // 2, minority, np.float32(1) - minority)
    return table


def test_sure_calls_and_a_dense_cloud_of_scores_are_not_flagged():
    rng = np.random.default_rng(4)
    sure = sure_network(200, rng)
    assert (sure[["p_a", "p_b"]].max(axis=1) >= degenerate.SATURATED).all() and (sure["p_a"] == 1).any()
    assert not degenerate.run_flags(sure).loc[0, "constant_output"]
    # Sharpened by a small temperature its calibrated outputs underflow to 0 and 1: nothing tells them apart there.
    key = tuple(sure.loc[0, metrics.SCORE])
    scaled = sure.assign(**dict(zip(["p_a", "p_b"], calibration.apply(sure[["p_a", "p_b"]].to_numpy(), 0.05).T)))
    assert (scaled[["p_a", "p_b"]].min(axis=1) == 0).mean() > 0.5
    assert not degenerate.run_flags(scaled, {key: 0.05}).loc[0, "constant_output"]
    # 300 000 cells spread over 0.45-0.55: every 1e-4 bin holds ~300, yet none is a spike above its neighbours.
    cloud = np.random.default_rng(2).uniform(0.45, 0.55, 300_000)
    assert degenerate.constant_cluster(np.c_[cloud, 1 - cloud]) == (0, None)


def test_a_saturated_constant_output_is_flagged():
    """A dead network whose one output is sure: every cell 1.000, bit for bit the same, whatever it shows."""
    rng = np.random.default_rng(5)
    dead = np.float32(1) - np.float32(2e-6)
    predictions = two_class(np.r_[np.full(30, dead, np.float32), varied(170, rng)])
    [flags] = degenerate.run_flags(predictions).to_dict("records")
    assert flags["constant_output"] and flags["constant_tiles"] == 30
    assert flags["constant_value"] == "p_a 1.0000, p_b 0.0000"
    # Every tile on it (its test groups too), and seen through a temperature that softened it.
    whole = two_class(np.full(200, dead, np.float32))
    whole[["p_a", "p_b"]] = calibration.apply(whole[["p_a", "p_b"]].to_numpy(), 20.0)
    [flags] = degenerate.run_flags(whole, {tuple(whole.loc[0, metrics.SCORE]): 20.0}).to_dict("records")
    assert flags["constant_tiles"] == 200 and flags["constant_groups"] == 20
    assert flags["constant_value"] == "p_a 1.0000, p_b 0.0000"


def test_the_check_reads_the_networks_own_probabilities_not_the_calibrated_ones():
    """A temperature of 20 squeezes 40 tiles spread over 0.004 into 0.0003: a spike it would flag. run_table
    undoes each run's temperature (from metrics.json's calibration) first."""
    rng = np.random.default_rng(6)
    own = two_class(np.r_[np.linspace(0.700, 0.704, 40), varied(160, rng, high=0.4)])
    scaled = own.assign(**dict(zip(["p_a", "p_b"], calibration.apply(own[["p_a", "p_b"]].to_numpy(), 20.0).T)))
    assert degenerate.run_flags(scaled).loc[0, "constant_output"]  # read as they are, they look constant
    assert not degenerate.run_flags(own).loc[0, "constant_output"]
    runs = run_rows(scaled).assign(
        calibration=[
            {
                "temperature": 20.0,
                "fitted_on": "100 validation tiles",
                "test_sets": {"d": dict.fromkeys(evaluate.CALIBRATION, 0.1)},
            }
        ]
    )
    table = evaluate.run_table(scaled, history([1.0]), runs, thresholds=THRESHOLDS, resamples=99)
    assert not table["constant_output"].any() and (table.loc[table["level"] == "tile", "temperature"] == 20).all()


def plate(scores):
    """One image per well; `scores` maps (well, role) to its cells' positive-class probabilities."""
    layout, cells = [], []
    for i, ((well, role), p) in enumerate(scores.items()):
        image = f"P/{well}/s1"
        layout.append(
            {
                "sample": image,
                "plate": "P",
                "well": well,
                "row": 0,
                "column": i,
                "site": "1",
                "role": role,
                "dose": np.nan,
                "unit": "uM",
                "condition": "",
                "class": "aggregates" if role == "positive_control" else "",
            }
        )
        cells += [{"image": image, "p_aggregates": v, "p_control": 1 - v} for v in p]
    return pd.DataFrame(cells), layout


def test_a_well_whose_cells_all_got_one_score_is_left_out_of_z_prime():
    rng = np.random.default_rng(3)
    cells, layout = plate(
        {
            ("A01", "positive_control"): rng.uniform(0.8, 0.95, 20),
            ("A02", "positive_control"): rng.uniform(0.8, 0.95, 20),
            ("A03", "positive_control"): np.full(179, 0.541981),
            ("B01", "negative_control"): rng.uniform(0.05, 0.2, 20),
            # Sure negatives: saturated, each cell its own, not a constant output.
            ("B02", "negative_control"): 10.0 ** rng.uniform(-8, -5, 20),
        }
    )
    wells = assay.well_table(cells, layout, ["aggregates", "control"], "aggregates", resamples=99)
    assert wells.set_index("well")["constant_score"].to_dict() == {
        "A01": False,
        "A02": False,
        "A03": True,
        "B01": False,
        "B02": False,
    }
    [row] = assay.plate_statistics(wells).to_dict("records")
    assert (row["positive_wells"], row["negative_wells"], row["constant_wells"]) == (2, 2, 1)
    kept = wells[wells["well"].isin(["A01", "A02"])]["score"]
    assert row["positive_mean"] == pytest.approx(kept.mean())
    lines = assay.sentences(pd.DataFrame([{**row, "n_wells": 0}]), "aggregates", "cell")
    assert any("1 well(s) left out of Z', SSMD" in x and "A03 (positive control, score 0.5420)" in x for x in lines)
