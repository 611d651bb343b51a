"""Explain one trained run: attribution maps of its test tiles, and whether they sit on the aggregates.

For a balanced, seeded choice of the run's own test tiles, every configured
method explains the trained model and a copy with re-initialised weights (the
sanity check: a map that survives randomisation does not explain the model).
Each map is scored by its enrichment in each configured mask: the demo's
ground-truth puncta, a white top-hat of the protein channel (puncta), or the
crop's own nucleus, cytoplasm or cell (single-cell crops).
"""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from skimage.transform import resize

from cellclass.evaluate.runs import run_name
from cellclass.explain import enrichment
from cellclass.io import tilestore
from cellclass.io.atomic import atomic_path
from cellclass.io.errors import InputError
from cellclass.learn.pipeline import select_channels
from cellclass.learn.runtime import configure_tensorflow
from cellclass.learn.training import on_side
from cellclass.prepare import crops, split

log = logging.getLogger(__name__)

STATES = ("trained", "randomised")


def test_side(record, tile_files, manifest):
    """The run's own test tiles (tile, true class) in the order its scoring lists them, from the split and the
    tiles alone: what attribution explains does not depend on how the run was scored (evaluation.tta)."""
    sides = split.sides_in_fold(manifest, int(record["fold"]))
    tilesets = on_side(tilestore.load_all(tile_files, tiles=False), sides, "test")
    return pd.DataFrame([{"tile": tile, "true": t.meta["class"]} for t in tilesets for tile in t.tile_ids()])


def choose_tiles(own, per_class, seed):
    """Up to `per_class` tiles of each true class of the run's test tiles `own`, seeded."""
    chosen = [
        group.sample(n=min(per_class, len(group)), random_state=seed).sort_values("tile")
        for _, group in own.groupby("true", sort=True)
    ]
    return pd.concat(chosen, ignore_index=True)


# What each mask is called in tables and sentences.
MASK_WORDS = {
    "ground_truth": "ground-truth puncta",
    "puncta": "top-hat puncta",
    "nucleus": "nucleus",
    "cytoplasm": "cytoplasm",
    "cell": "cell",
}


def tile_mask(name, tileset, i, tile, truth, puncta):
    """The mask `name` of tile i of a TileSet, at the tile's resolution (bool (H, W))."""
    sample = tileset.meta["sample"]
    if name == "puncta":
        return enrichment.puncta_mask(tile[..., 0], radius=puncta["radius"], threshold=puncta["threshold"])
    if name == "ground_truth":
        if truth is None:
            raise InputError(f"{sample}: no ground-truth puncta mask; the ground_truth mask needs the demo's masks")
        size = tileset.meta["settings"]["tile_size"]
        crop = enrichment.tile_masks(truth, tileset.rows[i : i + 1], tileset.cols[i : i + 1], size)[0]
        return resize(crop, tile.shape[:2], order=0, preserve_range=True, anti_aliasing=False).astype(bool)
    if "compartments" not in tileset.extra:
        raise InputError(f"{sample}: the {name} mask needs single-cell crops (prepare.kind: nuclei)")
    if name not in tileset.meta["compartments"]:
        raise InputError(
            f"{sample}: the {name} mask needs cells as well as nuclei: set prepare.nuclei.cell_channel, "
            "or give a cell_labels column"
        )
    return crops.compartment_mask(tileset.extra["compartments"][i], name)


def load_chosen(chosen, tile_files, mask_names, puncta, mask_files):
    """Tiles, their masks (name -> (n, H, W) bool, at tile resolution) and ids, in id order.

    `mask_files` maps a sample id to its ground-truth puncta mask (the demo's), which the
    ground_truth mask needs; the others come from the tile itself (puncta: a white top-hat of
    the protein channel) or from its crop's compartments (nucleus, cytoplasm, cell).
    """
    wanted = set(chosen["tile"])
    tiles, ids, masks = [], [], {name: [] for name in mask_names}
    for tileset in tilestore.load_all(tile_files):
        keep = [i for i, tid in enumerate(tileset.tile_ids()) if tid in wanted]
        if not keep:
            continue
        mask_file = mask_files.get(tileset.meta["sample"])
        truth = tifffile.imread(mask_file) > 0 if mask_file else None
        for i in keep:
            tile = tileset.tiles[i].astype(np.float32)
            for name in mask_names:
                masks[name].append(tile_mask(name, tileset, i, tile, truth, puncta))
            tiles.append(tile)
            ids.append(tileset.tile_ids()[i])
    order = np.argsort(ids)
    return np.stack(tiles)[order], {k: np.stack(v)[order] for k, v in masks.items()}, [ids[i] for i in order]


