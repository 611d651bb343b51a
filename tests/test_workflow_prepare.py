"""The real workflow, run by Snakemake in a temporary folder on a tiny demo config."""

import numpy as np
import pandas as pd
import pytest

from cellclass.io import datasets, tilestore
from cellclass.io.datasets import Sample
from cellclass.prepare import shards, split

from conftest import TINY, nothing_to_do, samples_in, snakemake, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prepare")
    write_config(folder)
    snakemake(folder, "--until", "augment", "split")
    return folder


def test_demo_tiles_split_and_augmented_tiles_are_written(prepared):
    results = prepared / "results"
    assert len(list((results / "demo/tiny/images").rglob("*.tif"))) == 6
    assert len(list((results / "demo/tiny/masks").rglob("*.tif"))) == 6
    # One shard file and contact sheet per shard, every image in exactly one, as the stable hash puts them.
    tiled = samples_in(results / "tiny/tiles")
    planned = shards.assign(sorted(tiled), 2)
    assert len(tiled) == 6 and len(planned) == 4
    assert {sid: f"{shard}.npz" for shard, ids in planned.items() for sid in ids} == {
        s: p.name for s, p in tiled.items()
    }
    assert len(list((results / "tiny/tiles").glob("*.png"))) == len(set(tiled.values()))
    manifest = pd.read_csv(results / "tiny/split.tsv", sep="\t")
    assert set(manifest.columns) >= {"tile", "sample", "source", "group", "class", "split"}
    assert set(manifest["split"]) == {"train", "validation", "test"}
    # No group on both sides, and only training images are augmented.
    assert manifest.groupby("group")["split"].nunique().max() == 1
    train_samples = set(manifest.loc[manifest["split"] == "train", "sample"])
    assert set(samples_in(results / "tiny/augmented")) == train_samples
    some = next(t for t in tilestore.load_all((results / "tiny/augmented").glob("*.npz")) if len(t))
    # The original and one angle's copy of each tile; the 8 flips/rotations are made in training, never stored.
    assert len(some) == 2 * (some.extra["parent"].max() + 1)
    assert sorted(set(some.extra["op"])) == ["angle30", "rot0"]
    counts = pd.read_csv(results / "tiny/split_counts.tsv", sep="\t")
    assert list(counts.columns) == ["fold", "class", "split", "images", "images_without_tiles", "tiles"]
    assert counts["tiles"].sum() == len(manifest) and counts["images"].sum() == 6


def test_holdout_is_all_test(prepared):
    manifest = pd.read_csv(prepared / "results/tiny_holdout/split.tsv", sep="\t")
    assert set(manifest["split"]) == {"test"}


def test_rerun_has_nothing_to_do(prepared):
    assert nothing_to_do(snakemake(prepared, "-n", "--until", "augment", "split"))


def test_same_config_gives_identical_tiles(prepared, tmp_path):
    write_config(tmp_path)
    shard = samples_in(prepared / "results/tiny/tiles")["control/field_000"].name
    snakemake(tmp_path, f"results/tiny/tiles/{shard}")
    a = tilestore.load(prepared / f"results/tiny/tiles/{shard}")
    b = tilestore.load(tmp_path / f"results/tiny/tiles/{shard}")
    assert [t.meta for t in a] == [t.meta for t in b]
    np.testing.assert_array_equal(np.concatenate([t.tiles for t in a]), np.concatenate([t.tiles for t in b]))


def test_bad_config_stops_before_any_job(tmp_path):
    write_config(tmp_path, {**TINY, "prepare": {"tile_sise": 32}})
    result = snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0
    assert (
        "prepare: Additional properties are not allowed ('tile_sise' was unexpected)" in result.stdout + result.stderr
    )


def user_dataset(folder, on_bad_image, broken="broken field.tif", fields=2):
    """A folder-per-class dataset made of demo fields, one of them corrupt, plus a phantom file."""
    from cellclass.demo import synthetic as demo

    demo.write_dataset(folder / "data", "aggregates", fields_per_class=fields, seed=4, size=256, cells_per_field=30)
    images = folder / "data" / "images"
    (images / "control" / broken).write_bytes(b"not a tiff at all")
    (images / "control" / "._field_000.tif").write_bytes(b"\0")
    config = {
        "prepare": {"tile_size": 32, "on_bad_image": on_bad_image, "images_per_job": 2},
        "train": {"models": ["small"], "runs": 1, "epochs": 1, "epoch_tiles": 64, "batch_size": 16, "threads": 1},
        "datasets": {"mine": {"path": "data/images"}},
        "attribution": {"experiments": []},
    }
    write_config(folder, config)
    return images


def broken_name_on_the_training_side():
    """A file name for the corrupt image whose group the split sends to train (split seed 0)."""
    for i in range(100):
        name = f"broken field {i}.tif"
        others = [f"control/field_00{k}" for k in range(3)] + [f"aggregates/field_00{k}" for k in range(3)]
        group = datasets.sample_id(f"control/{name}")
        data = [Sample(g, (g,), g.split("/")[0], g) for g in [*others, group]]
        if split.assign(data, seed=0, test_fraction=0.2, validation_fraction=0.2)[group] == "train":  # the defaults
            return name
    raise AssertionError("no name hashes to train")


def test_corrupt_training_image_is_skipped_listed_and_the_run_trains(tmp_path):
    name = broken_name_on_the_training_side()
    user_dataset(tmp_path, "skip", broken=name, fields=3)  # 4 control groups: test, validation, two to train
    snakemake(tmp_path)
    results = tmp_path / "results"
    assert (results / "train/mine/small/fold0/seed0/metrics.json").exists()
    empty = pd.read_csv(results / "mine/images_without_tiles.tsv", sep="\t")
    assert len(empty) == 1
    row = empty.iloc[0]
    assert row["split"] == "train" and row["class"] == "control" and row["dataset"] == "mine"
    assert row["reason"].startswith("skipped: ") and name in row["reason"]
    counts = pd.read_csv(results / "mine/split_counts.tsv", sep="\t").set_index(["class", "split"])
    assert counts.loc[("control", "train"), "images_without_tiles"] == 1
    assert counts["images_without_tiles"].sum() == 1
    assert counts["images"].sum() == 7
    shard = samples_in(results / "mine/tiles")[row["sample"]].stem
    log = (tmp_path / f"logs/tile/mine/{shard}.log").read_text()
    assert "skipping" in log and name in log
    findings = (results / "evaluation/findings.html").read_text()
    assert "1 image(s) gave no tiles" in findings and row["sample"] in findings


def test_corrupt_image_fails_by_name_and_leaves_no_partial_output(tmp_path):
    user_dataset(tmp_path, "fail")
    result = snakemake(tmp_path, "--until", "tile", "--keep-going", check=False)
    assert result.returncode != 0
    # Only the broken image's shard failed, naming the file; the other shards were written.
    planned = shards.assign([s.id for s in datasets.from_folder(tmp_path / "data/images")], 2)
    broken = next(shard for shard, ids in planned.items() if any(i.startswith("control/broken_field") for i in ids))
    assert "broken field.tif" in (tmp_path / f"logs/tile/mine/{broken}.log").read_text()
    tiles = tmp_path / "results/mine/tiles"
    assert sorted(p.stem for p in tiles.glob("*.npz")) == sorted(set(planned) - {broken})
    assert not list(tiles.glob(f".{broken}*")) and not (tiles / f"{broken}.npz").exists()  # nothing half-written
    assert "skipping phantom file" in result.stderr
