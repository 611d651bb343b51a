"""Per-cell profiles, the map of the cells, the label-next choice and the labelling page (no Snakemake)."""

import re

import numpy as np
import pandas as pd
import pytest

from cellclass.io.tilestore import TileSet
from cellclass.predict import cell_map, label_next, label_page, profiles

CLASSES = ["aggregates", "control"]


def tileset(sample, n, group=None, seed=0, cls="control"):
    rng = np.random.default_rng(seed)
    meta = {"sample": sample, "group": group or sample, "class": cls, "files": [f"{sample}.tif"]}
    return TileSet(rng.random((n, 16, 16, 1), dtype=np.float32), np.arange(n) * 16, np.zeros(n, int), meta)


def test_profiles_per_run_only_of_the_tiles_it_may_score(tmp_path):
    """Rows per tile and run, features of the `logits` layer's input, calibrated probabilities; a run profiles
    only the images it may score; the plate map's columns join; Parquet keeps every column."""
    from cellclass.learn.models import build_model

    members = [build_model("small", (16, 16, 1), 2) for _ in range(2)]
    tilesets = [tileset("p/A01", 3), tileset("p/A02", 2, seed=1, cls="aggregates")]
    allowed = {"p/A01": {0, 1}, "p/A02": {1}}
    layout = [
        {"sample": s, "plate": "p", "well": s[-3:], "role": "sample", "dose": d, "unit": "uM", "condition": "x"}
        for s, d in (("p/A01", 1.0), ("p/A02", 10.0))
    ]
    table = profiles.profile_table(
        members,
        tilesets,
        runs=["fold0/seed0", "fold1/seed0"],
        scored_by=allowed.get,
        classes=CLASSES,
        channels=None,
        temperatures=[1.0, 2.0],
        layout=layout,
    )
    assert table.groupby("run")["tile"].apply(list).to_dict() == {
        "fold0/seed0": ["p/A01@0,0", "p/A01@16,0", "p/A01@32,0"],
        "fold1/seed0": ["p/A01@0,0", "p/A01@16,0", "p/A01@32,0", "p/A02@0,0", "p/A02@16,0"],
    }
    features = profiles.feature_columns(table)
    assert len(features) == members[0].get_layer("logits").input.shape[-1]
    assert np.allclose(table[["p_aggregates", "p_control"]].sum(axis=1), 1, atol=1e-5)
    assert (table["call"] == np.where(table["p_aggregates"] > table["p_control"], "aggregates", "control")).all()
    assert table.set_index("tile")["dose"].to_dict()["p/A02@0,0"] == 10.0
    profiles.write_profiles(table, CLASSES, tmp_path / "profiles.parquet", tmp_path / "wells.parquet")
    read = pd.read_parquet(tmp_path / "profiles.parquet")
    assert list(read.columns[:8]) == ["run", "tile", "image", "group", "row", "col", "true_class", "p_aggregates"]
    assert {"plate", "well", "role", "dose", "call"} <= set(read.columns)
    pd.testing.assert_frame_equal(read, table)
    wells = pd.read_parquet(tmp_path / "wells.parquet")
    assert wells[["run", "group", "cells"]].values.tolist() == [
        ["fold0/seed0", "p/A01", 3],
        ["fold1/seed0", "p/A01", 3],
        ["fold1/seed0", "p/A02", 2],
    ]
    a01 = table[(table["run"] == "fold0/seed0")]
    assert np.allclose(wells.loc[0, features].to_numpy(float), a01[features].median().to_numpy())


def clustered_features(n=240, kinds=16, dims=64, seed=0):
    """(features, classes) of `n` cells of 16 kinds, each kind a cloud around its own centre in 64-D, and class =
    kind % 2: each class is 8 clouds scattered through the space. A cell's nearest neighbours are of its kind,
    but no plane through the space keeps 16 clouds apart, so PCA's two axes mix the classes."""
    rng = np.random.default_rng(seed)
    kind = np.arange(n) % kinds
    return rng.normal(size=(kinds, dims))[kind] + rng.normal(size=(n, dims)), kind % 2


