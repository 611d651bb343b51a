"""The plan, without Snakemake: every source of images (class folder, sample sheet, plate folder, OME-Zarr plate,
demo fields, demo plate, demo cells, model package) gives samples, shards, sides, runs and the files the rules will make."""

import numpy as np
import pytest
import tifffile
import yaml
from test_package import make_package
from test_plates import PATTERN, write_map, write_plate, write_zarr_plate

from cellclass.io.datasets import Sample
from cellclass.io.errors import InputError
from cellclass.plan import DEMO_ROOT, make_plan, run_dir
from cellclass.predict import out_of_fold

from conftest import REPO

TRAIN = {"models": ["small"], "runs": 2}


def write_class_folder(root, per_class=4):
    for cls in ("control", "treated"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            tifffile.imwrite(root / cls / f"{cls}_{i}.tif", np.full((32, 32), i + 1, np.uint16))
    return root


def test_a_class_folder_plans_samples_shards_sides_and_runs(tmp_path):
    write_class_folder(tmp_path / "data")
    plan = make_plan(
        {"train": TRAIN, "prepare": {"images_per_job": 3}, "datasets": {"mine": {"path": "data"}}}, base_dir=tmp_path
    )
    data = plan.datasets["mine"]
    assert len(data.samples) == 8 and data.classes() == ["control", "treated"] and data.layout is None
    assert sorted(sid for ids in data.shards.values() for sid in ids) == sorted(data.samples)
    assert data.folds == 1 and set(data.sides[0].values()) <= {"train", "validation", "test"}
    assert "test" in data.sides[0].values() and "train" in data.sides[0].values()
    assert plan.run_dirs() == ["results/train/mine/small/fold0/seed0", "results/train/mine/small/fold0/seed1"]
    assert plan.tile_files("mine") == [f"results/mine/tiles/{s}.npz" for s in data.shards]
    # Augmented shards are made only for shards with an image that trains.
    assert set(plan.augmented_files("mine")) == {
        f"results/mine/augmented/{s}.npz"
        for s, ids in data.shards.items()
        if any(data.side(sid) == "train" for sid in ids)
    }
    assert "results/mine/split.tsv" in plan.prepared_outputs()
    assert plan.predicted_outputs() == [] and plan.assayed_outputs() == [] and plan.exported_outputs() == []


def test_a_sample_sheet_keeps_each_group_on_one_side_in_every_fold(tmp_path):
    write_class_folder(tmp_path / "data", per_class=6)
    rows = [f"{cls}/{cls}_{i}.tif\t{cls}\twell{i // 2}" for cls in ("control", "treated") for i in range(6)]
    (tmp_path / "data" / "sheet.tsv").write_text("path\tclass\tgroup\n" + "\n".join(rows) + "\n")
    plan = make_plan(
        {"train": TRAIN, "datasets": {"mine": {"sheet": "data/sheet.tsv", "split": {"folds": 3}}}}, base_dir=tmp_path
    )
    data = plan.datasets["mine"]
    assert data.folds == 3 and len(plan.run_dirs()) == 3 * 2
    for fold in range(3):
        by_group = {}
        for sid, sample in data.samples.items():
            by_group.setdefault(sample.group, set()).add(data.side(sid, fold))
        assert all(len(sides) == 1 for sides in by_group.values())
    # Under k folds every group is tested exactly once.
    tested = [g for sides in data.sides for g, side in sides.items() if side == "test"]
    assert sorted(tested) == sorted({s.group for s in data.samples.values()})


def plate_config(tmp_path, **extra):
    folder = write_plate(tmp_path / "P1", wells=("A01", "A02", "B01", "B02"), sites=1)
    rows = [
        ("P1", "A01", "DMSO", "control", "", "", "negative_control"),
        ("P1", "A02", "DMSO", "control", "", "", "negative_control"),
        ("P1", "B01", "siRNA", "aggregates", "", "", "positive_control"),
        ("P1", "B02", "siRNA", "aggregates", "", "", "positive_control"),
    ]
    plate_map = write_map(tmp_path / "map.tsv", rows)
    return {
        "train": TRAIN,
        "split": {"folds": 2},
        "datasets": {"screen": {"plate": {"path": str(folder), "pattern": PATTERN, "map": str(plate_map)}}},
        **extra,
    }


def test_a_plate_folder_plans_wells_as_groups_and_a_test_side_assay(tmp_path):
    plan = make_plan(plate_config(tmp_path), base_dir=tmp_path)
    data = plan.datasets["screen"]
    assert {s.group for s in data.samples.values()} == {"P1/A01", "P1/A02", "P1/B01", "P1/B02"}
    assert {row["well"] for row in data.layout} == {"A01", "A02", "B01", "B02"}
    assay = plan.assayed_outputs()
    assert "results/assay/test/screen/small/screen/wells.tsv" in assay
    assert "results/assay/test/screen/small/screen/heatmap_P1.png" in assay


def test_an_ome_zarr_plate_prediction_set_is_scored_by_every_fold_of_its_seeds(tmp_path):
    store = write_zarr_plate(tmp_path / "screen.zarr")
    zarr_map = write_map(
        tmp_path / "zarr_map.tsv",
        [("screen 1", "A01", "drug", "", "1", "uM", "sample"), ("screen 1", "B02", "drug", "", "3", "uM", "sample")],
    )
    config = plate_config(
        tmp_path,
        predict={"new": {"plate": {"zarr": str(store), "map": str(zarr_map)}, "experiment": "screen", "seeds": [1]}},
    )
    plan = make_plan(config, base_dir=tmp_path)
    new = plan.predictions["new"]
    assert len(new.samples) == 4 and new.layout is not None and new.package is None
    assert new.runs == ["results/train/screen/small/fold0/seed1", "results/train/screen/small/fold1/seed1"]
    assert new.record == "results/train/screen/small/fold0/seed1/training.json"
    assert new.models == [f"{run}/model.keras" for run in new.runs]
    assert new.calibrations == [f"{run}/metrics.json" for run in new.runs]
    outputs = plan.predicted_outputs()
    assert "results/predict/new/images.tsv" in outputs and "results/assay/new/wells.tsv" in outputs
    assert plan.new_tile_files("new") == [f"results/predict/new/tiles/{s}.npz" for s in new.shards]


def test_a_plate_predicted_again_is_scored_out_of_fold_by_the_runs_of_each_wells_fold(tmp_path):
    config = plate_config(tmp_path)
    config["datasets"]["screen"]["split"] = {"folds": 2}
    config["predict"] = {"again": {"plate": config["datasets"]["screen"]["plate"], "experiment": "screen"}}
    plan = make_plan(config, base_dir=tmp_path)
    data, again = plan.datasets["screen"], plan.predictions["again"]
    assert again.runs == [run_dir("screen", "small", fold, seed) for fold in (0, 1) for seed in (0, 1)]
    assert set(again.scoring) == set(again.samples) == set(data.samples)  # every well shared, by file and by well
    for sid, allowed in again.scoring.items():
        fold = next(f for f in range(2) if data.side(sid, f) == "test")
        assert allowed["members"] == [2 * fold, 2 * fold + 1]  # its fold's two seeds, never a run that saw it
        assert allowed["scored_by"] == f"out of fold (fold {fold}, 2 runs)"


def test_a_single_split_scores_only_its_test_wells_and_says_why_the_others_are_not(tmp_path):
    config = plate_config(tmp_path)
    config["split"] = {"folds": 1, "test_fraction": 0.5, "seed": 0}
    # The same plate as an OME-Zarr store would share no file: the well alone makes it the same image.
    config["predict"] = {"again": {"plate": config["datasets"]["screen"]["plate"], "experiment": "screen"}}
    plan = make_plan(config, base_dir=tmp_path)
    data, again = plan.datasets["screen"], plan.predictions["again"]
    for sid, allowed in again.scoring.items():
        if data.side(sid) == "test":
            assert allowed == {"members": [0, 1], "scored_by": "out of fold (test side of the split, 2 runs)"}
        else:  # trained or validated on: it chose the epoch, so it has been seen too
            assert allowed == {"members": [], "scored_by": out_of_fold.EVERY_RUN_SAW_IT}
    assert {data.side(sid) for sid in again.scoring} >= {"test", "train"}


def test_images_are_shared_by_resolved_file_or_by_plate_well(tmp_path):
    write_class_folder(tmp_path / "data")
    config = {
        "train": TRAIN,
        "datasets": {"mine": {"path": "data"}},
        "predict": {
            "same": {"path": str(tmp_path / "data" / "treated" / ".." / "treated"), "experiment": "mine"},
            "other": {"path": str(write_class_folder(tmp_path / "copy")), "experiment": "mine"},
        },
    }
    plan = make_plan(config, base_dir=tmp_path)
    data = plan.datasets["mine"]
    same = plan.predictions["same"]
    assert len(same.scoring) == len(same.samples) == 4  # the same files, reached by another path
    assert {
        data.samples[m].cls for sid in same.samples for m in out_of_fold.shared_images(same.samples, None, data)[sid]
    } == {"treated"}
    assert plan.predictions["other"].scoring == {}  # copies are other files, and no plate says they are one well
    # A plate well is the same image whatever file holds it.
    layout = [{"sample": "x", "plate": "P1", "well": "A01"}, {"sample": "y", "plate": "P2", "well": "A01"}]
    trained = type(
        "Trained", (), {"samples": {}, "extra": [], "layout": [{"sample": "P1/A01/s1", "plate": "P1", "well": "A01"}]}
    )
    samples = {sid: Sample(sid, (f"{sid}.tif",), "", sid) for sid in ("x", "y")}
    assert out_of_fold.shared_images(samples, layout, trained) == {"x": ["P1/A01/s1"]}


@pytest.mark.parametrize("kind, overlays, draws", [("fields", 50, True), ("fields", 0, False), ("cells", 50, False)])
def test_only_a_set_of_fields_with_overlays_reads_its_raw_images_to_draw_them(tmp_path, kind, overlays, draws):
    write_class_folder(tmp_path / "data")
    config = {
        "train": TRAIN,
        "prepare": {"kind": kind},
        "datasets": {"mine": {"path": "data"}},
        "predict": {
            "new": {"path": str(write_class_folder(tmp_path / "new")), "experiment": "mine", "overlays": overlays}
        },
    }
    assert make_plan(config, base_dir=tmp_path).predictions["new"].draws_overlays is draws


DEMO = {"pattern": "aggregates", "fields_per_class": 3, "seed": 1, "size": 128}


def test_demo_fields_are_planned_before_they_exist(tmp_path):
    config = {
        "train": TRAIN,
        "prepare": {"kind": "nuclei"},
        "datasets": {"toy": {"demo": DEMO}},
        "attribution": {"experiments": ["toy"], "methods": ["gradient_x_input"]},
    }
    plan = make_plan(config, base_dir=tmp_path)
    data = plan.datasets["toy"]
    assert len(data.samples) == 6 and not (tmp_path / DEMO_ROOT).exists()
    assert all(s.files[0].startswith(f"{DEMO_ROOT}/toy/images/") for s in data.samples.values())
    assert "fields_per_class" not in plan.demo_settings("toy") and plan.demo_settings("toy")["seed"] == 1
    masks = plan.ground_truth_masks("toy", "test")
    assert masks and all(data.side(sid) == "test" for sid in masks)
    assert "results/toy/segmentation.tsv" in plan.prepared_outputs()  # crops of demo fields check segmentation
    assert set(plan.demo_truth("toy")) == set(data.samples)
    assert plan.attributed_runs() == [r.replace("results/train/", "results/attribution/") for r in plan.run_dirs()]


def test_demo_cells_are_planned_before_they_exist_from_the_counts(tmp_path):
    config = {
        "train": TRAIN,
        "prepare": {"kind": "cells", "images_per_job": 20},
        "datasets": {"toy": {"demo_cells": {"cells_per_class": 30, "seed": 7}}},
    }
    plan = make_plan(config, base_dir=tmp_path)
    data = plan.datasets["toy"]
    assert data.entry["demo_cells"] == {
        "kind": "patterns",
        "cells_per_class": 30,
        "rare_class": "golgi",
        "rare_fraction": 0.3333,
        "seed": 7,
        "size": 72,
        "channels": 1,
    }
    assert len(data.samples) == 5 * 30 + 10 and not (tmp_path / DEMO_ROOT).exists()
    cell = data.samples["golgi/cell_00009"]
    assert cell.files == (f"{DEMO_ROOT}/toy/patterns/golgi/cell_00009.tif",) and cell.group == cell.id
    assert data.classes() == sorted(["homogeneous", "speckled", "nucleolar", "centromere", "membrane", "golgi"])
    assert len(data.shards) == 8  # cells are sharded like any single-cell images
    assert plan.ground_truth_masks("toy", "test") == {}  # no puncta masks: attribution finds puncta itself
    assert "results/toy/segmentation.tsv" not in plan.prepared_outputs()


def test_a_demo_plate_is_planned_from_its_spec(tmp_path):
    config = {
        "train": TRAIN,
        "datasets": {"toy": {"demo": DEMO}},
        "predict": {"plate": {"demo_plate": {"name": "demo_plate", "seed": 3}, "experiment": "toy"}},
    }
    plan = make_plan(config, base_dir=tmp_path)
    plate = plan.predictions["plate"]
    assert plate.layout and len(plate.samples) == len(plate.layout)
    assert all(f.startswith(f"{DEMO_ROOT}/plate/plate/") for s in plate.samples.values() for f in s.files)
    assert {"negative_control", "positive_control"} <= {row["role"] for row in plate.layout}
    assert "results/assay/plate/heatmap_demo_plate.png" in plan.predicted_outputs()


def test_a_package_prediction_set_needs_no_runs_and_no_datasets(tmp_path):
    make_package(tmp_path / "model.zip")
    (tmp_path / "images").mkdir()
    tifffile.imwrite(tmp_path / "images" / "a.tif", np.zeros((64, 64), np.uint16))
    plan = make_plan({"predict": {"new": {"path": "images", "package": "model.zip"}}}, base_dir=tmp_path)
    new = plan.predictions["new"]
    assert new.runs == [] and new.package == str(tmp_path / "model.zip")
    assert new.record == new.package and new.models == [new.package] and new.calibrations == []
    assert plan.run_dirs() == [] and plan.evaluated_outputs() == []
    # A small set's per-tile table comes as TSV too (predict.<set>.tiles_tsv: auto), unless switched off.
    assert plan.all_outputs() == ["results/predict/new/images.tsv", "results/predict/new/tiles.tsv"]
    quiet = make_plan(
        {"predict": {"new": {"path": "images", "package": "model.zip", "tiles_tsv": False}}}, base_dir=tmp_path
    )
    assert quiet.all_outputs() == ["results/predict/new/images.tsv"]


def test_exports_name_their_runs(tmp_path):
    config = {
        "train": TRAIN,
        "datasets": {"toy": {"demo": DEMO, "split": {"folds": 2}}},
        "export": {"pkg": {"experiment": "toy", "seeds": [1]}},
    }
    plan = make_plan(config, base_dir=tmp_path)
    assert plan.export_runs("pkg") == ["results/train/toy/small/fold0/seed1", "results/train/toy/small/fold1/seed1"]
    assert plan.exported_outputs() == ["results/export/pkg.zip", "results/export/pkg.validation.tsv"]
    # The package's test tensors come from the first run's test side: those fields' raw images, and no others.
    data = plan.datasets["toy"]
    assert plan.export_raw_files("pkg") == [s.files[0] for s in data.samples.values() if data.side(s.id, 0) == "test"]
    assert plan.export_raw_files("pkg")


def test_a_run_trains_from_augmented_copies_only_where_the_field_is_resampled(tmp_path):
    config = {"train": TRAIN, "datasets": {"toy": {"demo": DEMO}}}
    assert make_plan(config, base_dir=tmp_path).train_files("toy") == make_plan(config, base_dir=tmp_path).tile_files(
        "toy"
    )
    rotated = make_plan({**config, "augment": {"angles": [18]}}, base_dir=tmp_path)
    assert rotated.train_files("toy") == rotated.augmented_files("toy") != rotated.tile_files("toy")
    assert set(rotated.augmented_files("toy")) <= set(rotated.prepared_outputs())


def test_a_missing_image_folder_is_named_before_planning(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        make_plan({"datasets": {"mine": {"path": "nowhere"}}}, base_dir=tmp_path)


def test_the_leakage_check_plans_one_control_per_experiment_apart_from_the_runs(tmp_path):
    config = {
        "train": {"models": ["small", "deep"], "runs": 2},
        "augment": {"angles": [30]},
        "datasets": {"toy": {"demo": DEMO}},
    }
    assert make_plan(config, base_dir=tmp_path).leakage_runs() == []
    plan = make_plan({**config, "evaluation": {"leakage_check": True}}, base_dir=tmp_path)
    assert plan.leakage_runs() == ["results/leakage/toy/small"]
    assert not set(plan.leakage_runs()) & set(plan.run_dirs())
    assert plan.leakage_run_files() == [
        "results/leakage/toy/small/metrics.json",
        "results/leakage/toy/small/predictions.tsv",
    ]
    assert plan.leakage_split("toy") == {"seed": 0, "test_fraction": 0.2, "validation_fraction": 0.2}
    assert {"results/leakage/leakage.tsv", "results/figures/leakage.png"} <= set(plan.all_outputs())
    # The control trains on every image's copies: the real runs' (images that train) and its own (the others).
    data = plan.datasets["toy"]
    own = [s.id for shard in data.shards for s in plan.leakage_augmented_samples("toy", shard)]
    assert sorted(own) == sorted(sid for sid in data.samples if not data.trains_in_some_fold(sid)) and own
    assert plan.leakage_train_files("toy") == plan.augmented_files("toy") + plan.leakage_augmented_files("toy")
    folds = make_plan(
        {**config, "evaluation": {"leakage_check": True}, "datasets": {"toy": {"demo": DEMO, "split": {"folds": 3}}}},
        base_dir=tmp_path,
    )
    assert folds.leakage_split("toy")["test_fraction"] == pytest.approx(1 / 3)


def test_sets_of_the_same_demo_fields_share_one_folder(tmp_path):
    """The demo's per-cell sets are its per-tile sets' fields: rendered once, read by both."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    plan = make_plan(config, tmp_path)
    assert plan.demo_roots["aggregates_cells"] == plan.demo_roots["aggregates"] == "results/demo/aggregates"
    config["predict"]["new_aggregates_cells"] = {
        **config["predict"]["new_aggregates"],
        "experiment": "aggregates_cells",
    }
    assert make_plan(config, tmp_path).demo_roots["new_aggregates_cells"] == "results/demo/new_aggregates"
    assert plan.demo_roots["aggregates_holdout"] == "results/demo/aggregates_holdout"  # another seed
    cells, tiles = (plan.datasets[name].samples for name in ("aggregates_cells", "aggregates"))
    assert [s.files for s in cells.values()] == [s.files for s in tiles.values()]
    assert plan.demo_truth("aggregates_cells") == plan.demo_truth("aggregates")
