"""Learning on the harder embedded benchmark: six nuclear staining patterns, one class rare, through the real
workflow, for each training variant listed below.

The set (cellclass.demo.patterns: homogeneous, speckled, nucleolar, centromere, membrane and the rare golgi;
72 px 16-bit single cells) is written once as a class-folder dataset, `prepare.kind: cells`, and prepared
once (`--until augment split`). Each variant then trains its model for `--seeds` seeds on the same split and
is evaluated (`snakemake results/evaluation/runs.tsv`), in the same folder, one Snakemake run per variant
(a kept `--folder` reruns only what changed: a variant already trained shows "kept" for its time).
The table gives, per variant, the balanced accuracy per cell on the test side (mean and range over seeds,
from results/evaluation/runs.tsv), the wall time of its Snakemake run, the collapsed runs (95% or more of the
test calls one class, from predictions.tsv) and, once, the storage per cell of results/<dataset>/tiles and
augmented. A variant whose keys the current schema rejects (a recipe, a backbone or test-time augmentation
not merged yet) is reported as not available and skipped. Chance is 1/6; the set is made so that no network
reaches 1.0 and a decent one about 0.85-0.95.

    python bench/learn.py [--cells 200] [--rare-fraction 0.33] [--seeds 3] [--epochs N] [--variants a,b]
                          [--folder DIR]
    python bench/learn.py --cells 30 --epochs 1 --seeds 1      # a check that it runs (minutes on 2 cores)

Accuracy per CPU-second (`--front`): each model of FRONT_MODELS at each budget of FRONT_BUDGETS (the modern
recipe, `--seeds` seeds), all in one Snakemake run, two one-thread jobs at a time. It prints balanced accuracy
per cell against the training CPU-seconds of a run (metrics.json's train_cpu_seconds: every thread of the job
while it trained, the scoring after each epoch included), and names the front: the variants that no other beats
in both (mean) accuracy and (median) CPU time. The default model and budget are marked.

    python bench/learn.py --front [--cells 200] [--seeds 3]
"""

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))  # this checkout's cellclass, as the Snakemake jobs below get it
from cellclass import config as cc_config  # noqa: E402
from cellclass.demo import patterns  # noqa: E402
from cellclass.io.errors import InputError  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))
from conftest import job_counts, snakemake_command  # noqa: E402  (the tests' command line and job-table parser)

DATASET = "patterns"

# What is compared: each a name and overrides of the base config's train settings. Test-time augmentation is
# scored on the same trained models afterwards (tta_scores), so it costs no second training.
VARIANTS = [
    {"name": "deep50 article", "train": {"models": ["deep50"], "recipe": "article"}},
    {"name": "deep50 modern", "train": {"models": ["deep50"], "recipe": "modern"}},
    {"name": "resnet modern", "train": {"models": ["resnet"], "recipe": "modern"}},
    # keras.applications backbones, from scratch (no weights file is at hand offline).
    {"name": "mobilenetv3small modern", "train": {"models": ["mobilenetv3small"], "recipe": "modern"}},
    # An epoch of one pass, as the modern preset had first (its default now shows each tile in 8 views).
    {"name": "deep50 modern 1 pass", "train": {"models": ["deep50"], "recipe": "modern", "epoch_passes": 1}},
    {"name": "resnet modern 1 pass", "train": {"models": ["resnet"], "recipe": "modern", "epoch_passes": 1}},
    {"name": "resnet article", "train": {"models": ["resnet"], "recipe": "article"}},
    {"name": "efficientnetv2b0 modern", "train": {"models": ["efficientnetv2b0"], "recipe": "modern"}},
]
BASELINE = "deep50 article"  # the ratios are against it
# Run unless --variants names others: about half an hour on 2 cores at 200 cells a class (resnet is the slow one).
DEFAULT = ("deep50 article", "deep50 modern", "resnet modern", "mobilenetv3small modern")

# The accuracy-per-CPU-second front: models x budgets. `resnet` with a stride-2 stem is the strided-stem variant.
FRONT_MODELS = {
    "small": {},
    "deep": {},
    "deep50": {},
    "resnet": {},
    "resnet_stem2": {"stem_stride": 2},
    "mobilenetv3small": {},
}
FRONT_BUDGETS = {"10 passes": {"passes": 10}, "30 passes": {"passes": 30}}
DEFAULT_VARIANT = ("deep", "30 passes")  # train.models' and the modern recipe's defaults on a set this size

BASE = {
    # 72 px cells seen at 48 px: a third of the pixels, so three seeds of four networks fit in about half an hour.
    "prepare": {"kind": "cells", "tile_size": patterns.SIZE, "resize_to": 48},
    "split": {"seed": 0, "test_fraction": 0.2},
    "augment": {"dihedral": True},
    # Two one-thread runs at a time keep both cores busy (the networks are small).
    "train": {"batch_size": 32, "threads": 1},
    "attribution": {"experiments": []},
}


