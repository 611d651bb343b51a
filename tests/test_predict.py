"""Predict: new images found and tiled like the training data, ensemble calls, bad inputs, config checks."""

import numpy as np
import pandas as pd
import pytest
import tifffile
from test_tiling import blob_field, settings

from cellclass.config import validate
from cellclass.io.datasets import Sample, unlabelled_from_folder, unlabelled_from_sheet
from cellclass.io.errors import InputError
from cellclass.io.tilestore import TileSet
from cellclass.predict import abstention, call_overlays, call_tables, ensemble_scoring, tiling_check

CLASSES = ["aggregates", "control"]


def run_record(**prepare):
    return {
        "classes": CLASSES,
        "channels": None,
        "input_shape": [64, 64, 1],
        "prepare": {"settings": settings(**prepare), "channels": [1], "bit_depths": [16]},
    }


def image_row(tiles, scores, classes, abstain=None):
    """The image table's one row of a single image, as a dict."""
    return call_tables.image_table([tiles], scores, classes, abstain).iloc[0].to_dict()


def scored_rows(tiles, scores, novelty, classes, allowed):
    table, images = call_tables.scored_tables([tiles], scores, novelty, classes, allowed)
    return table, images.iloc[0].to_dict()


def tileset(n, sample="a", skipped=None):
    meta = {
        "sample": sample,
        "files": [f"{sample}.tif"],
        "class": "",
        "group": sample,
        "skipped": skipped,
        "settings": {"kind": "fields", "tile_size": 4},
    }
    return TileSet(np.zeros((n, 4, 4, 1)), np.arange(n) * 4, np.zeros(n, int), meta)


def test_folder_of_new_images_any_depth_with_known_classes(tmp_path):
    for name in ["loose.tif", "control/c1.png", "deep/er/x.tif"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".DS_Store").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("hi")
    samples = {s.id: s for s in unlabelled_from_folder(tmp_path)}
    assert set(samples) == {"loose", "control/c1", "deep/er/x"}
    assert samples["loose"].cls == "" and samples["control/c1"].cls == "control"


def test_empty_folder_and_bad_sheet_are_named(tmp_path):
    with pytest.raises(InputError, match="no images found"):
        unlabelled_from_folder(tmp_path)
    sheet = tmp_path / "new.tsv"
    sheet.write_text("path\nmissing.tif\n")
    with pytest.raises(InputError, match=r"new.tsv, line 2.*missing.tif"):
        unlabelled_from_sheet(sheet)
    (tmp_path / "a.tif").write_bytes(b"x")
    sheet.write_text("path\tclass\na.tif\t\n")
    [sample] = unlabelled_from_sheet(sheet)
    assert sample.id == "a" and sample.cls == ""


def test_new_image_is_tiled_with_the_runs_settings(tmp_path):
    path = tmp_path / "new.tif"
    tifffile.imwrite(path, blob_field())
    tiles = tiling_check.tile_like_training(Sample("new", (str(path),), "", "new"), run_record(tile_size=64, stride=32))
    assert len(tiles) and tiles.tiles.shape[1:] == (64, 64, 1)
    assert tiles.meta["settings"]["stride"] == 32


