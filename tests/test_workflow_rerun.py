"""Rerun only what changed: a folder dataset of demo fields, prepared for real, then changed.

The nothing-changed no-op and the plot/train options are covered in
test_workflow_prepare.py and test_workflow_train.py; these are the changes a
user makes to the data: a new image, a new tile size, a broken file replaced.
"""

import copy
import json
import os
import shutil
import signal
import subprocess
import time

import pandas as pd
import pytest

from cellclass.demo import synthetic as demo
from cellclass.io.datasets import from_folder
from cellclass.prepare import shards, split

from conftest import TINY, job_counts, nothing_to_do, samples_in, snakemake, snakemake_command, write_config

pytestmark = pytest.mark.slow

# With augment.dihedral alone nothing is augmented on disk (rotations and flips are made in training): no augment job.
PREPARE = ("--until", "split")
# No validation side: these tests pin down the hash-only split, under which adding an image never
# moves another (the small-data moves that give every class a validation group are tested in test_split).
SPLIT = {"seed": 0, "test_fraction": 0.25, "validation_fraction": 0.0}
CONFIG = {
    # 3 images a shard: 5 to 7 images make 2 shards, so adding one changes only its own shard.
    "prepare": {"tile_size": 32, "foreground": {"min_fraction": 0.2}, "images_per_job": 3},
    "split": SPLIT,
    "augment": {"dihedral": True},
    "train": {"models": ["small"], "runs": 1, "epochs": 1, "threads": 1},
    "datasets": {"mine": {"path": "data/images"}},
}
# Held back from the first run and added later. Its hash puts it on the train
# side, where it cannot change the small-dataset fallback of the other images.
NEW_IMAGE = "aggregates/field_002"


def write_images(folder, hold_back=None):
    """Six demo fields as a folder-per-class dataset under folder/data/images; one may wait in folder/spare."""
    demo.write_dataset(folder / "data", "aggregates", fields_per_class=3, seed=1, size=256, cells_per_field=30)
    if hold_back:
        spare = folder / "spare" / f"{hold_back}.tif"
        spare.parent.mkdir(parents=True)
        shutil.move(folder / "data/images" / f"{hold_back}.tif", spare)
    write_config(folder, CONFIG)


def sides(folder):
    """The split side of every sample id, as the workflow computes it."""
    samples = from_folder(folder / "data/images")
    groups = split.assign(samples, **SPLIT)
    return {s.id: groups[s.group] for s in samples}


def planned_shards(folder):
    """Shard name -> sample ids, as the workflow assigns them."""
    return shards.assign([s.id for s in from_folder(folder / "data/images")], CONFIG["prepare"]["images_per_job"])


def snapshot(files):
    return {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in files}


def test_added_image_tiles_only_itself_and_moves_no_split(tmp_path):
    write_images(tmp_path, hold_back=NEW_IMAGE)
    shards_before = planned_shards(tmp_path)
    shards_after = shards.assign(
        [*(i for ids in shards_before.values() for i in ids), NEW_IMAGE], CONFIG["prepare"]["images_per_job"]
    )
    (new_shard,) = [shard for shard, ids in shards_after.items() if NEW_IMAGE in ids]
    assert {k: v for k, v in shards_after.items() if k != new_shard} == {
        k: v for k, v in shards_before.items() if k != new_shard
    }

    snakemake(tmp_path, *PREPARE)
    results = tmp_path / "results/mine"
    others = [p for p in results.glob("*/*") if not p.name.startswith(f"{new_shard}.")]
    before = snapshot(others)
    manifest_before = pd.read_csv(results / "split.tsv", sep="\t")
    assert len([p for p in others if p.parent.name == "tiles"]) == 2 * len(set(shards_before) - {new_shard})

    shutil.move(tmp_path / "spare" / f"{NEW_IMAGE}.tif", tmp_path / "data/images" / f"{NEW_IMAGE}.tif")
    assert sides(tmp_path)[NEW_IMAGE] == "train"
    assert job_counts(snakemake(tmp_path, "-n", *PREPARE)) == {"tile": 1, "split": 1}

    snakemake(tmp_path, *PREPARE)
    assert snapshot(others) == before  # no other shard rewritten nor touched
    assert samples_in(results / "tiles")[NEW_IMAGE].stem == new_shard
    manifest = pd.read_csv(results / "split.tsv", sep="\t")
    old = manifest[manifest["sample"] != NEW_IMAGE].reset_index(drop=True)
    pd.testing.assert_frame_equal(old, manifest_before)
    assert set(manifest.loc[manifest["sample"] == NEW_IMAGE, "split"]) == {"train"}
    assert nothing_to_do(snakemake(tmp_path, "-n", *PREPARE))


