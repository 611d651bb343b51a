"""Classify new, unlabelled images with trained runs.

New images are tiled with the settings recorded by the training run itself, so
they cannot be prepared differently from the training data. Each member of an
ensemble (the seeds of one experiment and model) scores every tile; the calls
are the mean probability, and the spread across members is the uncertainty.
An image the runs' training dataset also holds is scored only by the runs that
never trained on it (cellclass.predict.out_of_fold), or not at all.
"""

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from cellclass.learn import inference
from cellclass.predict import out_of_fold
from cellclass.evaluate import metrics, runs
from cellclass.share import package
from cellclass.prepare import tiling
from cellclass.io import tilestore
from cellclass.io.errors import InputError
from cellclass.learn.pipeline import select_channels

log = logging.getLogger(__name__)


def read_run(metrics_path):
    """What a trained run recorded about its inputs: classes, channels fed, and how its tiles were made; from a
    run's metrics.json, or from a model package (.zip), which carries the same record."""
    if package.is_package(metrics_path):
        return package.read_record(metrics_path)
    metrics = runs.read_metrics(Path(metrics_path).parent)
    if not (metrics.get("prepare") or {}).get("settings"):
        raise InputError(f"{metrics_path}: this run predates recorded preparation settings; retrain it to predict with it")
    return metrics


def tile_shard_like_training(samples, run):
    """Tile a shard of new images exactly as the run's training data was tiled."""
    return [tile_like_training(sample, run) for sample in samples]


def tile_like_training(sample, run):
    """Tile one new image as the run's training data was tiled; refuse an image of another kind."""
    prepared = run["prepare"]
    model = f"the model ({run['source']})" if "source" in run else "the model"
    if "user labels" in prepared.get("objects", []) and not sample.labels:
        raise InputError(
            f"{', '.join(sample.files)}: {model} was trained on crops of user label images; give this image's "
            "label image in a labels column, so its cells are cropped the same way"
        )
    try:
        tileset = tiling.tile_sample(sample, prepared["settings"])
    except InputError as error:
        raise InputError(f"{error}; tiled as {model} was: {_tiling(prepared['settings'])}") from None
    if tileset.meta["skipped"]:
        return tileset
    channels, bit_depth = tileset.meta["field_shape"][-1], tileset.meta["bit_depth"]
    if channels not in prepared["channels"] or bit_depth not in prepared["bit_depths"]:
        wanted = " or ".join(str(c) for c in prepared["channels"])
        depths = " or ".join(f"{b}-bit" for b in prepared["bit_depths"])
        raise InputError(
            f"{', '.join(sample.files)}: {channels} channel(s), {bit_depth}-bit; {model} was trained on "
            f"{wanted}-channel {depths} images (expected shape (Y, X, {wanted}) after channel selection)"
        )
    return tileset


def _tiling(settings):
    return f"{settings['kind']}, {settings['tile_size']} px tiles"


def load_members(model_paths):
    """The ensemble: every trained model (a run's model.keras, or the members of a package), loaded once
    (inference only, so no optimizer state)."""
    import keras

    return [member for path in model_paths for member in
            (package.load_members(path) if package.is_package(path) else [keras.models.load_model(path, compile=False)])]


def score(members, tilesets, run, batch_size=256, tta="none"):
    """Per TileSet, the (members, tiles, classes) probabilities of its tiles under each member (`tta`: the
    test-time augmentation, cellclass.learn.inference.TTA).

    The TileSets of one shard file share a tile shape (tilestore.save checks it), so the first decides.
    """
    first = next((t for t in tilesets if len(t)), None)
    if first is not None:
        shape = select_channels(first.tiles[:1], run["channels"]).shape[1:]
        if shape != tuple(run["input_shape"]):
            raise InputError(f"{', '.join(first.meta['files'])}: tiles of shape {shape} do not fit the input "
                             f"{tuple(run['input_shape'])} of {run.get('source', 'the model')}")
    return inference.per_image(members, tilesets, channels=run["channels"], n_classes=len(run["classes"]),
                               batch_size=batch_size, tta=tta)