@pytest.mark.parametrize(
    "image, problem",
    [
        (np.stack([blob_field()] * 3), r"3 channel\(s\), 16-bit.*1-channel 16-bit.*\(Y, X, 1\)"),
        ((blob_field() // 256).astype(np.uint8), r"1 channel\(s\), 8-bit.*1-channel 16-bit"),
    ],
)
def test_image_unlike_the_training_images_is_refused_by_name(tmp_path, image, problem):
    path = tmp_path / "odd.tif"
    axes = "CYX" if image.ndim == 3 else "YX"
    tifffile.imwrite(path, image, imagej=True, metadata={"axes": axes})
    with pytest.raises(InputError, match=f"odd.tif: {problem}"):
        tiling_check.tile_like_training(Sample("odd", (str(path),), "", "odd"), run_record())


def test_image_row_rolls_up_tiles_then_members():
    # Two members, two tiles: member 0 says aggregates, member 1 leans control on one tile.
    scores = np.array([[[0.9, 0.1], [0.7, 0.3]], [[0.6, 0.4], [0.2, 0.8]]])
    row = image_row(tileset(2), scores, CLASSES)
    assert row["p_aggregates"] == pytest.approx(0.6) and row["call"] == "aggregates"
    assert row["spread"] == pytest.approx(0.2)  # members' image means: 0.8 and 0.4
    assert row["agreement"] == 0.5 and row["correct"] is None
    tiles = call_tables.tile_table([tileset(2)], scores, CLASSES)
    assert list(tiles["call"]) == ["aggregates", "control"]
    assert tiles["spread"].to_numpy() == pytest.approx([0.15, 0.25])
    assert list(tiles["row"]) == [0, 4]


def test_image_without_cells_is_reported_not_dropped():
    row = image_row(tileset(0), np.zeros((2, 0, 2)), CLASSES)
    assert row["call"] == "no cells found" and row["tiles"] == 0 and np.isnan(row["p_control"])
    skipped = image_row(tileset(0, skipped="unreadable"), np.zeros((2, 0, 2)), CLASSES)
    assert skipped["call"] == "skipped: unreadable"


def test_an_image_the_runs_trained_on_is_scored_by_the_others_or_not_at_all():
    # Three members; member 0 trained on the image, members 1 and 2 never saw it.
    scores = np.array([[[1.0, 0.0], [1.0, 0.0]], [[0.6, 0.4], [0.2, 0.8]], [[0.4, 0.6], [0.2, 0.8]]])
    out = {"members": [1, 2], "scored_by": "out of fold (fold 1, 2 runs)"}
    novelty = np.array([[9.0, 9.0], [0.5, 1.5], [0.5, 0.7]])  # member 0 would call both tiles unfamiliar
    tiles, row = scored_rows(tileset(2), scores, novelty, CLASSES, out)
    assert tiles["novelty"].to_numpy() == pytest.approx([0.5, 1.1])
    assert list(tiles["abstain"]) == ["", abstention.UNLIKE]
    tiles, row = scored_rows(tileset(2), scores, None, CLASSES, out)
    alone_tiles = call_tables.tile_table([tileset(2)], scores[1:], CLASSES)
    alone = image_row(tileset(2), scores[1:], CLASSES)
    assert row["p_aggregates"] == pytest.approx(alone["p_aggregates"]) == pytest.approx(0.35)
    assert tiles["p_aggregates"].to_numpy() == pytest.approx(alone_tiles["p_aggregates"].to_numpy())
    assert row["scored_by"] == "out of fold (fold 1, 2 runs)" and set(tiles["scored_by"]) == {out["scored_by"]}
    none = {"members": [], "scored_by": "not scored: every run trained on it"}
    tiles, row = scored_rows(tileset(2, sample="b"), scores, None, CLASSES, none)
    assert row["call"] == none["scored_by"] and np.isnan(row["p_control"]) and row["called_control"] == 0
    assert tiles["p_control"].isna().all() and set(tiles["call"]) == {none["scored_by"]}
    # The group of an unscored image says why it has no probability.
    images = pd.DataFrame([row])
    groups = call_tables.group_table(tiles, images.assign(unit="tile"), CLASSES)
    assert groups.loc[0, "call"] == groups.loc[0, "scored_by"] == none["scored_by"]


def test_run_without_recorded_preparation_is_refused(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"classes": ["a", "b"]}')
    with pytest.raises(InputError, match="retrain"):
        tiling_check.read_run(path)


def config_with(prediction):
    return {
        "datasets": {"d": {"demo": {"pattern": "aggregates"}}},
        "train": {"models": ["small", "deep"], "runs": 3},
        "predict": {"new": prediction},
    }


def test_prediction_defaults_to_first_model_and_every_seed():
    config = validate(config_with({"demo": {"pattern": "aggregates"}, "experiment": "d"}))
    assert config["predict"]["new"]["model"] == "small" and config["predict"]["new"]["seeds"] == [0, 1, 2]


@pytest.mark.parametrize(
    "prediction, problem",
    [
        ({"demo": {"pattern": "aggregates"}, "experiment": "nope"}, "no experiment 'nope'"),
        (
            {"demo": {"pattern": "aggregates"}, "experiment": "d", "model": "alexnet"},
            "trains small, deep, not 'alexnet'",
        ),
        ({"demo": {"pattern": "aggregates"}, "experiment": "d", "seeds": [5]}, "no seed 5"),
        ({"path": "/no/such/folder", "experiment": "d"}, "does not exist"),
        ({"experiment": "d"}, "predict.new"),
    ],
)
def test_bad_prediction_config_is_named(prediction, problem):
    with pytest.raises(InputError, match=problem):
        validate(config_with(prediction))


def test_prediction_set_may_not_shadow_a_dataset():
    config = config_with({"demo": {"pattern": "aggregates"}, "experiment": "d"})
    config["predict"] = {"d": config["predict"]["new"]}
    with pytest.raises(InputError, match="a dataset has this name"):
        validate(config)


@pytest.mark.parametrize("known, correct", [("aggregates", True), ("control", False), ("unknown", None), ("", None)])
def test_an_image_of_a_class_the_model_lacks_is_neither_right_nor_wrong(known, correct):
    images = tileset(1)
    images.meta["class"] = known
    row = image_row(images, np.array([[[0.9, 0.1]]]), CLASSES)
    assert row["call"] == "aggregates" and row["correct"] is correct


@pytest.mark.parametrize("judged", [False, True])
def test_an_ensemble_scores_each_member_as_alone_without_tensorflow_retracing_warnings(caplog, judged):
    """Six members over images of ragged tile counts (batches of 8, the last one short): the probabilities are each
    member's own, and TensorFlow does not warn of retracing (member by member, it did from the first prediction set).
    Judged for novelty, one pass gives probabilities and features: the probabilities are the same, and the novelty
    that of the features' own pass."""
    import logging

    import keras

    from cellclass.learn import inference, novelty
    from cellclass.learn.models import build_model

    keras.utils.set_random_seed(0)
    members = [build_model("small", (16, 16, 1), 2) for _ in range(6)]
    rng = np.random.default_rng(0)
    tilesets = [
        TileSet(rng.random((n, 16, 16, 1), dtype=np.float32), np.arange(n), np.zeros(n, int), {"sample": str(n)})
        for n in (5, 0, 9, 3)
    ]
    every_tile = np.concatenate([t.tiles for t in tilesets])
    references, features = None, None
    if judged:  # each member's reference made of these very tiles, in two made-up classes
        features = novelty.features(novelty.feature_step(tuple(members)), every_tile)
        references = [novelty.fit(f, np.arange(len(every_tile)) % 2, f) for f in features]
    with caplog.at_level(logging.WARNING):
        [(chunk, scores, novelties)] = list(
            ensemble_scoring.scored_chunks(
                members,
                references,
                tilesets,
                run_record() | {"input_shape": [16, 16, 1]},
                abstention.ABSTAIN_DEFAULTS,
                batch_size=8,
            )
        )
    assert not [r.getMessage() for r in caplog.records if "retracing" in r.getMessage()]
    assert chunk == tilesets and scores.shape == (6, 17, 2)
    alone = np.stack([inference.probabilities(m, every_tile) for m in members])
    assert np.allclose(scores, alone, atol=1e-6)
    if judged:
        assert np.allclose(novelties, [r.novelty(f, 0.99) for r, f in zip(references, features)], rtol=1e-5)
    else:
        assert novelties is None


def test_each_run_calibrates_its_own_probabilities(tmp_path):
    """A run's temperature (its metrics.json) divides its log-probabilities before the members are averaged."""
    import json

    import keras

    from cellclass.learn import calibration, inference
    from cellclass.learn.models import build_model

    paths = []
    for seed, record in ((0, {"calibration": {"temperature": 2.0}}), (1, {})):  # the second from before calibration
        (tmp_path / f"seed{seed}").mkdir()
        identity = {"experiment": "e", "dataset": "d", "model": "small", "fold": 0, "seed": seed}
        (tmp_path / f"seed{seed}/metrics.json").write_text(json.dumps({**identity, **record}))
        paths.append(tmp_path / f"seed{seed}/model.keras")
    assert ensemble_scoring.member_temperatures(paths) == [2.0, 1.0]
    keras.utils.set_random_seed(0)
    members = [build_model("small", (16, 16, 1), 2) for _ in range(2)]
    tiles = TileSet(
        np.random.default_rng(0).random((5, 16, 16, 1), dtype=np.float32),
        np.arange(5),
        np.zeros(5, int),
        {"sample": "a"},
    )
    [(_, scores, _)] = ensemble_scoring.scored_chunks(
        members,
        None,
        [tiles],
        run_record() | {"input_shape": [16, 16, 1]},
        abstention.ABSTAIN_DEFAULTS,
        temperatures=[2.0, 1.0],
    )
    raw = np.stack([inference.probabilities(m, tiles.tiles) for m in members])
    np.testing.assert_allclose(scores[0], calibration.apply(raw[0], 2.0), atol=1e-6)
    np.testing.assert_allclose(scores[1], raw[1], atol=1e-6)


def test_overlays_take_turns_across_calls_least_sure_first():
    import pandas as pd

    images = pd.DataFrame(
        {
            "image": list("abcdef"),
            "call": ["control", "control", "aggregates", "control", "abstain (unlike training data)", "aggregates"],
            "p_control": [0.9, 0.6, 0.2, 0.6, np.nan, 0.1],
            "p_aggregates": [0.1, 0.4, 0.8, 0.4, np.nan, 0.9],
            "abstained_share": [0.0, 0.0, 0.0, 0.5, 1.0, 0.0],
        }
    )
    # A turn of every call, the least sure first within each (control: d most abstained, then b below a), the
    # turn itself led by the most abstained image.
    assert [images["image"][i] for i in call_overlays.overlay_order(images)] == ["e", "d", "c", "b", "f", "a"]


def test_overlays_are_capped_and_drawn_only_on_fields(tmp_path):
    import pandas as pd

    field = tmp_path / "f.tif"
    tifffile.imwrite(field, blob_field())
    record = settings()
    metas, tables, rows = [], [], []
    for name, kind in (("f1", "fields"), ("f2", "fields"), ("c1", "cells")):
        tiles = TileSet(
            np.zeros((1, 4, 4, 1)),
            np.array([0]),
            np.array([0]),
            {
                "sample": name,
                "files": [str(field)],
                "class": "",
                "group": name,
                "skipped": None,
                "settings": {**record, "kind": kind},
            },
        )
        metas.append(tiles.meta)
        tables.append(call_tables.tile_table([tiles], np.array([[[0.7, 0.3]]]), CLASSES))
        rows.append(image_row(tiles, np.array([[[0.7, 0.3]]]), CLASSES))
    images = pd.DataFrame(rows)
    assert (
        call_overlays.draw_overlays(
            metas, pd.concat(tables, ignore_index=True), images, CLASSES, tmp_path / "all", None
        )
        == 2
    )
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["f1.png", "f2.png"]  # no single-cell image
    assert (
        call_overlays.draw_overlays(metas, pd.concat(tables, ignore_index=True), images, CLASSES, tmp_path / "one", 1)
        == 1
    )
    assert (
        call_overlays.draw_overlays(metas, pd.concat(tables, ignore_index=True), images, CLASSES, tmp_path / "none", 0)
        == 0
    )
    assert list((tmp_path / "none").iterdir()) == []  # the declared directory exists, empty


def test_tables_are_written_as_their_suffix_says(tmp_path):
    import pandas as pd

    table = pd.DataFrame({"tile": ["a@0,0", "b@0,4"], "p_control": [0.25, 0.5], "label": [1, 2]})
    call_tables.write_table(table, tmp_path / "t.parquet")
    call_tables.write_table(table, tmp_path / "t.tsv")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "t.parquet"), table)
    assert pd.read_csv(tmp_path / "t.tsv", sep="\t")["p_control"].tolist() == [0.25, 0.5]