def knn_agreement(xy, classes):
    """Balanced accuracy per cell of a 5-nearest-neighbour classifier in the map's 2-D, 5-fold cross-validated:
    how well the map keeps cells beside cells of their class."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    return cross_val_score(KNeighborsClassifier(5), xy, classes, cv=folds, scoring="balanced_accuracy").mean()


def test_map_panels_one_run_per_fold_and_gallery(tmp_path):
    """Per fold, the first seed's tiles are placed by the UMAP of that run's own features (map.tsv holds exactly
    embed()'s coordinates); a fold too small for UMAP is placed by PCA and the table and figure say so; the
    gallery shows the first run's cells in order along each axis."""
    runs = {"fold0/seed0": 64, "fold0/seed1": 64, "fold1/seed0": cell_map.UMAP_MIN_CELLS - 1}
    parts = []
    for i, (run, n) in enumerate(runs.items()):
        features, classes = clustered_features(n, seed=i)
        part = pd.DataFrame(
            {
                "run": run,
                "tile": [f"t{j}" for j in range(n)],
                "true_class": np.array(CLASSES)[classes],
                "call": np.array(CLASSES)[1 - classes],
            }
        )
        parts.append(pd.concat([part, pd.DataFrame(features).add_prefix("feature_")], axis=1))
    table = pd.concat(parts, ignore_index=True)
    assert cell_map.map_runs(table, per_fold=True) == ["fold0/seed0", "fold1/seed0"]
    assert cell_map.map_runs(table, per_fold=False) == ["fold0/seed0"]
    fetched = []

    def pixels(tile):
        fetched.append(tile)
        return np.full((8, 8, 2), 0.5)

    cell_map.write_map(
        table,
        pixels,
        table=tmp_path / "map.tsv",
        figures=[tmp_path / "map.png", tmp_path / "map.svg"],
        gallery=[tmp_path / "gallery.png", tmp_path / "gallery.svg"],
        title="t",
        seed=3,
        per_fold=True,
    )
    written = pd.read_csv(tmp_path / "map.tsv", sep="\t")
    assert list(written["run"].unique()) == ["fold0/seed0", "fold1/seed0"]
    for run, method in (("fold0/seed0", "umap"), ("fold1/seed0", "pca")):
        mine, theirs = table[table["run"] == run], written[written["run"] == run]
        assert list(theirs["tile"]) == list(mine["tile"]) and set(theirs["method"]) == {method}
        expected = cell_map.embed(mine[profiles.feature_columns(mine)].to_numpy(), "umap", seed=3)
        assert np.array_equal(theirs[["x", "y"]].to_numpy(), expected)
    svg = (tmp_path / "map.svg").read_text()
    assert "UMAP 1" in svg and "PC 1" in svg
    few = cell_map.UMAP_MIN_CELLS
    assert f"fold1/seed0: PCA ({few - 1} cells: too few for UMAP, which needs ≥ {few})" in svg
    # The gallery: 8 cells of the first run along x, low to high from its least x to its greatest, then along y.
    first = written[written["run"] == "fold0/seed0"].set_index("tile")
    assert len(fetched) == 16 and "UMAP 1" in (tmp_path / "gallery.svg").read_text()
    for axis, shown in (("x", fetched[:8]), ("y", fetched[8:])):
        values = first.loc[shown, axis].to_numpy()
        assert list(values) == sorted(values) and values[0] == first[axis].min() and values[-1] == first[axis].max()


def test_the_choice_spreads_over_kinds_of_cells():
    """Four kinds of cell, each with a few uncertain ones; the most uncertain all of one kind. Ranked by
    uncertainty alone the top 8 are that kind; the choice takes cells of every kind, most uncertain first."""
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=20, size=(4, 10))
    kind = np.repeat(np.arange(4), 100)
    features = centres[kind] + rng.normal(size=(400, 10))
    uncertainty = rng.uniform(0, 0.3, 400)
    for k, level in enumerate((0.99, 0.9, 0.85, 0.8)):
        uncertainty[np.flatnonzero(kind == k)[:10]] = level - rng.uniform(0, 0.02, 10)
    assert set(kind[np.argsort(-uncertainty)[:8]]) == {0}
    chosen, _, clusters = label_next.choose(uncertainty, features, np.zeros(400, bool), wanted=8, seed=0)
    assert clusters == 8 and len(set(chosen)) == 8
    assert set(kind[chosen]) == {0, 1, 2, 3}
    assert (uncertainty[chosen] > 0.7).all()
    assert list(uncertainty[chosen]) == sorted(uncertainty[chosen], reverse=True)
    assert np.array_equal(chosen, label_next.choose(uncertainty, features, np.zeros(400, bool), wanted=8, seed=0)[0])