OBJECT_COLUMNS = ("label", "centroid_y", "centroid_x", "area")


def tile_rows(tileset, scores, classes):
    """Per tile (or cell crop) of one image: where it is, the members' mean probability per class, the call and the spread."""
    mean = scores.mean(axis=0)
    call = mean.argmax(axis=1)
    table = pd.DataFrame({"image": tileset.meta["sample"], "group": tileset.meta["group"], "tile": tileset.tile_ids(),
                          "row": tileset.rows, "col": tileset.cols})
    for key in OBJECT_COLUMNS:  # a cell crop's object: label id, centroid and area in its field
        if key in tileset.extra:
            table[key] = tileset.extra[key]
    for i, cls in enumerate(classes):
        table[f"p_{cls}"] = mean[:, i]
    table["call"] = [classes[i] for i in call]
    # Spread: standard deviation across members of the called class's probability.
    table["spread"] = scores[:, np.arange(len(call)), call].std(axis=0)
    return table


def image_row(tileset, scores, classes):
    """One image's call: its tiles' mean probability per member, then the mean over members.

    The spread is the members' standard deviation for the called class and the
    agreement the share of members making the same call. An image without a
    foreground tile is reported as 'no cells found' rather than dropped.
    """
    meta = tileset.meta
    row = {"image": meta["sample"], "group": meta["group"], "files": ";".join(meta["files"]),
           "known_class": meta["class"], "unit": metrics.unit_of("tile", meta["settings"]["kind"]), "tiles": len(tileset)}
    # How many of the image's tiles (cells) each class is called for: the per-cell count a screen reads.
    calls = scores.mean(axis=0).argmax(axis=1) if len(tileset) else np.empty(0, int)
    row.update({f"called_{c}": int((calls == i).sum()) for i, c in enumerate(classes)})
    if not len(tileset):
        row.update({f"p_{c}": np.nan for c in classes})
        row.update(call=tilestore.empty_reason(tileset), spread=np.nan, agreement=np.nan)
    else:
        per_member = scores.mean(axis=1)  # (members, classes)
        mean = per_member.mean(axis=0)
        best = int(mean.argmax())
        row.update({f"p_{c}": float(p) for c, p in zip(classes, mean)})
        row.update(
            call=classes[best],
            spread=float(per_member[:, best].std()),
            agreement=float((per_member.argmax(axis=1) == best).mean()),
        )
    # Right or wrong only for a class the model has: an image of another known class has no correct call.
    row["correct"] = (row["call"] == row["known_class"]) if row["known_class"] in classes else None
    return row


def scored_rows(tileset, scores, classes, allowed):
    """The tile table and image row of one image, scored by the `allowed` members only (out_of_fold.scorers),
    and blanked when none may score it; each says how it was scored."""
    scores = scores[allowed["members"]]
    if allowed["members"]:
        tiles, image = tile_rows(tileset, scores, classes), image_row(tileset, scores, classes)
    else:
        with warnings.catch_warnings():  # means over no member; withhold blanks them all
            warnings.simplefilter("ignore", RuntimeWarning)
            tiles = withhold(tile_rows(tileset, scores, classes), classes, allowed["scored_by"])
            image = withhold(image_row(tileset, scores, classes), classes, allowed["scored_by"])
    return tiles.assign(scored_by=allowed["scored_by"]), {**image, "scored_by": allowed["scored_by"]}


def withhold(rows, classes, scored_by):
    """Blank the probabilities and call of an image no run may score (every run trained on it); the reason
    becomes its call. `rows`: its tile table, or its image row."""
    for c in classes:
        rows[f"p_{c}"] = np.nan
    rows["call"], rows["spread"] = scored_by, np.nan
    if isinstance(rows, dict):  # the image row also counts calls and says how the members agree
        rows.update({f"called_{c}": 0 for c in classes}, agreement=np.nan, correct=None)
    return rows


