"""When prediction abstains: images recorded unlike the training images, and cells of other kinds, through the workflow.

Two experiments are trained on the demo's `aggregates` fields as the default config trains them (deep, 3 folds):
per tile (a grid of 64-px tiles) and per cell (one crop per segmented nucleus). Their ensembles then predict
new fields of the training kind, the same fields recorded differently (cellclass.demo.shifts: magnification
x0.5 and x2, the stain 5x weaker before normalisation, blur of 2 and 4 px, 5% of pixels saturated, one stain
in both channels), fields of another cell density, and other textures (`subtle` cells, stripes, camera noise).

Table 1, per set: the share of images flagged at the image level (their quality measures against the training
images', cellclass.prepare.qc) and the measures named; the share of tiles and of cells that abstain as unlike
the training data in the network's features (abstain.image_shift is off here, so the two checks are measured
apart); and the share of images whose abstained tiles pass 25% and 50% (abstain.max_share's candidates).
Table 2: the max-probability baseline against our novelty score at an equal false-abstention rate on the
training kind (Hendrycks and Gimpel's baseline). Table 3: the image-level check alone on more fields (10 per
class and set by default; no network needed). Last: quality measurement's wall time per image against tiling
without it, alternating the two on the same fields, median and range of 3 rounds.

    python bench/abstain.py [--fields 2] [--quality-fields 10] [--folder DIR] [--cost-only]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
from cellclass.demo import shifts, synthetic  # noqa: E402
from cellclass.predict.abstention import UNLIKE  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))
from conftest import snakemake_command  # noqa: E402

DEMO = {"pattern": "aggregates", "fields_per_class": 6, "seed": 1, "cells_per_field": 100}
NEW_SEED = 4
DENSITIES = {"density_30_cells": 30, "density_250_cells": 250}
SETS = ("same", *shifts.SHIFTS, *DENSITIES, "subtle", "stripes", "noise")
EXPERIMENTS = {"tiles": "aggregates", "cells": "aggregates_cells"}


def write_sets(folder, fields):
    """Each set's fields as TIFFs and a sheet per set (path column): results are named <set>_<experiment>."""
    paths = {name: [] for name in SETS}
    for cls in synthetic.CLASSES:
        for index in range(fields):
            stem = f"{cls}_{index}"
            base = synthetic.render_field("aggregates", cls, seed=NEW_SEED, index=index, cells_per_field=100).image
            images = {"same": base, **{k: shifts.shift(base, k, seed=index) for k in shifts.SHIFTS}}
            for name, cells in DENSITIES.items():
                images[name] = synthetic.render_field(
                    "aggregates", cls, seed=NEW_SEED, index=index, cells_per_field=cells
                ).image
            images["subtle"] = synthetic.render_field(
                "subtle", cls, seed=NEW_SEED, index=index, cells_per_field=100
            ).image
            for name, image in images.items():
                paths[name].append(write(folder / f"data/{name}/{stem}.tif", image))
    for kind in synthetic.UNFAMILIAR:
        for seed in range(2 * fields):
            path = folder / f"data/{kind}/{kind}_{seed}.tif"
            if not path.exists():
                synthetic.write_unfamiliar(path, kind, seed=seed)
            paths[kind].append(path)
    for name, files in paths.items():
        pd.DataFrame({"path": [str(p.relative_to(folder / "data")) for p in files]}).to_csv(
            folder / f"data/{name}.tsv", sep="\t", index=False
        )


def write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tifffile.imwrite(path, image, imagej=True, metadata={"axes": "CYX"})
    return path


def config():
    predict = {
        f"{name}_{kind}": {
            "sheet": f"data/{name}.tsv",
            "experiment": experiment,
            "overlays": 0,
            "abstain": {"image_shift": False, "max_share": None},
        }
        for name in SETS
        for kind, experiment in EXPERIMENTS.items()
    }
    return {
        "augment": {"dihedral": True},
        "train": {"models": ["deep"], "runs": 1, "threads": 1, "budget": {"tile_steps": 2400}},
        "datasets": {
            "aggregates": {"demo": DEMO, "split": {"folds": 3}},
            "aggregates_cells": {
                "demo": DEMO,
                "split": {"folds": 3},
                "prepare": {"kind": "nuclei", "nuclei": {"channel": 1, "cell_channel": 0}},
            },
        },
        "experiments": {name: {"dataset": name} for name in EXPERIMENTS.values()},
        "attribution": {"experiments": []},
        "predict": predict,
    }