def slug(name):
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def variant_config(variant, data, seeds, epochs):
    """The whole config of one variant: the base, one experiment named after it, its overrides."""
    config = copy.deepcopy(BASE)
    config["datasets"] = {DATASET: {"path": str(data)}}
    train = {**variant.get("train", {}), "runs": seeds}
    if epochs is not None:
        train["epochs"] = epochs
    config["experiments"] = {slug(variant["name"]): {"dataset": DATASET, "train": train}}
    if "evaluation" in variant:
        config["evaluation"] = copy.deepcopy(variant["evaluation"])
    return config


def available(config, folder):
    """None if this cellclass accepts the config, else why not (the schema's or the model registry's words)."""
    try:
        cc_config.validate(config, base_dir=folder)
    except InputError as error:
        return " ".join(str(error).replace("invalid configuration:", "").split())
    return None


def snakemake(folder, config, *args, rule="train"):
    """Run Snakemake on this checkout in `folder` with `config`; returns wall seconds, or None when it ran no
    `rule` job (a kept folder held them already)."""
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "workflow"), os.environ.get("PYTHONPATH")])),
    }
    start = time.perf_counter()
    result = subprocess.run(snakemake_command(folder, *args), capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds if job_counts(result).get(rule) else None


def scores(folder, experiment):
    """Per run: balanced accuracy per cell on the dataset's own test side, and whether it collapsed."""
    runs = pd.read_csv(folder / "results/evaluation/runs.tsv", sep="\t")
    rows = runs[(runs["experiment"] == experiment) & (runs["test_set"] == DATASET) & (runs["level"] == "image")]
    out = []
    for row in rows.itertuples():
        run = folder / f"results/train/{experiment}/{row.model}/fold{row.fold}/seed{row.seed}"
        calls = pd.read_csv(run / "predictions.tsv", sep="\t", dtype=str)
        calls = calls[calls["test_set"] == DATASET] if "test_set" in calls else calls
        top_share = calls["predicted"].value_counts(normalize=True).iloc[0]
        out.append({"seed": row.seed, "balanced_accuracy": row.balanced_accuracy, "collapsed": top_share >= 0.95})
    return pd.DataFrame(out)


def tta_scores(folder, experiment):
    """Per run: balanced accuracy per cell on the dataset's test side with the mean of the 8 dihedral views of
    each cell (evaluation.tta: dihedral), scored with the run's own saved model."""
    import keras
    from sklearn.metrics import balanced_accuracy_score

    from cellclass.evaluate.runs import read_metrics
    from cellclass.io import tilestore
    from cellclass.learn import inference

    split = pd.read_csv(folder / "results" / DATASET / "split.tsv", sep="\t", dtype={"sample": str})
    tested = set(split.loc[split["split"] == "test", "sample"])
    tilesets = [
        t
        for t in tilestore.load_all(sorted((folder / "results" / DATASET / "tiles").glob("*.npz")))
        if t.meta["sample"] in tested and len(t)
    ]
    out = []
    for run in sorted((folder / "results/train" / experiment).glob("*/fold0/seed*")):
        metrics = read_metrics(run)
        model = keras.models.load_model(run / "model.keras", compile=False)
        truth, calls = [], []
        for tileset, score in zip(
            tilesets,
            inference.per_image(
                [model], tilesets, channels=metrics["channels"], n_classes=len(metrics["classes"]), tta="dihedral"
            ),
        ):
            truth += [tileset.meta["class"]] * len(tileset)
            calls += [metrics["classes"][i] for i in score[0].argmax(axis=1)]
        out.append(balanced_accuracy_score(truth, calls))
    return pd.Series(out, dtype=float)


def storage_per_cell(folder, cells):
    """KiB per cell of the raw TIFFs and of the dataset's tile and augmented shard files (over all its cells)."""
    parts = {"raw": folder.glob("data/*/*.tif")}
    parts |= {part: (folder / "results" / DATASET / part).glob("*.npz") for part in ("tiles", "augmented")}
    return {part: sum(p.stat().st_size for p in files) / 1024 / cells for part, files in parts.items()}


def count_test_cells(folder):
    split = pd.read_csv(folder / "results" / DATASET / "split.tsv", sep="\t")
    return int((split["split"] == "test").sum())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=200, help="cells per class (the rare class: a fraction of it)")
    parser.add_argument("--rare-fraction", type=float, default=patterns.RARE_FRACTION)
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per variant")
    parser.add_argument("--epochs", type=int, help="override every variant's epochs (default: its own)")
    parser.add_argument("--variants", help="comma-separated names to run (default: DEFAULT)")
    parser.add_argument("--data-seed", type=int, default=7)
    parser.add_argument("--folder", help="work folder, kept (default: a temporary one)")
    parser.add_argument("--front", action="store_true", help="accuracy against training CPU-seconds (see above)")
    args = parser.parse_args()
    if args.front:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(args.folder or tmp).resolve()
            folder.mkdir(parents=True, exist_ok=True)
            return front(folder, args)
    chosen = [v for v in VARIANTS if v["name"] in DEFAULT]
    if args.variants:
        wanted = set(args.variants.split(","))
        chosen = [v for v in VARIANTS if v["name"] in wanted]
        unknown = wanted - {v["name"] for v in chosen}
        if unknown:
            raise SystemExit(
                f"unknown variant(s) {', '.join(sorted(unknown))}; known: {', '.join(v['name'] for v in VARIANTS)}"
            )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder or tmp).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        run(folder, chosen, args)


