"""Thousands of single-cell images: the sharded workflow against plain Python, measured in one run.

Generated data: N single-cell PNGs (8-bit, one channel, 6 classes in class
folders), `prepare.kind: cells`, default shard size.

(1) prepare, 13,600 crops of 78x78: the whole Snakemake stage that makes the
    tiles (`snakemake --cores 2 --until split`: the tile jobs, one per shard,
    and the split) against a baseline, one plain Python process that reads each
    PNG with Pillow, normalises it as ours does and writes every tile to one
    .npy. The two are checked to give the same tiles. Target: <= 2x.
(2) jobs the whole workflow plans at the default shard size, per 100 images.
    Target: <= 1.
(3) planning at 10,000 / 31,623 / 100,000 crops (24x24, to keep the bench
    short; planning never reads pixels): `snakemake -n` of the whole workflow
    from scratch, and the no-op `snakemake -n --until split` after a real
    prepare stage. Targets: no-op < 60 s at 100,000, growing about linearly.
(3b) planning at --plan-cells single-cell images (default 1,000,000) and --plan-fields
    fields (default 100,000), as empty files in class folders (planning never
    reads pixels): `snakemake -n` of the whole workflow, its jobs, wall time and
    the peak memory of the planning process.
(4) training throughput on the 13,600 crops: bench/train.py's measurement, our
    stream from the workflow's shard files against the same tiles in one
    in-memory array given to model.fit. Target: >= 0.9x.
(5) the rest of the workflow on the 13,600 crops (train the `small` network,
    augmented on the fly, for one epoch of 20,000 tiles, evaluate, figures): wall time and
    the balanced accuracy it reports, to show the whole chain runs at full size.

(6) prediction at scale: --predict-cells new single-cell images (default 100,000) called by the run of (5):
    the whole predict stage (`snakemake predict`: the predict_tile jobs that tile the PNGs, and predict_set,
    which scores, judges novelty, writes the Parquet cell table and the image and group tables) against the
    bare model's inference over the same tiles (Keras predict_on_batch in batches of 256, read from the
    stage's own tile shards). Target: <= 1.5x.

A and B alternate, `--repeat` times (default 3); medians and ranges are printed.

    python bench/scale.py [--crops 13600] [--sizes 10000,31623,100000] [--repeat 3] [--model deep]
                          [--plan-cells 1000000] [--plan-fields 100000] [--predict-cells 100000]
                          [--skip prepare,planning,...]
"""

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from cellclass.demo import synthetic

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
# The tests' command line and the one parser of Snakemake's job table.
from conftest import job_counts, nothing_to_do, snakemake_command  # noqa: E402


def write_config(folder, data, size, kind="cells"):
    config = {
        "prepare": {"kind": kind, "tile_size": size, "foreground": {"method": "none"}},
        "datasets": {"crops": {"path": str(data)}},
        "train": {"models": ["small"], "runs": 1, "epochs": 1, "epoch_tiles": 20000, "threads": 2},
        "attribution": {"experiments": []},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))


def snakemake(folder, *args):
    """Run snakemake in `folder`; returns (wall seconds, output)."""
    command = snakemake_command(folder, *args)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds, result.stdout + result.stderr


def baseline(data, out):
    """One process: Pillow reads each crop; percentile-normalised as ours; every tile into one .npy."""
    paths = sorted(data.rglob("*.png"))
    tiles = np.empty((len(paths), *np.asarray(Image.open(paths[0])).shape, 1), np.float16)
    for i, path in enumerate(paths):
        pixels = np.asarray(Image.open(path), dtype=np.float32)
        lo, hi = np.percentile(pixels, [0.5, 99.9])
        tiles[i, ..., 0] = np.clip((pixels - lo) / (hi - lo), 0, 1)
    np.save(out, tiles)
    return [p.relative_to(data).with_suffix("").as_posix() for p in paths], tiles


def same_tiles(workflow_dir, ids, tiles):
    from cellclass.io import tilestore

    ours = {
        t.meta["sample"]: np.asarray(t.tiles[0])
        for t in tilestore.load_all(sorted(workflow_dir.glob("results/crops/tiles/*.npz")))
    }
    return max(float(np.abs(ours[i].astype(np.float32) - t.astype(np.float32)).max()) for i, t in zip(ids, tiles))


def spread(values):
    return f"median {np.median(values):6.2f}  range {min(values):6.2f}-{max(values):6.2f}"