def explain_run(
    *,
    record_path,
    model_path,
    manifest,
    tile_files,
    mask_names,
    mask_files,
    settings,
    maps_path,
    scores_path,
    threads=1,
):
    """Maps and enrichment scores in each of `mask_names` for one run, on its own test side; writes maps (.npz)
    and a tidy score table (.tsv).

    The run's identity, classes and channels come from its training record (training.json).
    """
    import keras

    from cellclass.explain import attribution

    identity = json.loads(Path(record_path).read_text())
    classes, channels, seed = identity["classes"], identity["channels"], int(identity["seed"])
    configure_tensorflow(threads=threads, seed=seed, deterministic=True)
    chosen = choose_tiles(test_side(identity, tile_files, manifest), settings["tiles_per_class"], seed)
    tiles, masks, ids = load_chosen(chosen, tile_files, mask_names, settings["puncta"], mask_files)
    truth = chosen.set_index("tile").loc[ids, "true"]
    targets = np.array([classes.index(c) for c in truth])
    inputs = select_channels(tiles, channels)
    trained = keras.models.load_model(model_path, compile=False)
    models = {"trained": trained, "randomised": attribution.randomised_copy(trained, seed)}
    arrays, rows = {}, []
    for state, model in models.items():
        for method in settings["methods"]:
            maps = attribution.attribute(
                model, inputs, targets, method, options=settings["options"].get(method), layer=None
            )
            arrays[f"{state}/{method}"] = maps.astype(np.float16)
            for name, mask in masks.items():
                rows.append(
                    pd.DataFrame(
                        {
                            "experiment": identity["experiment"],
                            "model": identity["model"],
                            "fold": int(identity["fold"]),
                            "seed": seed,
                            "tile": ids,
                            "true": truth.to_numpy(),
                            "method": method,
                            "model_state": state,
                            "mask": MASK_WORDS[name],
                            "mask_share": mask.mean(axis=(1, 2)),
                            "enrichment": enrichment.enrichment(maps, mask),
                        }
                    )
                )
                found = rows[-1]["enrichment"]
                log.info(
                    "%s %s, %s: median enrichment %.2f",
                    state,
                    method,
                    MASK_WORDS[name],
                    np.nanmedian(found) if found.notna().any() else float("nan"),
                )
    with atomic_path(maps_path) as tmp:
        np.savez(
            tmp,
            tiles=tiles.astype(np.float16),
            **{f"mask/{k}": v for k, v in masks.items()},
            tile_ids=np.array(ids),
            true=truth.to_numpy().astype(str),
            **arrays,
        )
    with atomic_path(scores_path) as tmp:
        pd.concat(rows, ignore_index=True).to_csv(tmp, sep="\t", index=False)


def summarise(scores):
    """Per (experiment, model, fold, seed, method, state, mask): median enrichment over the tiles it is defined on.

    `tiles` counts them; 0 means every map was empty (a network whose score ignores its input).
    """
    keys = ["experiment", "model", "fold", "seed", "method", "model_state", "mask"]
    table = scores.groupby(keys, sort=True).agg(enrichment=("enrichment", "median"), tiles=("enrichment", "count"))
    return table.reset_index()


# A trained map "looks at" the mask when its median enrichment clears both
# no preference (1) and the randomised network's by this factor.
CLEAR = 1.25