def test_a_large_set_gets_one_bar_per_call_not_per_image(tmp_path):
    import pandas as pd
    from matplotlib.colors import to_rgba

    from cellclass.io.plotting import colours
    from cellclass.predict import call_figures

    # 10,000 images (one bar each would be a 3,000-inch-wide figure), a different count per call.
    counts = {"control": 6000, abstention.UNLIKE: 2500, "aggregates": 1200, abstention.UNCERTAIN: 300}
    calls = np.repeat(list(counts), list(counts.values()))
    assert len(calls) == call_figures.MAX_IMAGE_BARS * 50
    images = pd.DataFrame(
        {
            "image": [f"i{k}" for k in range(len(calls))],
            "call": calls,
            "p_control": 0.5,
            "p_aggregates": 0.5,
            "spread": 0.0,
        }
    )
    paths = [tmp_path / "calls.png", tmp_path / "calls.svg"]
    [ax] = call_figures.calls_plot(images, CLASSES, paths).axes
    # The classes in their order, then the other calls by name: one bar each, as high as its images.
    order = CLASSES + sorted([abstention.UNLIKE, abstention.UNCERTAIN])
    [bars] = ax.containers
    assert [t.get_text() for t in ax.get_xticklabels()] == order
    assert [bar.get_height() for bar in bars] == [counts[c] for c in order]
    assert [bar.get_x() + bar.get_width() / 2 for bar in bars] == pytest.approx(range(len(order)))
    expected = {**colours(CLASSES), abstention.UNLIKE: "lightgray", abstention.UNCERTAIN: "lightgray"}
    assert [bar.get_facecolor() for bar in bars] == [to_rgba(expected[c]) for c in order]
    from PIL import Image

    width, height = Image.open(paths[0]).size
    assert width < 2000 and height < 1000 and paths[1].stat().st_size > 1000


