"""Per-cell profiles: each run's penultimate features of every tile (cell) it scores, with its probabilities and
call, and their medians per well, as plate-profiling tools keep them (Parquet, one row per tile and run).

Profiles are per run (a `run` column), never averaged over runs: each run learned its own features, so the
features of two runs are not in one coordinate system. A tile is profiled only by the runs that scored it: a
test tile by the runs of its fold, an image of a prediction set that the runs also trained on by the runs that
never saw it (cellclass.predict.out_of_fold). Probabilities are the run's own, calibrated by its temperature,
on the tile as stored (no test-time augmentation, so that features and probabilities describe one view).
"""

import logging

import numpy as np
import pandas as pd

from cellclass.io.atomic import atomic_path
from cellclass.learn import calibration, inference

log = logging.getLogger(__name__)

FEATURE = "feature_"  # prefix of the feature columns: feature_0000, feature_0001, ...
LAYOUT_COLUMNS = ("plate", "well", "role", "dose", "unit", "condition")  # what a plate map says of a tile's well


def feature_columns(frame):
    return [c for c in frame.columns if c.startswith(FEATURE)]


def extractor(model):
    """A model giving the penultimate features (the input of the `logits` layer) and the probabilities."""
    import keras

    return keras.Model(model.inputs, [model.get_layer("logits").input, model.output])


def run_profiles(model, tilesets, *, run, classes, channels, temperature=1.0, batch_size=256):
    """One run's profile table of `tilesets`: per tile, where it is, its known class, the run's calibrated
    probabilities and call, and its penultimate features."""
    features_of = extractor(model)
    frames = []
    for chunk, tiles, bounds in inference.chunks(tilesets, channels=channels):
        if tiles is None:
            continue
        outputs = [features_of.predict_on_batch(tiles[i : i + batch_size]) for i in range(0, len(tiles), batch_size)]
        features = np.concatenate([np.asarray(f, np.float32) for f, _ in outputs])
        probabilities = calibration.apply(np.concatenate([np.asarray(p, np.float32) for _, p in outputs]), temperature)
        for i, tileset in enumerate(chunk):
            part = slice(bounds[i], bounds[i + 1])
            if len(tileset):
                frames.append(tile_table(tileset, run, probabilities[part], features[part], classes))
    return frames


def tile_table(tileset, run, probabilities, features, classes):
    meta = tileset.meta
    table = pd.DataFrame(
        {
            "run": run,
            "tile": tileset.tile_ids(),
            "image": meta["sample"],
            "group": meta["group"],
            "row": tileset.rows,
            "col": tileset.cols,
        }
    )
    if "label" in tileset.extra:
        table["label"] = tileset.extra["label"]
    table["true_class"] = meta["class"] or None  # an unlabelled image has class ""
    for i, cls in enumerate(classes):
        table[f"p_{cls}"] = probabilities[:, i]
    table["call"] = np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)]
    named = pd.DataFrame(features, columns=[f"{FEATURE}{j:04d}" for j in range(features.shape[1])])
    return pd.concat([table, named], axis=1)


def profile_table(members, tilesets, *, runs, scored_by, classes, channels, temperatures, layout=None):
    """Every member's profiles of the tiles it may score, with each tile's plate, well, role and dose where
    `layout` (rows: sample, plate, well, ...) says. `scored_by(sample id)` gives the members (indices) that
    may score an image; `runs` names the members."""
    frames = []
    for index, (model, run, temperature) in enumerate(zip(members, runs, temperatures)):
        mine = [t for t in tilesets if index in scored_by(t.meta["sample"])]
        frames += run_profiles(model, mine, run=run, classes=classes, channels=channels, temperature=temperature)
        log.info("%s: profiled %d tile(s) of %d image(s)", run, sum(len(t) for t in mine), len(mine))
    if not frames:
        raise ValueError("no tile to profile: every image is empty, skipped or scored by no run")
    profiles = pd.concat(frames, ignore_index=True)
    return with_layout(profiles, layout)


def with_layout(profiles, layout):
    """`profiles` with the plate map's columns of each tile's image (none when the images are no plate)."""
    if not layout:
        return profiles
    wells = pd.DataFrame(layout)[["sample", *LAYOUT_COLUMNS]].rename(columns={"sample": "image"})
    merged = profiles.merge(wells, on="image", how="left")
    first = [c for c in profiles.columns if not c.startswith(FEATURE)]
    return merged[first + list(LAYOUT_COLUMNS) + feature_columns(profiles)]


def well_profiles(profiles, classes):
    """Per run and well (the group, for images that are no plate): the number of cells and the median of each
    probability and feature over the well's cells, the robust per-well profile of plate-profiling tools."""
    keys = ["run", "group"]
    described = [c for c in ("true_class", *LAYOUT_COLUMNS) if c in profiles.columns]
    numbers = [f"p_{c}" for c in classes] + feature_columns(profiles)
    grouped = profiles.groupby(keys, sort=False)
    table = grouped[described].first().join(grouped.size().rename("cells")).join(grouped[numbers].median())
    return table.reset_index()


def write_parquet(frame, path):
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, engine="pyarrow", index=False)


def write_profiles(profiles, classes, profiles_path, wells_path):
    write_parquet(profiles, profiles_path)
    write_parquet(well_profiles(profiles, classes), wells_path)
    log.info("%d profile row(s) (tile x run), %d feature(s) per run", len(profiles), len(feature_columns(profiles)))
