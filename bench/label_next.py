"""Which cells to label next: N cells chosen by label-next against N chosen at random (and by uncertainty alone),
each added to a small labelled set, round after round, side by side in one run over several seeds.

On generated data (cellclass.demo.patterns: six nuclear staining patterns, 72 px single cells, the golgi class a
third as common in the pool as the others), through the package's own functions, not the workflow: cells are
prepared as `prepare.kind: cells` does (tiling.tile_sample), and every model is a real cellclass training run
(training.train_run, model `small`, no validation side so each keeps its last epoch). Per seed:

    1. a labelled set of --labelled cells a class and a pool (the rest of the candidates) are drawn;
    2. a model trains on the labelled set;
    3. each round, for each variant, that variant's latest model scores the pool cells it has not yet added (its
       probabilities and penultimate features: the input of the `logits` layer), and N = --add of them are
       chosen (a) at random, (b) by uncertainty (margin between the two likeliest classes), (c) by label-next
       (the workflow's own choice, cellclass.predict.label_next.choose); a model trains on the labelled set and
       every cell the variant has added so far (their true classes, as a user would fill them in), same seed;
    4. each model is scored on the same held-out side (--test cells a class, never in any pool), balanced
       accuracy per cell from its predictions.tsv with scikit-learn.

Rounds are the labelling round trip as it is used: label the sheet, retrain, label the next sheet. The table
gives, per variant and round, the mean and range over seeds and the gain over random paired by seed; the
verdict per round asks that label-next's gain be positive in every seed and its mean larger than random's own
spread between seeds (standard deviation). Five seeds cannot make a paired test's p-value small (a sign test
bottoms out at 1/32), so none is printed.

    python bench/label_next.py [--seeds 5] [--rounds 3] [--labelled 5] [--add 30] [--pool 100] [--test 100]
    python bench/label_next.py --seeds 1 --rounds 1 --pool 20 --test 10 --add 6 --epochs 1   # a check that it runs
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from sklearn.metrics import balanced_accuracy_score

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
from cellclass import config as cc_config  # noqa: E402
from cellclass.demo import patterns  # noqa: E402
from cellclass.io.datasets import Sample  # noqa: E402
from cellclass.io.tilestore import TileSet  # noqa: E402
from cellclass.learn import inference, training  # noqa: E402
from cellclass.predict import label_next as label_next_module  # noqa: E402
from cellclass.prepare import tiling  # noqa: E402

CLASSES = list(patterns.CLASSES)
DATA_SEED = 0  # the generator's seed: the same cells for every bench seed; the seeds draw labelled set and pool


def label_next(probabilities, features, n, *, seed):
    """Indices of `n` pool cells to label next, as the workflow's label_next job picks them
    (cellclass.predict.label_next.choose): the most uncertain fifth by margin, clustered by their penultimate
    features into `n` k-means clusters, the most uncertain cell of each."""
    uncertainty = label_next_module.margin_uncertainty(probabilities)
    chosen, _, _ = label_next_module.choose(uncertainty, features, np.zeros(len(uncertainty), bool), n, seed=seed)
    return chosen


def by_uncertainty(probabilities, n):
    """The `n` cells of smallest margin between their two likeliest classes, with no spreading."""
    return np.argsort(-label_next_module.margin_uncertainty(probabilities), kind="stable")[:n]


def prepared_cells(folder, cls, indices, settings):
    """(indices, tiles) of cells of `cls`, written as 16-bit TIFFs and prepared as the workflow's kind cells."""
    tiles = []
    for index in indices:
        path = folder / cls / f"{patterns.stem(index)}.tif"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(path, patterns.render_cell(cls, seed=DATA_SEED, index=index).image)
        tiles.append(tiling.tile_sample(Sample(f"{cls}/{path.stem}", (str(path),), cls, cls), settings).tiles[0])
    return np.stack(tiles)


def tileset(tiles, cls, name):
    """One TileSet of single-cell tiles of one class (a group of their own)."""
    return TileSet(
        tiles,
        np.full(len(tiles), -1),
        np.arange(len(tiles)),
        {"sample": f"{name}/{cls}", "class": cls, "group": f"{name}/{cls}", "files": [name]},
    )