def group_table(tiles, images, classes):
    """Per group (a well; the image itself unless a sheet names groups): images, tiles (cells), the mean class
    probability over its tiles, the call, how many tiles (cells) are called each class, and how it was scored."""
    counted = images.groupby("group", sort=False).agg(
        images=("image", "size"), unit=("unit", "first"), tiles=("tiles", "sum"),
        **{f"called_{c}": (f"called_{c}", "sum") for c in classes},
        scored_by=("scored_by", lambda s: "; ".join(s.unique())),
    )
    if tiles.empty:
        return counted.reset_index()
    mean = tiles.groupby("group", sort=False)[[f"p_{c}" for c in classes]].mean()
    table = counted.join(mean)
    probabilities = table[[f"p_{c}" for c in classes]]
    # A group with no probability says why: its images' reason (no cells found, or not scored).
    reasons = images.groupby("group", sort=False)["call"].first()
    table["call"] = [classes[int(np.argmax(p))] if np.isfinite(p).any() else reasons[group]
                     for group, p in zip(table.index, probabilities.to_numpy())]
    for c in classes:
        table[f"fraction_{c}"] = table[f"called_{c}"] / table["tiles"].where(table["tiles"] > 0)
    return table.reset_index()


def overlay(tileset, tiles, image, classes, overlay_dir):
    """The image's calls drawn over its field (nothing for a skipped image)."""
    from cellclass.predict import call_figures
    from cellclass.io.datasets import Sample

    if tileset.meta["skipped"]:
        return
    meta = tileset.meta
    field, _ = tiling.load_field(Sample(meta["sample"], tuple(meta["files"]), meta["class"], meta["group"]), meta["settings"])
    path = Path(overlay_dir) / f"{meta['sample']}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    drawn = tiles[tiles["call"].isin(classes)]  # an image no run could score shows its field and why
    call_figures.call_overlay(
        field, drawn, image, classes, meta["settings"]["tile_size"], path, whole_image=meta["settings"]["kind"] == "cells"
    )


def predict_set(*, tile_files, model_paths, run_path, tiles_tsv, images_tsv, groups_tsv, calls_figures, overlay_dir,
                threads=1, tta="none", scoring=None):
    """Classify every image of a prediction set: tables per tile (cell), image and group, a calls figure, an
    overlay per image. `tta` (evaluation.tta) averages each tile's dihedral views; every table's `tta` column
    says whether it did. `scoring` (PredictionSet.scoring) names, for each image the runs trained on some of,
    the members that may score it; every table's `scored_by` column says how each image was scored."""
    from cellclass.predict import call_figures
    from cellclass.io.atomic import atomic_path
    from cellclass.learn.runtime import configure_tensorflow

    run = read_run(run_path)
    configure_tensorflow(threads=threads, seed=0, deterministic=True)
    members = load_members(model_paths)
    classes = run["classes"]
    tile_tables, image_rows = [], []
    everyone = {"members": list(range(len(members))),
                "scored_by": out_of_fold.UNCHECKED if package.is_package(run_path) else out_of_fold.ALL_RUNS}
    scoring = scoring or {}
    for path in tile_files:
        tilesets = tilestore.load(path)
        for tileset, scores in zip(tilesets, score(members, tilesets, run, tta=tta)):
            tiles, image = scored_rows(tileset, scores, classes, scoring.get(tileset.meta["sample"], everyone))
            tile_tables.append(tiles)
            image_rows.append(image)
            log.debug("%s: %s (%d tiles)", image_rows[-1]["image"], image_rows[-1]["call"], len(tileset))
            overlay(tileset, tile_tables[-1], image_rows[-1], classes, overlay_dir)
    images = pd.DataFrame(image_rows)
    tiles = pd.concat(tile_tables, ignore_index=True)
    log.info("%d image(s); test-time augmentation: %s; calls: %s", len(images), tta, images["call"].value_counts().to_dict())
    if scoring:
        log.warning("%d image(s) are also images of the runs' training dataset; scored: %s", len(scoring),
                    images.loc[images["image"].isin(scoring), "scored_by"].value_counts().to_dict())
    for frame, path in ((tiles, tiles_tsv), (images, images_tsv), (group_table(tiles, images, classes), groups_tsv)):
        frame = frame.assign(tta=tta)
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, sep="\t", index=False)
    call_figures.calls_plot(images, classes, calls_figures)
    return images