def unreliable_runs(runs_table):
    """{(experiment, model, fold, seed)} of runs that collapsed, are no better than chance or gave many tiles one
    constant output on their own test side."""
    own = runs_table[(runs_table["level"] == "tile") & (runs_table["test_set"] == runs_table["dataset"])]
    constant = own["constant_output"].astype(bool) if "constant_output" in own else False
    bad = own[own["collapsed"].astype(bool) | own["at_chance"].astype(bool) | constant]
    return {(e, m, int(f), int(s)) for e, m, f, s in zip(bad["experiment"], bad["model"], bad["fold"], bad["seed"])}


def sentences(summary, unreliable=frozenset()):
    """One plain-English line per (experiment, model, method, mask): trained vs randomised network, across runs.

    No claim is made from runs that collapsed, score at chance or give a constant output, nor when the runs
    (seeds, and folds under cross-validation) disagree more than the effect (their
    spread exceeds the median's distance from 1).
    """
    lines = []
    for (experiment, model, method, mask), group in summary.groupby(
        ["experiment", "model", "method", "mask"], sort=False
    ):
        name = f"{experiment}/{model}, {method.replace('_', ' ')}, {mask} mask"
        folds = int(group["fold"].max()) + 1
        run = list(zip(group["fold"].astype(int), group["seed"].astype(int)))
        bad = [(experiment, model, f, s) in unreliable for f, s in run]
        dropped = sorted({r for r, b in zip(run, bad) if b})
        group = group[[not b for b in bad]]
        named = ", ".join(run_name(f, s, folds > 1) for f, s in dropped)
        skipped = f"; {named} left out: collapsed, at chance or constant output" if dropped else ""
        runs_word = "runs" if folds > 1 else "seeds"
        trained = group.loc[group["model_state"] == "trained", "enrichment"]
        randomised = group.loc[group["model_state"] == "randomised", "enrichment"].median()
        if group.empty:
            lines.append(
                f"{name}: no claim — every run collapsed, scores at chance or gives a constant output{skipped}."
            )
            continue
        if trained.isna().all():
            lines.append(
                f"{name}: the trained network's maps are empty (its score does not change with the input: it "
                f"predicts one class for everything){skipped}."
            )
            continue
        median, low, high, n = trained.median(), trained.min(), trained.max(), int(trained.notna().sum())
        spread = f"range {low:.2f}–{high:.2f} over {n} {runs_word}" if n > 1 else f"1 {runs_word[:-1]}"
        if n > 1 and high - low > abs(median - 1):
            verdict = f"the {runs_word} disagree more than the effect, so no consistent claim is made"
        elif median >= CLEAR and median >= CLEAR * randomised:
            verdict = f"the network looks at the {mask}"
        else:
            verdict = f"the network shows no clear preference for the {mask}"
        lines.append(
            f"{name}: attribution is {median:.2f}× enriched in the {mask} (median; {spread}; randomised network "
            f"{randomised:.2f}×): {verdict}{skipped}."
        )
    return lines


def write_summary(*, score_files, runs_table, table_path, findings_path, figure_paths):
    """Enrichment per run and method (tidy TSV), the enrichment figure and a findings page."""
    from cellclass.explain import overlays
    from cellclass.templates import render

    scores = pd.concat([pd.read_csv(p, sep="\t", dtype={"tile": str}) for p in score_files], ignore_index=True)
    summary = summarise(scores)
    with atomic_path(table_path) as tmp:
        summary.to_csv(tmp, sep="\t", index=False)
    overlays.enrichment_plot(str(Path(figure_paths[0]).with_suffix("")), summary)
    runs = pd.read_csv(runs_table, sep="\t")
    page = render("explain.html", title="What the networks look at", lines=sentences(summary, unreliable_runs(runs)))
    with atomic_path(findings_path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return summary


def overlay(*, maps_path, method, classes, per_class, title, path_stem):
    """The overlay grid of one method: `per_class` tiles of each class, trained network's maps."""
    from cellclass.explain import overlays

    with np.load(maps_path, allow_pickle=False) as data:
        true = data["true"]
        picked = np.concatenate([np.flatnonzero(true == c)[:per_class] for c in classes])
        tiles, maps = data["tiles"][picked], data[f"trained/{method}"][picked]
    overlays.overlay_grid(path_stem, tiles, maps, [str(t) for t in true[picked]], class_names=classes, title=title)