def run(folder, chosen, args):
    data, made = folder / "data", folder / "data.json"
    start = time.perf_counter()
    counts = patterns.class_counts(args.cells, args.rare_fraction)
    wanted = json.dumps({"cells": args.cells, "rare_fraction": args.rare_fraction, "seed": args.data_seed})
    if not made.exists() or made.read_text() != wanted:  # a kept folder is reused only for the same set
        shutil.rmtree(data, ignore_errors=True)
        patterns.write_dataset(data, args.cells, args.rare_fraction, seed=args.data_seed)
        made.write_text(wanted)
    generate_s = time.perf_counter() - start
    n_cells = sum(counts.values())
    print(
        f"data: {n_cells} cells of {patterns.SIZE} px ({', '.join(f'{c} {n}' for c, n in counts.items())}), "
        f"written in {generate_s:.0f} s to {data}",
        flush=True,
    )

    configs = {v["name"]: variant_config(v, data, args.seeds, args.epochs) for v in chosen}
    missing = {name: available(config, folder) for name, config in configs.items()}
    ready = [v for v in chosen if missing[v["name"]] is None]
    if not ready:
        raise SystemExit(
            "no variant is available in this cellclass:\n" + "\n".join(f"  {k}: {v}" for k, v in missing.items())
        )
    prepare_s = snakemake(folder, configs[ready[0]["name"]], "--until", "augment", "split", rule="tile")
    storage = storage_per_cell(folder, n_cells)
    print(f"prepare (tile, augment, split): {seconds_text(prepare_s)}", flush=True)

    rows = []
    for variant in chosen:
        name = variant["name"]
        if missing[name] is not None:
            rows.append({"variant": name, "status": "not available", "note": missing[name]})
            print(f"{name}: not available ({missing[name]})", flush=True)
            continue
        try:
            seconds = snakemake(folder, configs[name], "results/evaluation/runs.tsv")
        except RuntimeError as error:
            rows.append({"variant": name, "status": "failed", "note": str(error).splitlines()[0]})
            print(f"{name}: failed\n{error}", flush=True)
            continue
        table = scores(folder, slug(name))
        acc = table["balanced_accuracy"]
        tta = tta_scores(folder, slug(name))
        rows.append(
            {
                "variant": name,
                "status": "ok",
                "runs": len(table),
                "mean": acc.mean(),
                "low": acc.min(),
                "high": acc.max(),
                "tta_mean": tta.mean(),
                "tta_low": tta.min(),
                "tta_high": tta.max(),
                "collapsed": int(table["collapsed"].sum()),
                "wall_s": seconds,
            }
        )
        print(
            f"{name}: balanced accuracy {acc.mean():.3f} ({acc.min():.3f}-{acc.max():.3f}), with TTA "
            f"{tta.mean():.3f} ({tta.min():.3f}-{tta.max():.3f}), over {len(table)} seeds, {seconds_text(seconds)}",
            flush=True,
        )
    pd.DataFrame(rows).to_csv(folder / "bench_learn.tsv", sep="\t", index=False)
    print_table(rows, n_cells, count_test_cells(folder), storage, args)


def front_config(data, seeds):
    """One config whose experiments are the front's variants, each a model at a budget."""
    config = copy.deepcopy(BASE)
    config["datasets"] = {DATASET: {"path": str(data)}}
    config["experiments"] = {}
    for model, options in FRONT_MODELS.items():
        network = model.split("_")[0]
        for label, budget in FRONT_BUDGETS.items():
            train = {"models": [network], "runs": seeds, "recipe": "modern", "budget": budget}
            if options:
                train["model_options"] = {network: options}
            config["experiments"][slug(f"{model} {label}")] = {"dataset": DATASET, "train": train}
    return config