def test_tile_size_change_reruns_tiling_and_everything_after_it(tmp_path):
    write_images(tmp_path)
    snakemake(tmp_path, *PREPARE)
    n_train = list(sides(tmp_path).values()).count("train")
    unchanged = job_counts(snakemake(tmp_path, "-n"))
    assert unchanged.get("train") == 1 and not {"tile", "split", "augment"} & set(unchanged)

    config = copy.deepcopy(CONFIG)
    config["prepare"]["tile_size"] = 48
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "-n")
    jobs = job_counts(result)
    assert n_train and (jobs["tile"], jobs["split"], jobs.get("augment")) == (len(planned_shards(tmp_path)), 1, None)
    # Everything downstream follows: the same training and evaluation jobs as before.
    assert {rule: jobs[rule] for rule in unchanged} == unchanged
    # The tile settings are the only trigger; the rest follows from updated inputs.
    assert "Rules with provenance triggered jobs: tile\n" in result.stdout + result.stderr


def test_fixed_corrupt_image_reruns_only_its_own_jobs(tmp_path):
    write_images(tmp_path)
    broken = tmp_path / "data/images/control/broken field.tif"
    broken.write_bytes(b"not a tiff at all")

    failed = snakemake(tmp_path, *PREPARE, "--keep-going", check=False)
    assert failed.returncode != 0
    assert "broken field.tif" in failed.stdout + failed.stderr
    broken_id = next(sid for sid in sides(tmp_path) if sid.startswith("control/broken_field"))
    broken_shard = next(shard for shard, ids in planned_shards(tmp_path).items() if broken_id in ids)
    tiles = tmp_path / "results/mine/tiles"
    # Only the broken image's shard failed; the other shards finished.
    assert sorted(p.stem for p in tiles.glob("*.npz")) == sorted(set(planned_shards(tmp_path)) - {broken_shard})

    demo.write_field(
        broken, tmp_path / "spare/puncta.tif", tmp_path / "spare/cells.tif", tmp_path / "spare/nuclei.tif",
        pattern="aggregates", cls="control", stem="field_009", seed=1, size=256, cells_per_field=30,
    )  # fmt: skip
    assert job_counts(snakemake(tmp_path, "-n", *PREPARE)) == {"tile": 1, "split": 1}

    snakemake(tmp_path, *PREPARE)
    manifest = pd.read_csv(tmp_path / "results/mine/split.tsv", sep="\t")
    assert broken_id in set(manifest["sample"])
    assert nothing_to_do(snakemake(tmp_path, "-n", *PREPARE))


def test_killed_training_job_resumes_from_its_last_epoch(tmp_path):
    config = copy.deepcopy(TINY)
    config["train"].update(epochs=8, epoch_tiles=400)
    write_config(tmp_path, config)
    target = "results/train/tiny/small/fold0/seed0/metrics.json"
    run = tmp_path / "results/train/tiny/small/fold0/seed0"
    command = snakemake_command(tmp_path, target)
    # Killed as a whole (Snakemake and its job) the moment two epochs are saved.
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not list((run / "backup").glob("epoch[2-9].keras")) and process.poll() is None:
            assert time.monotonic() < deadline, "training never saved its second epoch"
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, "snakemake ended before it could be killed"
    assert not (run / "model.keras").exists() and not (run / "metrics.json").exists()

    snakemake(tmp_path, "--unlock")
    snakemake(tmp_path, target)
    log = (tmp_path / "logs/train/tiny/small/fold0/seed0.log").read_text()
    assert "resuming from" in log
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == list(range(1, 9))
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 8
    assert not (run / "backup").exists()