def test_unfamiliar_cells_compete_and_few_cells_are_all_taken():
    uncertainty = np.linspace(0, 1, 50)
    unfamiliar = np.zeros(50, bool)
    unfamiliar[0] = True  # certain, but unlike the training data
    assert 0 in label_next.pool(uncertainty, unfamiliar, wanted=5)
    chosen, _, _ = label_next.choose(uncertainty[:3], np.eye(3), np.zeros(3, bool), wanted=96)
    assert sorted(chosen) == [0, 1, 2]
    assert np.allclose(label_next.margin_uncertainty([[0.5, 0.5], [1.0, 0.0], [0.2, 0.7]]), [1, 0, 0.5])


def sheet_of(n=30, wanted=6, labelled=frozenset()):
    rng = np.random.default_rng(2)
    p = rng.uniform(0, 1, n)
    tiles = pd.DataFrame(
        {
            "image": "p/A01",
            "group": "p/A01",
            "tile": [f"p/A01@cell{i}" for i in range(n)],
            "row": rng.integers(-5, 100, n),
            "col": rng.integers(0, 100, n),
            "label": np.arange(n),
            "p_aggregates": p,
            "p_control": 1 - p,
            "call": np.where(p > 0.5, "aggregates", "control"),
            "novelty": rng.uniform(0, 1.2, n),
            "abstain": "",
        }
    )
    features = pd.DataFrame(rng.normal(size=(n, 4)), columns=[f"feature_{j:04d}" for j in range(4)])
    profile = pd.concat([pd.DataFrame({"run": "fold0/seed0", "tile": tiles["tile"]}), features], axis=1)
    layout = [{"sample": "p/A01", "plate": "p", "well": "A01"}]
    return label_next.sheet(
        tiles,
        profile,
        CLASSES,
        files={"p/A01": "raw/a_w1.tif;raw/a_w2.tif"},
        layout=layout,
        wanted=wanted,
        labelled=labelled,
    )


def test_the_sheet_has_the_shared_format():
    table = sheet_of()
    assert list(table.columns) == [
        "tile",
        "image",
        "files",
        "row",
        "col",
        "label",
        "group",
        "plate",
        "well",
        "p_aggregates",
        "p_control",
        "call",
        "novelty",
        "rank",
        "reason",
        "class",
    ]
    assert len(table) == 6 and list(table["rank"]) == [1, 2, 3, 4, 5, 6]
    assert (table["class"] == "").all() and (table["files"] == "raw/a_w1.tif;raw/a_w2.tif").all()
    assert table["reason"].str.contains("margin .* between").all()


def test_cells_labelled_already_are_never_asked_for_again():
    first = sheet_of()
    labelled = {(files, tile) for files, tile in zip(first["files"], first["tile"])}
    again = sheet_of(labelled=labelled)
    assert len(again) == 6 and not set(again["tile"]) & set(first["tile"])
    # The same tile id of other files (another image of that name) is not labelled.
    assert list(sheet_of(labelled={("other.tif", t) for t in first["tile"]})["tile"]) == list(first["tile"])


def test_the_page_holds_every_chosen_cell_and_no_external_url():
    table = sheet_of().astype(str)
    field = np.random.default_rng(0).random((120, 120, 2), dtype=np.float32)
    crops = [
        label_page.data_uri(label_page.field_crop(field, int(r), int(c), 16, 8))
        for r, c in zip(table["row"], table["col"])
    ]
    html = label_page.page(table, crops, CLASSES, title="Label next: x")
    for tile in table["tile"]:
        assert f'data-tile="{tile}"' in html
    assert html.count("data:image/png;base64,") == len(table)
    assert not re.search(r"(src|href)=\"(?!data:)", html) and "http" not in html
    crop = label_page.field_crop(field, -5, 0, 16, 8)
    assert crop.shape[0] == crop.shape[1] >= label_page.SHOWN_SIDE // 2