def prepare_stage(tmp, n, repeat):
    data = tmp / "crops"
    synthetic.write_single_cells(data, n, size=78)
    ours, base = [], []
    for r in range(repeat):
        run_dir = tmp / f"prepare{r}"
        run_dir.mkdir()
        write_config(run_dir, data, 78)
        ours.append(snakemake(run_dir, "--until", "split")[0])
        start = time.perf_counter()
        ids, tiles = baseline(data, tmp / f"baseline{r}.npy")
        base.append(time.perf_counter() - start)
    _, plan = snakemake(tmp / "prepare0", "-n", "--forceall")
    jobs = job_counts(plan)
    print(f"(1) prepare {n} crops of 78x78 on 2 cores, {repeat} runs each")
    print(f"    workflow (--until split, {jobs['tile']} tile jobs): {spread(ours)} s")
    print(f"    baseline (one process, Pillow):          {spread(base)} s")
    print(
        f"    ratio {np.median(ours) / np.median(base):.2f}x (target <= 2x); largest tile difference "
        f"{same_tiles(tmp / 'prepare0', ids, tiles):.4f} (float16 rounding)"
    )
    total = sum(jobs.values())
    print(f"(2) jobs the whole workflow plans: {total} ({jobs}) = {100 * total / n:.2f} per 100 images (target <= 1)")
    return tmp / "prepare0"


def planning(tmp, sizes):
    print("(3) planning, crops of 24x24, kind cells (and kind fields for the DAG from scratch)")
    print(f"    {'images':>8} {'jobs':>6} {'DAG s':>7} {'no-op s':>8} {'fields jobs':>12} {'fields DAG s':>13}")
    rows = []
    for n in sizes:
        data = tmp / f"small{n}"
        synthetic.write_single_cells(data, n, size=24, seed=1)
        folder, fields = tmp / f"plan{n}", tmp / f"fields{n}"
        folder.mkdir()
        fields.mkdir()
        write_config(folder, data, 24)
        write_config(fields, data, 16, kind="fields")
        dag_s, plan = snakemake(folder, "-n")
        jobs = sum(job_counts(plan).values())
        snakemake(folder, "--until", "split")
        noop_s, output = snakemake(folder, "-n", "--until", "split")
        assert nothing_to_do(output), output[-2000:]
        fields_s, fields_plan = snakemake(fields, "-n")
        rows.append((n, noop_s))
        print(
            f"    {n:>8} {jobs:>6} {dag_s:>7.1f} {noop_s:>8.1f} {sum(job_counts(fields_plan).values()):>12} {fields_s:>13.1f}"
        )
    (n0, t0), (n1, t1) = rows[0], rows[-1]
    print(
        f"    no-op growth {n0} -> {n1} images: {t1 / t0:.2f}x for {n1 / n0:.1f}x the images (linear or better: <= "
        f"{n1 / n0:.1f}x); at {n1}: {t1:.1f} s (target < 60 s)"
    )


def empty_dataset(folder, n, suffix, n_classes=6):
    """n empty image files in class folders, classes dealt in turn: enough for planning, which never reads pixels."""
    for k in range(n_classes):
        (folder / f"class{k}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"class{i % n_classes}" / f"img_{i:07d}{suffix}").touch()


def planning_at_scale(tmp, cells, fields):
    """`snakemake -n` of the whole workflow on `cells` single-cell images and `fields` fields (empty files)."""
    import resource

    print("(3b) dry run of the whole workflow on generated (empty) files, default shard size")
    for n, kind, suffix in ((cells, "cells", ".png"), (fields, "fields", ".tif")):
        if not n:
            continue
        folder = tmp / f"dry_{kind}"
        folder.mkdir()
        empty_dataset(folder / "data", n, suffix)
        write_config(folder, folder / "data", 78 if kind == "cells" else 256, kind=kind)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        seconds, plan = snakemake(folder, "-n")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        jobs = job_counts(plan)
        memory = f"{peak / 1024:.0f} MB" if peak > before else f"<= {peak / 1024:.0f} MB"  # the children's peak so far
        print(
            f"    {n:>9} {kind:6s}: {sum(jobs.values())} jobs ({jobs.get('tile', 0)} tile), {seconds:.0f} s, "
            f"peak memory of snakemake {memory}"
        )


def training(tiles_dir, args):
    spec = importlib.util.spec_from_file_location("train_bench", REPO / "bench/train.py")
    train_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_bench)
    options = argparse.Namespace(model=args.model, size=78, batch=20, steps=50)
    stream, memory = [], []
    for _ in range(args.repeat):
        stream.append(train_bench.measure("speed-stream", str(tiles_dir), options)["tiles_per_s"])
        memory.append(train_bench.measure("speed-memory", str(tiles_dir), options)["tiles_per_s"])
    print(f"(4) training {args.model}, 78x78x1 crops, batch 20, {args.repeat} runs each (tiles/s)")
    print(f"    stream from shard files: {spread(stream)}")
    print(f"    in-memory array:         {spread(memory)}")
    print(f"    ratio {np.median(stream) / np.median(memory):.2f}x (target >= 0.9x)")


