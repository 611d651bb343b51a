"""When prediction abstains: cells of the kind trained on against cells of other kinds, through the workflow.

An experiment is trained on the demo's `aggregates` fields as the default config trains it (deep, 3 folds);
its ensemble then predicts four sets of new fields: the same pattern from a new seed, the `subtle` pattern
(other textures of the same cells), striped fields and empty fields of camera noise (cellclass.demo.synthetic
render_unfamiliar). Per set the table gives the cells (tiles) scored, the share that abstained as unlike the
training data (ours: distance to the nearest class in the network's features, threshold at the validation
side's 99th percentile) and, side by side, the share a baseline flags: the maximum softmax probability below
a threshold set so that it flags as many cells of the same kind as ours does (Hendrycks and Gimpel's
baseline, at an equal false-abstention rate). Images without a foreground tile are counted as such: nothing
is called on them either.

    python bench/abstain.py [--fields 2] [--folder DIR]
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
from cellclass.demo import synthetic  # noqa: E402
from cellclass.predict.calls import UNLIKE  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))
from conftest import snakemake_command  # noqa: E402

SETS = ("same", "subtle", "stripes", "noise")


def config(fields):
    new = {"fields_per_class": fields, "seed": 4, "cells_per_field": 100}
    return {
        "split": {"seed": 5},
        "augment": {"dihedral": True},
        "train": {"models": ["deep"], "runs": 1, "threads": 1, "epoch_tiles": 400},
        "datasets": {"aggregates": {"demo": {"pattern": "aggregates", "fields_per_class": 6, "seed": 1,
                                             "cells_per_field": 100}, "split": {"folds": 3}}},
        "attribution": {"experiments": []},
        "predict": {
            "same": {"demo": {"pattern": "aggregates", **new}, "experiment": "aggregates"},
            "subtle": {"demo": {"pattern": "subtle", **new}, "experiment": "aggregates"},
            "stripes": {"path": "data/stripes", "experiment": "aggregates"},
            "noise": {"path": "data/noise", "experiment": "aggregates"},
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fields", type=int, default=2, help="new fields per class and kind")
    parser.add_argument("--folder", type=Path, help="work here (kept) instead of a temporary folder")
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="cellclass-abstain-"))
    folder.mkdir(parents=True, exist_ok=True)
    for kind in synthetic.UNFAMILIAR:
        for seed in range(2 * args.fields):
            path = folder / f"data/{kind}/{kind}_{seed}.tif"
            if not path.exists():
                synthetic.write_unfamiliar(path, kind, seed=seed)
    (folder / "config.yaml").write_text(yaml.safe_dump(config(args.fields)))
    done = subprocess.run(snakemake_command(folder, "all", "predict"), capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    tables = {name: pd.read_parquet(folder / f"results/predict/{name}/tiles.parquet") for name in SETS}
    images = {name: pd.read_csv(folder / f"results/predict/{name}/images.tsv", sep="\t") for name in SETS}
    p = [c for c in tables["same"].columns if c.startswith("p_")]
    ours_same = (tables["same"]["abstain"] == UNLIKE).mean()
    # The baseline's threshold: the max-probability quantile that flags as many same-kind cells as ours.
    threshold = np.quantile(tables["same"][p].max(axis=1), ours_same) if ours_same > 0 else 0.0
    rows = []
    for name in SETS:
        tiles = tables[name]
        ours = (tiles["abstain"] == UNLIKE).mean() if len(tiles) else np.nan
        baseline = (tiles[p].max(axis=1) < threshold).mean() if len(tiles) else np.nan
        rows.append({"set": name, "images": len(images[name]), "without_cells": int((images[name]["tiles"] == 0).sum()),
                     "cells": len(tiles), "abstained_ours": ours, "flagged_max_probability": baseline,
                     "ratio": ours / baseline if baseline else np.inf,
                     "median_novelty": tiles["novelty"].median() if len(tiles) else np.nan})
    print(f"max-probability baseline threshold {threshold:.4f} (flags {ours_same:.1%} of same-kind cells, as ours)")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"results in {folder}")


if __name__ == "__main__":
    main()