def test_images_scored_by_different_members_keep_their_order_in_the_tables():
    scores = np.array(
        [[[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]], [[0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]]]
    )  # 2 members; images a, b (2 tiles), c
    chunk = [tileset(1, "a"), tileset(2, "b"), tileset(1, "c")]
    everyone = {"members": [0, 1], "scored_by": "all runs"}
    alone = {"members": [1], "scored_by": "out of fold"}
    tiles, images = call_tables.chunk_tables(chunk, scores, None, CLASSES, {"b": alone}, everyone)
    assert list(images["image"]) == ["a", "b", "c"] and list(tiles["image"]) == ["a", "b", "b", "c"]
    assert list(images["scored_by"]) == ["all runs", "out of fold", "all runs"]
    assert images["p_aggregates"].to_numpy() == pytest.approx([0.5, 0.25, 0.5])
    assert tiles["p_aggregates"].to_numpy() == pytest.approx([0.5, 0.2, 0.3, 0.5])


def test_a_group_of_images_scored_in_different_ways_names_each_way():
    images = pd.DataFrame(
        {
            "image": ["a", "b", "c"],
            "group": ["w1", "w1", "w2"],
            "unit": "cell",
            "tiles": 1,
            "unlike_training": 0,
            "uncertain": 0,
            "image_shift": 0,
            "called_aggregates": [1, 0, 1],
            "called_control": [0, 1, 0],
            "call": ["aggregates", "control", "aggregates"],
            "scored_by": ["all runs", "out of fold", "all runs"],
        }
    )
    tiles = pd.DataFrame(
        {
            "image": ["a", "b", "c"],
            "group": ["w1", "w1", "w2"],
            "abstain": "",
            "p_aggregates": [0.8, 0.4, 0.9],
            "p_control": [0.2, 0.6, 0.1],
        }
    )
    groups = call_tables.group_table(tiles, images, CLASSES).set_index("group")
    assert groups.loc["w1", "scored_by"] == "all runs; out of fold" and groups.loc["w2", "scored_by"] == "all runs"
    assert groups.loc["w1", "p_aggregates"] == pytest.approx(0.6)


