"""Single-cell crops against grid tiles: the same demo fields, model, folds and seeds, two ways of cutting them.

The demo's clear (`aggregates`) and faint (`subtle`) fields are generated as
the default config makes them, and each is prepared twice: as a grid of
64-px tiles (`kind: fields`) and as one 64-px crop per segmented nucleus
(`kind: nuclei`). The four datasets share their fields and their grouped
3-fold split (same seed, same groups), and train the same model with the same
seeds, so the only difference is the cut. One real Snakemake run trains and
evaluates all of them; the script prints balanced accuracy per image and per
tile (cell) with its bootstrap interval from summary.tsv, and the test units.

    python bench/crops_vs_grid.py [--model deep] [--runs 1] [--folder DIR]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import snakemake_command  # noqa: E402  (the tests' command line)

DEMO = {
    "aggregates": {"pattern": "aggregates", "fields_per_class": 6, "seed": 1, "cells_per_field": 100},
    "subtle": {"pattern": "subtle", "fields_per_class": 6, "seed": 2, "cells_per_field": 100},
}
# The demo config's training of each pattern (subtle: the article's Snf7 case, no augmentation).
TRAIN = {
    "aggregates": {},
    "subtle": {"augmented": False, "epochs": 30, "epoch_tiles": None, "learning_rate": 0.0003},
}


def config(model, runs):
    datasets, experiments = {}, {}
    for name, demo in DEMO.items():
        for kind in ("fields", "nuclei"):
            dataset = f"{name}_{kind}"
            prepare = {"kind": kind, "nuclei": {"channel": 1, "cell_channel": 0}}
            datasets[dataset] = {"demo": demo, "prepare": prepare, "split": {"folds": 3}}
            experiments[dataset] = {"dataset": dataset, "train": TRAIN[name]}
    return {
        "split": {"seed": 5},
        "train": {"models": [model], "runs": runs, "epochs": 9, "batch_size": 20, "epoch_tiles": 400, "threads": 1},
        "datasets": datasets,
        "experiments": experiments,
        "attribution": {"experiments": []},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deep")
    parser.add_argument("--runs", type=int, default=1, help="seeds per fold")
    parser.add_argument("--folder", help="work folder (default: a temporary one)")
    args = parser.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="crops_vs_grid_"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config(args.model, args.runs)))
    start = time.perf_counter()
    subprocess.run(snakemake_command(folder, "--quiet", "all", "--until", "evaluate"), check=True)
    print(f"workflow: {time.perf_counter() - start:.0f} s in {folder}")
    summary = pd.read_csv(folder / "results/evaluation/summary.tsv", sep="\t")
    rows = summary[(summary["metric"] == "balanced_accuracy") & (summary["test_set"] == summary["dataset"])]
    table = rows[["dataset", "level", "unit", "n_units", "n_runs", "estimate", "ci95_low", "ci95_high"]]
    print(f"balanced accuracy, {args.model}, 3 folds x {args.runs} seed(s), own test sides (every field once):")
    print(table.sort_values(["dataset", "level"]).to_string(index=False, float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()