def train_and_score(train, test, out_dir, options, seed):
    """A cellclass training run on `train` (TileSets); its balanced accuracy per cell on `test` and its model."""
    import keras

    identity = {"experiment": "label_next", "dataset": "patterns", "model": "small", "fold": 0, "seed": seed}
    training.train_run(
        identity=identity,
        classes=CLASSES,
        train=train,
        train_eval=train,
        validation=[],
        test_sets={"held_out": test},
        out_dir=out_dir,
        options=options,
        threads=2,
    )
    scored = pd.read_csv(Path(out_dir) / "predictions.tsv", sep="\t")
    return balanced_accuracy_score(scored["true"], scored["predicted"]), keras.models.load_model(
        Path(out_dir) / "model.keras", compile=False
    )


def pool_view(model, pool_tiles):
    """The model's probabilities of the pool's cells and their penultimate features."""
    import keras

    [probabilities] = list(
        inference.per_image([model], [tileset(pool_tiles, CLASSES[0], "pool")], n_classes=len(CLASSES))
    )
    penultimate = keras.Model(model.inputs, model.get_layer("logits").input)
    return probabilities[0], np.asarray(penultimate.predict(pool_tiles, batch_size=256, verbose=0), np.float64)


def chosen_by(variant, model, pool_tiles, candidates, n, *, seed, round_):
    """Indices into the pool of the `n` cells `variant` adds this round, from the `candidates` not yet added."""
    if variant == "random":
        return candidates[np.random.default_rng([seed, round_, 1]).choice(len(candidates), n, replace=False)]
    probabilities, features = pool_view(model, pool_tiles[candidates])
    if variant == "uncertainty":
        return candidates[by_uncertainty(probabilities, n)]
    return candidates[label_next(probabilities, features, n, seed=seed)]