def whole_workflow(folder):
    import pandas as pd

    seconds, _ = snakemake(folder)
    summary = pd.read_csv(folder / "results/evaluation/summary.tsv", sep="\t")
    row = summary[(summary["metric"] == "balanced_accuracy") & (summary["level"] == "image")].iloc[0]
    print(
        f"(5) train, evaluate and figures on the prepared crops: {seconds:.0f} s; balanced accuracy per "
        f"image (cell) {row['mean']:.2f} over {int(row['n_units'])} test cells (chance {1 / 6:.2f})"
    )


def bare_inference(folder):
    """Seconds the run's model takes over the prediction set's tiles alone, and how many tiles."""
    import keras

    from cellclass.io import tilestore
    from cellclass.learn import inference

    model = keras.models.load_model(next(folder.glob("results/train/crops/small/*/seed0/model.keras")), compile=False)
    tiles = np.concatenate(
        [
            np.asarray(t.tiles, np.float32)
            for t in tilestore.load_all(sorted(folder.glob("results/predict/new/tiles/*.npz")))
            if len(t)
        ]
    )
    start = time.perf_counter()
    inference.probabilities(model, tiles)
    return time.perf_counter() - start, len(tiles)


def prediction_at_scale(folder, n, repeat):
    """(6): the predict stage on n new crops against the bare model's inference, alternated."""
    data = folder.parent / "new_crops"
    synthetic.write_single_cells(data, n, size=78, seed=11)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["predict"] = {"new": {"path": str(data), "experiment": "crops"}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    stage, bare = [], []
    for r in range(repeat):
        stage.append(snakemake(folder, "predict", *(["--forcerun", "predict_tile"] if r else []))[0])
        seconds, count = bare_inference(folder)
        bare.append(seconds)
    print(f"(6) predict {n} new crops of 78x78 ({count} tiles) with the `small` run, {repeat} runs each")
    print(f"    predict stage (tile, score, novelty, tables): {spread(stage)} s")
    print(f"    bare model inference over the same tiles:     {spread(bare)} s")
    print(f"    ratio {np.median(stage) / np.median(bare):.2f}x (target <= 1.5x)")
    storage_and_memory(folder, n)


def storage_and_memory(folder, n):
    """Per cell of the prediction set: the bytes of each output kind, and the jobs' peak memory (Snakemake's
    benchmark files) of the last run."""
    import pandas as pd

    outputs = {
        "tile shards (results/predict/new/tiles/*.npz)": folder.glob("results/predict/new/tiles/*.npz"),
        "tiles.parquet": [folder / "results/predict/new/tiles.parquet"],
        "images.tsv": [folder / "results/predict/new/images.tsv"],
    }
    for name, paths in outputs.items():
        size = sum(path.stat().st_size for path in paths)
        print(f"    {name}: {size / 1e6:.1f} MB, {size / n:.0f} B per cell")
    for rule in ("predict_tile", "predict"):
        peaks = [pd.read_csv(path, sep="\t")["max_rss"].iloc[-1] for path in folder.glob(f"benchmarks/{rule}/**/*.tsv")]
        print(f"    {rule} jobs: {len(peaks)}, peak memory (max_rss) {max(peaks):.0f} MB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=13600)
    parser.add_argument("--sizes", default="10000,31623,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", default="deep")
    parser.add_argument("--plan-cells", type=int, default=1_000_000, help="single-cell images of the dry run (0: skip)")
    parser.add_argument("--plan-fields", type=int, default=100_000, help="fields of the dry run (0: skip)")
    parser.add_argument("--predict-cells", type=int, default=100_000, help="new crops of part (6) (0: skip)")
    parser.add_argument(
        "--skip", default="", help="comma-separated parts to leave out: prepare,planning,scale,training,workflow"
    )
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepared = prepare_stage(tmp, args.crops, args.repeat) if not {"prepare", "training"} <= skip else None
        if "planning" not in skip:
            planning(tmp, [int(n) for n in args.sizes.split(",")])
        if "scale" not in skip:
            planning_at_scale(tmp, args.plan_cells, args.plan_fields)
        if "training" not in skip:
            training(prepared / "results/crops/tiles", args)
        if "workflow" not in skip and prepared is not None:
            whole_workflow(prepared)
            if args.predict_cells:
                prediction_at_scale(prepared, args.predict_cells, args.repeat)


if __name__ == "__main__":
    main()