def shift_table(folder):
    rows = []
    for name in SETS:
        quality = pd.read_parquet(folder / f"results/predict/{name}_tiles/qc.parquet")
        flagged = quality["unlike"] != ""
        named = quality.loc[flagged, "unlike"].str.split("; ").explode().str.extract(r"^(.*?) (?:high|low)")[0]
        row = {
            "set": name,
            "images": len(quality),
            "flagged": flagged.mean(),
            "measures_named": ", ".join(named.value_counts().index[:2]) if flagged.any() else "",
        }
        for kind in EXPERIMENTS:
            images = pd.read_csv(folder / f"results/predict/{name}_{kind}/images.tsv", sep="\t")
            tiles = images["tiles"].sum()
            row[f"{kind}_abstained"] = images["unlike_training"].sum() / tiles if tiles else np.nan
            if kind == "tiles":
                share = images["unlike_training"] / images["tiles"].where(images["tiles"] > 0)
                row["images_over_25pct"] = (share > 0.25).mean()
                row["images_over_50pct"] = (share > 0.5).mean()
        rows.append(row)
    return pd.DataFrame(rows)


def baseline_table(folder):
    """Our novelty score against the max-probability baseline at an equal false-abstention rate, per tile."""
    tables = {
        name: pd.read_parquet(folder / f"results/predict/{name}_tiles/tiles.parquet")
        for name in ("same", "subtle", "stripes", "noise")
    }
    p = [c for c in tables["same"].columns if c.startswith("p_")]
    ours_same = (tables["same"]["abstain"] == UNLIKE).mean()
    threshold = np.quantile(tables["same"][p].max(axis=1), ours_same) if ours_same > 0 else 0.0
    rows = []
    for name, tiles in tables.items():
        ours = (tiles["abstain"] == UNLIKE).mean() if len(tiles) else np.nan
        baseline = (tiles[p].max(axis=1) < threshold).mean() if len(tiles) else np.nan
        rows.append(
            {
                "set": name,
                "tiles": len(tiles),
                "abstained_ours": ours,
                "flagged_max_probability": baseline,
                "ratio": ours / baseline if baseline else np.inf,
            }
        )
    print(f"max-probability threshold {threshold:.4f} (flags {ours_same:.1%} of same-kind tiles, as ours does)")
    return pd.DataFrame(rows)


def tiled_quality(folder, name, image, settings):
    """The QC row of one field, as the tile job measures it (cellclass.prepare.tiling)."""
    from cellclass.io.datasets import Sample
    from cellclass.prepare import tiling

    path = write(folder / f"{name}.tif", image)
    meta = tiling.tile_sample(Sample(name, (str(path),), "x", name), settings).meta
    return {"image": name, **meta["qc"]["values"]}


def quality_rates(fields):
    """The image-level check alone, on more fields than the workflow run predicts: the training dataset's 12
    fields as the reference, `fields` new fields per class of the training kind and of every shift."""
    from cellclass import config as cc_config
    from cellclass.prepare import qc

    folder = Path(tempfile.mkdtemp(prefix="cellclass-qc-rates-"))
    settings = cc_config.validate({"datasets": {"d": {"path": str(folder)}}}, folder)["datasets"]["d"]["prepare"]
    render = synthetic.render_field
    training = pd.DataFrame(
        [
            tiled_quality(
                folder,
                f"train_{cls}_{i}",
                render("aggregates", cls, seed=1, index=i, cells_per_field=100).image,
                settings,
            )
            for cls in synthetic.CLASSES
            for i in range(6)
        ]
    )
    reference = qc.Reference(training)
    rows = {name: [] for name in ("same", *shifts.SHIFTS, *DENSITIES)}
    for cls in synthetic.CLASSES:
        for index in range(fields):
            base = render("aggregates", cls, seed=NEW_SEED + 10, index=index, cells_per_field=100).image
            images = {
                "same": base,
                **{k: shifts.shift(base, k, seed=index) for k in shifts.SHIFTS},
                **{
                    k: render("aggregates", cls, seed=NEW_SEED + 10, index=index, cells_per_field=n).image
                    for k, n in DENSITIES.items()
                },
            }
            for name, image in images.items():
                rows[name].append(tiled_quality(folder, f"{name}_{cls}_{index}", image, settings))
    return pd.DataFrame(
        [
            {
                "set": name,
                "images": len(found),
                "flagged": (reference.judge(pd.DataFrame(found))["unlike"] != "").mean(),
            }
            for name, found in rows.items()
        ]
    )