VARIANTS = ("random", "uncertainty", "label-next")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="labelling rounds of N cells each")
    parser.add_argument("--labelled", type=int, default=5, help="cells a class in the first labelled set")
    parser.add_argument("--add", type=int, default=30, help="N: cells each variant adds a round")
    parser.add_argument("--pool", type=int, default=100, help="candidate cells a class (golgi a third)")
    parser.add_argument("--test", type=int, default=100, help="held-out cells a class")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--epoch-tiles", type=int, default=1024)
    args = parser.parse_args()

    settings = cc_config.validate(
        {
            "prepare": {"kind": "cells", "tile_size": patterns.SIZE, "resize_to": 48},
            "datasets": {"p": {"demo": {"pattern": "aggregates"}}},
        }
    )["datasets"]["p"]["prepare"]
    options = cc_config.validate(
        {
            "train": {
                "models": ["small"],
                "epochs": args.epochs,
                "batch_size": 32,
                "epoch_tiles": args.epoch_tiles,
                "threads": 2,
            },
            "datasets": {"p": {"demo": {"pattern": "aggregates"}}},
        }
    )["experiments"]["p"]["train"]
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench_label_next_"))
    counts = patterns.class_counts(args.pool + args.labelled)
    counts[patterns.RARE_CLASS] = max(counts[patterns.RARE_CLASS], args.labelled + 1)
    # Held out: indices 0..test-1 of every class; candidates (labelled set and pool) after them.
    test = [tileset(prepared_cells(work / "cells", cls, range(args.test), settings), cls, "test") for cls in CLASSES]
    candidates = {
        cls: prepared_cells(work / "cells", cls, range(args.test, args.test + counts[cls]), settings) for cls in CLASSES
    }
    print(
        f"prepared {sum(len(t) for t in test)} held-out and {sum(map(len, candidates.values()))} candidate "
        f"cells in {time.perf_counter() - started:.0f} s ({work})",
        flush=True,
    )

    rows = []
    for seed in range(args.seeds):
        rng = np.random.default_rng([seed, 0])
        labelled_tiles, labelled_classes, pool_tiles, pool_classes = [], [], [], []
        for cls in CLASSES:
            order = rng.permutation(len(candidates[cls]))
            labelled_tiles.append(candidates[cls][order[: args.labelled]])
            labelled_classes += [cls] * args.labelled
            pool_tiles.append(candidates[cls][order[args.labelled :]])
            pool_classes += [cls] * (len(order) - args.labelled)
        labelled_tiles, labelled_classes = np.concatenate(labelled_tiles), np.array(labelled_classes)
        pool_tiles, pool_classes = np.concatenate(pool_tiles), np.array(pool_classes)

        def training_set(added, name):
            tiles = np.concatenate([labelled_tiles, pool_tiles[added]])  # noqa: B023 (called within the loop)
            classes = np.concatenate([labelled_classes, pool_classes[added]])  # noqa: B023 (called within the loop)
            return [tileset(tiles[classes == cls], cls, name) for cls in CLASSES if (classes == cls).any()]

        score, model = train_and_score(training_set([], "labelled"), test, work / f"seed{seed}/labelled", options, seed)
        rows.append(
            {
                "seed": seed,
                "variant": "labelled only",
                "round": 0,
                "cells": len(labelled_tiles),
                "balanced_accuracy": score,
            }
        )
        state = {variant: (np.empty(0, int), model) for variant in VARIANTS}
        for round_ in range(1, args.rounds + 1):
            for variant in VARIANTS:
                added, model = state[variant]
                new = chosen_by(
                    variant,
                    model,
                    pool_tiles,
                    np.setdiff1d(np.arange(len(pool_tiles)), added),
                    args.add,
                    seed=seed,
                    round_=round_,
                )
                added = np.concatenate([added, new])
                score, model = train_and_score(
                    training_set(added, variant), test, work / f"seed{seed}/{variant}{round_}", options, seed
                )
                state[variant] = (added, model)
                rows.append(
                    {
                        "seed": seed,
                        "variant": variant,
                        "round": round_,
                        "cells": len(labelled_tiles) + len(added),
                        "balanced_accuracy": score,
                        "classes_added": len(set(pool_classes[new])),
                        "golgi_added": int((pool_classes[new] == patterns.RARE_CLASS).sum()),
                    }
                )
            print(pd.DataFrame(rows[-len(VARIANTS) :]).to_string(index=False), flush=True)

    table = pd.DataFrame(rows)
    random = table[table["variant"] == "random"].set_index(["seed", "round"])["balanced_accuracy"]
    summary = []
    for (round_, variant), runs in table.groupby(["round", "variant"], sort=False):
        score = runs.set_index(["seed", "round"])["balanced_accuracy"]
        gain = score - random.reindex(score.index)
        summary.append(
            {
                "round": round_,
                "variant": variant,
                "labelled cells": runs["cells"].iloc[0],
                "balanced accuracy per cell (mean)": score.mean(),
                "range over seeds": f"{score.min():.3f}-{score.max():.3f}",
                "minus random (mean)": gain.mean(),
                "minus random (range)": f"{gain.min():+.3f} to {gain.max():+.3f}" if gain.notna().any() else "",
                "golgi added (mean)": runs.get("golgi_added", pd.Series(dtype=float)).mean(),
            }
        )
    print(
        f"\n{args.seeds} seed(s); held-out side: {len(test) * args.test} cells ({args.test} a class); pool "
        f"{len(pool_tiles)} cells; N = {args.add} a round; chance 1/6"
    )
    print(pd.DataFrame(summary).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for round_ in range(1, args.rounds + 1):
        ours = table[(table["variant"] == "label-next") & (table["round"] == round_)].set_index(["seed", "round"])
        gain = ours["balanced_accuracy"] - random.reindex(ours.index)
        noise = random.xs(round_, level="round").std(ddof=1) if args.seeds > 1 else float("nan")
        met = bool((gain > 0).all() and gain.mean() > noise)
        print(
            f"round {round_}: label-next minus random {gain.mean():+.3f} (per seed "
            f"{', '.join(f'{g:+.3f}' for g in gain)}); random's standard deviation over seeds {noise:.3f}; "
            f"target (gain positive in every seed and its mean above that) {'met' if met else 'NOT met'}"
        )
    print(f"wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