def test_umap_is_seeded_is_not_pca_and_keeps_classes_apart():
    """One seed gives one map and another seed another; the map is no affine image of PCA's; and on cells whose
    classes PCA's two axes mix, UMAP keeps each cell beside its class (5-NN agreement per cell in 2-D)."""
    from sklearn.linear_model import LinearRegression

    features, classes = clustered_features()
    umap_map = cell_map.embed(features, "umap", 1)
    assert np.array_equal(umap_map, cell_map.embed(features, "umap", 1))
    other = cell_map.embed(features, "umap", 2)
    assert np.abs(other - umap_map).max() > 1  # not float noise: the layout itself differs
    pca_map = cell_map.embed(features, "pca", 1)
    # The best affine map of PCA's coordinates explains a fraction of UMAP's (0.1-0.3 over seeds 1-5); all of
    # them if UMAP were PCA moved, turned or stretched.
    assert LinearRegression().fit(pca_map, umap_map).score(pca_map, umap_map) < 0.6
    assert knn_agreement(umap_map, classes) > 0.9 > knn_agreement(pca_map, classes)
    assert knn_agreement(other, classes) > 0.9


def test_too_few_cells_for_umap_are_mapped_by_pca():
    from cellclass.config import load_schema

    features, _ = clustered_features(cell_map.UMAP_MIN_CELLS - 1)
    assert cell_map.method_used("umap", len(features)) == "pca" and cell_map.method_used("umap", 48) == "umap"
    assert np.array_equal(cell_map.embed(features, "umap", 0), cell_map.embed(features, "pca", 0))
    assert cell_map.embed(features[:2], "umap").shape == (2, 2)
    with pytest.raises(ValueError, match="unknown map method 'auto'"):
        cell_map.embed(features, "auto")
    described = load_schema()["properties"]["profiles"]["properties"]["map"]
    assert (
        described["enum"] == list(cell_map.METHODS)
        and f"fewer than {cell_map.UMAP_MIN_CELLS} cells" in (described["description"])
    )


def test_a_browser_labels_cells_and_saves_the_sheet(tmp_path):
    """Headless Chromium opens the page, cells are labelled with buttons and number keys, Save downloads the
    sheet: label_next.tsv's columns and values, with `class` filled where a cell was labelled."""
    from browser import label_cells

    written = tmp_path / "label_next.tsv"
    label_next.write_sheet(sheet_of(), written)
    rows = pd.read_csv(written, sep="\t", dtype=str, keep_default_na=False)
    field = np.random.default_rng(0).random((120, 120, 2), dtype=np.float32)
    crops = [
        label_page.data_uri(label_page.field_crop(field, int(r), int(c), 16, 8))
        for r, c in zip(rows["row"], rows["col"])
    ]
    page = tmp_path / "label_next.html"
    page.write_text(label_page.page(rows, crops, CLASSES, title="Label next: test"))
    saved, labelled = label_cells(page, tmp_path / "downloads", CLASSES)
    filled = pd.read_csv(saved, sep="\t", dtype=str, keep_default_na=False)
    assert list(filled.columns) == list(rows.columns)
    pd.testing.assert_frame_equal(filled.drop(columns="class"), rows.drop(columns="class"))
    assert filled["class"].tolist() == [labelled.get(i, "") for i in range(len(rows))]


def test_the_plan_profiles_each_run_on_its_own_test_side():
    from cellclass.io.errors import InputError
    from cellclass.plan import make_plan

    from conftest import TINY

    config = {
        **TINY,
        "datasets": {"tiny": {**TINY["datasets"]["tiny"], "split": {"folds": 3}}},
        "experiments": {"tiny": {"dataset": "tiny"}},
        "predict": {"new": {"demo": TINY["datasets"]["tiny"]["demo"], "experiment": "tiny"}},
        "profiles": {"experiments": ["tiny"], "predictions": ["new"]},
    }
    plan = make_plan(config)
    runs = plan.profiled_runs("tiny", "small")
    assert list(runs) == [f"results/train/tiny/small/fold{f}/seed0" for f in range(3)]
    tested = [sid for ids in runs.values() for sid in ids]
    assert sorted(tested) == sorted(plan.datasets["tiny"].samples)  # every image tested once, by its fold's run
    assert "results/profiles/tiny/small/map.png" in plan.all_outputs()
    assert "results/predict/new/label_next.html" in plan.predicted_outputs()
    with pytest.raises(InputError, match="profiles.predictions: no prediction set 'old'"):
        make_plan({**config, "profiles": {"predictions": ["old"]}})