def test_an_image_or_group_whose_tiles_mostly_abstain_gets_no_call_and_says_why():
    """Two of three tiles unlike the training data: the one left would call the image; above max_share it may not."""
    scores = np.array([[[0.9, 0.1], [0.5, 0.5], [0.5, 0.5]]])
    abstain = np.array(["", abstention.UNLIKE, abstention.UNLIKE], dtype=object)
    options = {**abstention.ABSTAIN_DEFAULTS, "max_share": 0.5}
    called = call_tables.image_table([tileset(3)], scores, CLASSES, abstain, max_share=None).iloc[0]
    assert called["call"] == "aggregates" and called["abstained_share"] == pytest.approx(2 / 3)
    images = call_tables.image_table([tileset(3)], scores, CLASSES, abstain, max_share=0.5)
    images = abstention.why_no_call(images.assign(unlike_training_images=""), CLASSES, options)
    assert images.loc[0, "call"] == abstention.MOSTLY_ABSTAINED and images.loc[0, "correct"] is None
    assert images.loc[0, "no_call"].startswith("67% of its tiles (cells) abstained, above abstain.max_share 0.5")
    # Its probabilities stay, for whoever wants them; only the call is withheld.
    assert images.loc[0, "p_aggregates"] == pytest.approx(0.9)
    tiles = call_tables.tile_table([tileset(3)], scores, CLASSES).assign(abstain=abstain)
    groups = call_tables.group_table(tiles, images.assign(unit="tile", scored_by="all runs"), CLASSES, max_share=0.5)
    assert groups.loc[0, "call"] == abstention.MOSTLY_ABSTAINED
    assert (
        call_tables.group_table(tiles, images.assign(unit="tile", scored_by="all runs"), CLASSES, max_share=0.7).loc[
            0, "call"
        ]
        == "aggregates"
    )


def test_every_tile_of_an_image_unlike_the_training_images_abstains_and_is_counted():
    from cellclass.predict import image_shift

    scores = np.array([[[0.9, 0.1], [0.8, 0.2]]])
    tiles = call_tables.tile_table(
        [tileset(2, "a"), tileset(2, "b")], np.concatenate([scores, scores], axis=1), CLASSES, shifted={"b"}
    )
    assert tiles["abstain"].tolist() == ["", "", image_shift.SHIFTED, image_shift.SHIFTED]
    images = call_tables.image_table(
        [tileset(2, "a"), tileset(2, "b")],
        np.concatenate([scores, scores], axis=1),
        CLASSES,
        tiles["abstain"].to_numpy(),
        max_share=0.5,
    )
    assert images["call"].tolist() == ["aggregates", image_shift.SHIFTED]
    assert images["image_shift"].tolist() == [0, 2] and images["abstained_share"].tolist() == [0, 1]