def front(folder, args):
    """Balanced accuracy per cell against training CPU-seconds for every model x budget; the front named."""
    data = folder / "data"
    if not data.exists():
        patterns.write_dataset(data, args.cells, args.rare_fraction, seed=args.data_seed)
    config = front_config(data, args.seeds)
    seconds = snakemake(folder, config, "results/evaluation/runs.tsv")
    rows = []
    for model in FRONT_MODELS:
        for label in FRONT_BUDGETS:
            name = slug(f"{model} {label}")
            table = scores(folder, name)
            cpu = [
                json.loads(p.read_text())["train_cpu_seconds"]
                for p in sorted((folder / "results/train" / name).glob("*/fold0/seed*/metrics.json"))
            ]
            acc = table["balanced_accuracy"]
            rows.append(
                {
                    "model": model,
                    "budget": label,
                    "mean": acc.mean(),
                    "low": acc.min(),
                    "high": acc.max(),
                    "cpu_s": float(pd.Series(cpu).median()),
                    "cpu_low": min(cpu),
                    "cpu_high": max(cpu),
                    "collapsed": int(table["collapsed"].sum()),
                    "runs": len(table),
                }
            )
    table = pd.DataFrame(rows)
    table["front"] = [
        not (
            (table["mean"] >= r.mean)
            & (table["cpu_s"] <= r.cpu_s)
            & ((table["mean"] > r.mean) | (table["cpu_s"] < r.cpu_s))
        ).any()
        for r in table.itertuples()
    ]
    table.to_csv(folder / "bench_front.tsv", sep="\t", index=False)
    print(
        f"\nAccuracy per training CPU-second: {count_test_cells(folder)} test cells (chance {1 / 6:.2f}), "
        f"{args.seeds} seeds a variant, the modern recipe; {seconds_text(seconds)} for the whole Snakemake run"
    )
    print(
        f"{'model':<18} {'budget':<10} {'bal. acc.':>9} {'range':>13} {'CPU s':>7} {'range':>11} {'collapsed':>9}"
        f"  front"
    )
    for r in table.sort_values("cpu_s").itertuples():
        mark = "front" if r.front else ""
        if (r.model, r.budget) == DEFAULT_VARIANT:
            mark += " (default)"
        print(
            f"{r.model:<18} {r.budget:<10} {r.mean:>9.3f} {f'{r.low:.3f}-{r.high:.3f}':>13} {r.cpu_s:>7.0f} "
            f"{f'{r.cpu_low:.0f}-{r.cpu_high:.0f}':>11} {r.collapsed:>5} / {r.runs}  {mark}"
        )
    names = [f"{r.model} at {r.budget}" for r in table[table["front"]].sort_values("cpu_s").itertuples()]
    print("front (no other variant is both more accurate and cheaper): " + ", ".join(names))


def seconds_text(seconds, unit=" s"):
    """Wall seconds, or 'kept' when a kept folder already held the outputs that take the time."""
    return "kept" if seconds is None else f"{seconds:.0f}{unit}"


def print_table(rows, n_cells, n_test, storage, args):
    print()
    print(
        f"Balanced accuracy per cell on the test side ({n_test} cells, chance {1 / 6:.2f}); "
        f"{args.seeds} seed(s) per variant, epochs {args.epochs or 'as configured'}"
    )
    base = next((r for r in rows if r["variant"] == BASELINE and r["status"] == "ok"), None)
    print(
        f"{'variant':<26} {'bal. acc.':>9} {'range':>13} {'with TTA':>9} {'range':>13} {'collapsed':>10} "
        f"{'wall s':>7} {'acc. ratio':>10} {'time ratio':>10}"
    )
    for row in rows:
        if row["status"] != "ok":
            print(f"{row['variant']:<26} {row['status']}: {row['note'][:90]}")
            continue
        span, tta_span = f"{row['low']:.3f}-{row['high']:.3f}", f"{row['tta_low']:.3f}-{row['tta_high']:.3f}"
        acc_ratio = f"{row['mean'] / base['mean']:.2f}x" if base else "-"
        time_ratio = f"{row['wall_s'] / base['wall_s']:.2f}x" if base and row["wall_s"] and base["wall_s"] else "-"
        print(
            f"{row['variant']:<26} {row['mean']:>9.3f} {span:>13} {row['tta_mean']:>9.3f} {tta_span:>13} "
            f"{row['collapsed']:>6} / {row['runs']:<2} {seconds_text(row['wall_s'], ''):>7} {acc_ratio:>10} "
            f"{time_ratio:>10}"
        )
    print(f"ratios against {BASELINE}: mean balanced accuracy, and the wall time of its Snakemake run")
    print(
        f"storage per cell ({n_cells} cells): raw TIFF {storage['raw']:.1f} KiB, results/{DATASET}/tiles "
        f"{storage['tiles']:.1f} KiB, augmented {storage['augmented']:.1f} KiB"
    )


if __name__ == "__main__":
    main()