def quality_cost(rounds=3, fields=4):
    """Seconds per image of tiling (read, normalise, foreground, cut) without quality measures, and of the
    measures alone, alternated on the same demo fields."""
    from cellclass import config as cc_config
    from cellclass.io.datasets import Sample
    from cellclass.prepare import qc, tiling

    folder = Path(tempfile.mkdtemp(prefix="cellclass-qc-cost-"))
    files = [
        write(
            folder / f"f{i}.tif",
            synthetic.render_field("aggregates", "control", seed=1, index=i, cells_per_field=100).image,
        )
        for i in range(fields)
    ]
    settings = cc_config.validate({"datasets": {"d": {"path": str(folder)}}}, folder)["datasets"]["d"]["prepare"]
    samples = [Sample(f"f{i}", (str(f),), "x", f"f{i}") for i, f in enumerate(files)]
    measure, timings = qc.measure, {"tiling": [], "quality": []}
    for _ in range(rounds):
        qc.measure = lambda *a, **k: ({}, "")  # tiling alone
        start = time.perf_counter()
        for sample in samples:
            tiling.tile_sample(sample, settings)
        timings["tiling"].append((time.perf_counter() - start) / fields)
        qc.measure = measure
        start = time.perf_counter()
        for sample in samples:
            field, raw = tiling.load_field(sample, settings)
            tiling.quality(raw, np.ones(field.shape[:2], bool))
        read = time.perf_counter() - start
        start = time.perf_counter()
        for sample in samples:
            tiling.load_field(sample, settings)
        timings["quality"].append((read - (time.perf_counter() - start)) / fields)
    return {k: (np.median(v), min(v), max(v)) for k, v in timings.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fields", type=int, default=2, help="new fields per class and set")
    parser.add_argument("--folder", type=Path, help="work here (kept) instead of a temporary folder")
    parser.add_argument("--cost-only", action="store_true", help="only time quality measurement against tiling")
    parser.add_argument(
        "--quality-fields",
        type=int,
        default=10,
        help="new fields per class and set for the image-level check alone (0: skip)",
    )
    args = parser.parse_args()
    if not args.cost_only:
        folder = args.folder or Path(tempfile.mkdtemp(prefix="cellclass-abstain-"))
        folder.mkdir(parents=True, exist_ok=True)
        write_sets(folder, args.fields)
        (folder / "config.yaml").write_text(yaml.safe_dump(config()))
        done = subprocess.run(snakemake_command(folder, "all", "predict"), capture_output=True, text=True)
        if done.returncode:
            sys.exit(done.stderr[-3000:])
        fmt = {"float_format": lambda v: f"{v:.3f}", "index": False}
        print("per set: images flagged by quality (image level), tiles and cells abstained as unlike (features)")
        print(shift_table(folder).to_string(**fmt))
        print(baseline_table(folder).to_string(**fmt))
        print(f"results in {folder}")
    if args.quality_fields and not args.cost_only:
        print(f"image-level check alone, {2 * args.quality_fields} new fields per set against the 12 training fields:")
        print(quality_rates(args.quality_fields).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    cost = quality_cost()
    (tiling, t_low, t_high), (quality, q_low, q_high) = cost["tiling"], cost["quality"]
    print(
        f"per 1024x1024 2-channel field: tiling {tiling * 1000:.0f} ms ({t_low * 1000:.0f}-{t_high * 1000:.0f}), "
        f"quality measures {quality * 1000:.0f} ms ({q_low * 1000:.0f}-{q_high * 1000:.0f}); "
        f"ratio {quality / tiling:.2f}x (target at most 0.2x)"
    )


if __name__ == "__main__":
    main()
