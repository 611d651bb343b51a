"""Explain one trained run: attribution maps of its test tiles, and whether they sit on the aggregates.

For a balanced, seeded choice of the run's own test tiles, every configured
method explains the trained model and a copy with re-initialised weights (the
sanity check: a map that survives randomisation does not explain the model).
Each map is scored by its enrichment in a puncta mask: the ground truth where
the demo wrote one, otherwise a white top-hat of the protein channel.
"""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from skimage.transform import resize

from cellclass import enrichment, tilestore
from cellclass.atomic import atomic_path
from cellclass.pipeline import select_channels

log = logging.getLogger(__name__)

STATES = ("trained", "randomised")


def choose_tiles(predictions, test_set, per_class, seed):
    """Up to `per_class` tiles of each true class from the run's predictions on `test_set`, seeded."""
    own = predictions[predictions["test_set"] == test_set]
    chosen = [
        group.sample(n=min(per_class, len(group)), random_state=seed).sort_values("tile")
        for _, group in own.groupby("true", sort=True)
    ]
    return pd.concat(chosen, ignore_index=True)


def ground_truth_mask(files):
    """The demo's puncta mask beside a demo image (…/images/<class>/<field>.tif → …/masks/…), or None."""
    image = Path(files[0])
    if image.parent.parent.name != "images":
        return None
    mask = image.parent.parent.parent / "masks" / image.parent.name / image.name
    return tifffile.imread(mask) > 0 if mask.is_file() else None


def load_chosen(chosen, tile_files, puncta):
    """Tiles, their puncta masks (at tile resolution) and which kind of mask each is."""
    wanted = set(chosen["tile"])
    tiles, masks, ids, sources = [], [], [], []
    for path in tile_files:
        tileset = tilestore.load(path)
        keep = [i for i, tid in enumerate(tileset.tile_ids()) if tid in wanted]
        if not keep:
            continue
        size = tileset.meta["settings"]["tile_size"]
        truth = ground_truth_mask(tileset.meta["files"])
        for i in keep:
            tile = tileset.tiles[i].astype(np.float32)
            if truth is not None and tileset.rows[i] >= 0:
                crop = enrichment.tile_masks(truth, tileset.rows[i : i + 1], tileset.cols[i : i + 1], size)[0]
                mask = resize(crop, tile.shape[:2], order=0, preserve_range=True, anti_aliasing=False).astype(bool)
                sources.append("ground truth")
            else:
                mask = enrichment.puncta_mask(tile[..., 0], radius=puncta["radius"], threshold=puncta["threshold"])
                sources.append(f"white top-hat (radius {puncta['radius']}, {puncta['threshold']})")
            tiles.append(tile)
            masks.append(mask)
            ids.append(tileset.tile_ids()[i])
    order = np.argsort(ids)
    return np.stack(tiles)[order], np.stack(masks)[order], [ids[i] for i in order], [sources[i] for i in order]


def explain_run(*, model_path, predictions_path, tile_files, test_set, classes, channels, seed, settings, maps_path, scores_path):
    """Maps and enrichment scores for one run; writes maps (.npz) and a tidy score table (.tsv)."""
    import keras

    from cellclass import attribution

    predictions = pd.read_csv(predictions_path, sep="\t", dtype={"tile": str})
    chosen = choose_tiles(predictions, test_set, settings["tiles_per_class"], seed)
    tiles, masks, ids, sources = load_chosen(chosen, tile_files, settings["puncta"])
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
            rows.append(
                pd.DataFrame(
                    {
                        "tile": ids,
                        "true": truth.to_numpy(),
                        "method": method,
                        "model_state": state,
                        "mask": sources,
                        "mask_share": masks.mean(axis=(1, 2)),
                        "enrichment": enrichment.enrichment(maps, masks),
                    }
                )
            )
            log.info("%s %s: median enrichment %.2f", state, method, np.nanmedian(rows[-1]["enrichment"]) if rows[-1]["enrichment"].notna().any() else float("nan"))
    with atomic_path(maps_path) as tmp:
        np.savez(tmp, tiles=tiles.astype(np.float16), masks=masks, tile_ids=np.array(ids), true=truth.to_numpy().astype(str), **arrays)
    with atomic_path(scores_path) as tmp:
        pd.concat(rows, ignore_index=True).to_csv(tmp, sep="\t", index=False)


def summarise(scores):
    """Per (experiment, model, seed, method, state): median enrichment over the tiles it is defined on.

    `tiles` counts them; 0 means every map was empty (a network whose score ignores its input).
    """
    keys = ["experiment", "model", "seed", "method", "model_state"]
    table = scores.groupby(keys, sort=True).agg(
        enrichment=("enrichment", "median"), tiles=("enrichment", "count"), mask=("mask", "first")
    )
    return table.reset_index()


# A trained map "looks at the aggregates" when its median enrichment clears both
# no preference (1) and the randomised network's by this factor.
CLEAR = 1.25


def sentences(summary):
    """One plain-English line per (experiment, model, method) comparing trained and randomised networks."""
    lines = []
    for (experiment, model, method), group in summary.groupby(["experiment", "model", "method"], sort=False):
        medians = group.groupby("model_state")["enrichment"].median()
        trained, randomised = medians.get("trained", np.nan), medians.get("randomised", np.nan)
        seeds = group["seed"].nunique()
        if np.isnan(trained):
            lines.append(
                f"{experiment}/{model}, {method.replace('_', ' ')}: the trained network's maps are empty "
                "(its score does not change with the input: it predicts one class for everything)."
            )
            continue
        looks = trained >= CLEAR and trained >= CLEAR * randomised
        verdict = "looks at the aggregates" if looks else "shows no clear preference for the aggregates"
        lines.append(
            f"{experiment}/{model}, {method.replace('_', ' ')}: attribution is {trained:.2f}× enriched in the puncta "
            f"(median of {seeds} seed(s); randomised network {randomised:.2f}×): the network {verdict} "
            f"({group['mask'].iloc[0]} masks)."
        )
    return lines


def _run_key(run_dir):
    """(experiment, model, seed) from 'results/train/<experiment>/<model>/seed<k>'."""
    experiment, model, seed = Path(run_dir).parts[-3:]
    return experiment, model, int(seed.removeprefix("seed"))


def write_summary(*, score_files, run_dirs, table_path, findings_path, figure_paths):
    """Enrichment per run and method (tidy TSV), the enrichment figure and a findings page."""
    import html

    from cellclass import overlays

    tables = []
    for path, run in zip(score_files, run_dirs):
        experiment, model, seed = _run_key(run)
        scores = pd.read_csv(path, sep="\t", dtype={"tile": str})
        tables.append(scores.assign(experiment=experiment, model=model, seed=seed))
    summary = summarise(pd.concat(tables, ignore_index=True))
    with atomic_path(table_path) as tmp:
        summary.to_csv(tmp, sep="\t", index=False)
    overlays.enrichment_plot(str(Path(figure_paths[0]).with_suffix("")), summary)
    items = "\n".join(f"<li>{html.escape(line)}</li>" for line in sentences(summary))
    page = (
        "<html><body><h2>What the networks look at</h2>"
        "<p>Enrichment: the share of attribution inside the puncta divided by the share of the tile they "
        "cover (1 = no preference), median over the aggregate-bearing test tiles of each run.</p>"
        f"<ul>\n{items}\n</ul></body></html>\n"
    )
    with atomic_path(findings_path) as tmp:
        tmp.write_text(page)
    return summary


def overlay(*, maps_path, method, classes, per_class, title, path_stem):
    """The overlay grid of one method: `per_class` tiles of each class, trained network's maps."""
    from cellclass import overlays

    with np.load(maps_path, allow_pickle=False) as data:
        true = data["true"]
        picked = np.concatenate([np.flatnonzero(true == c)[:per_class] for c in classes])
        tiles, maps = data["tiles"][picked], data[f"trained/{method}"][picked]
    overlays.overlay_grid(path_stem, tiles, maps, [str(t) for t in true[picked]], class_names=classes, title=title)
