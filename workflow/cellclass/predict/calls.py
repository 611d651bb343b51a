"""Classify new, unlabelled images with trained runs.

New images are tiled with the settings recorded by the training run itself, so
they cannot be prepared differently from the training data. Each member of an
ensemble (the seeds of one experiment and model) scores every tile, calibrated by
its own temperature; the calls are the mean probability, and the spread across
members is the uncertainty. An image the runs' training dataset also holds is
scored only by the runs that never trained on it (cellclass.predict.out_of_fold),
or not at all.
"""

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from cellclass.learn import calibration, inference
from cellclass.predict import image_shift, out_of_fold
from cellclass.evaluate import ensemble, metrics, runs
from cellclass.share import package
from cellclass.prepare import qc, tiling
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


def member_temperatures(model_paths):
    """Each member's temperature (cellclass.learn.calibration), in load_members' order: from its run's
    metrics.json beside its model.keras, or from the package's record; 1 for runs from before calibration."""
    return [t for path in model_paths for t in (package.temperatures(path) if package.is_package(path) else
                                                [calibration.temperature_of(runs.read_metrics(Path(path).parent))])]


def check_input_shape(tilesets, run):
    """Refuse tiles the model cannot take, naming the image. The TileSets of one shard file share a tile shape
    (tilestore.save checks it), so the first decides."""
    first = next((t for t in tilesets if len(t)), None)
    if first is not None:
        shape = select_channels(first.tiles[:1], run["channels"]).shape[1:]
        if shape != tuple(run["input_shape"]):
            raise InputError(f"{', '.join(first.meta['files'])}: tiles of shape {shape} do not fit the input "
                             f"{tuple(run['input_shape'])} of {run.get('source', 'the model')}")


def scored_chunks(members, references, tilesets, run, options, tta="none", temperatures=None, batch_size=256):
    """Per chunk of consecutive TileSets (inference.chunks): the chunk, its tiles' (members, tiles, classes)
    probabilities, each calibrated by its member's temperature (`tta`: cellclass.learn.inference.TTA), and their
    (members, tiles) novelty, None where the runs carry no reference or it is off."""
    check_input_shape(tilesets, run)
    judged = None if options["novelty_quantile"] is None else references
    n_members, n_classes = len(members), len(run["classes"])
    for chunk, tiles, _ in inference.chunks(tilesets, channels=run["channels"]):
        if tiles is None:
            scores, novelty = np.zeros((n_members, 0, n_classes), np.float32), None if judged is None else np.zeros((n_members, 0))
        else:
            scores, novelty = inference.scores_and_novelty(members, judged, tiles, quantile=options["novelty_quantile"],
                                                           batch_size=batch_size, tta=tta)
        yield chunk, calibration.per_member(scores, temperatures or [1.0] * n_members), novelty


OBJECT_COLUMNS = ("label", "centroid_y", "centroid_x", "area")
UNLIKE = "abstain (unlike training data)"
UNCERTAIN = "abstain (uncertain)"
MOSTLY_ABSTAINED = "abstain (most tiles abstained)"
# predict.<set>.abstain as the schema defaults it.
ABSTAIN_DEFAULTS = {"novelty_quantile": 0.99, "min_probability": None, "max_share": 0.25, "image_shift": True}


def abstentions(mean, novelty, options):
    """Per tile, why no call is made ('' where one is): its ensemble novelty (members' mean, in units of the
    threshold; None where the runs carry no reference) above 1, or its called class's mean probability below
    `min_probability`. Unlike the training data wins: an unfamiliar tile's confidence means nothing."""
    reasons = np.full(len(mean), "", dtype=object)
    if options["min_probability"] is not None:
        reasons[mean.max(axis=1, initial=0) < options["min_probability"]] = UNCERTAIN
    if novelty is not None and options["novelty_quantile"] is not None:
        reasons[novelty > 1] = UNLIKE
    return reasons


def _owners(tilesets):
    """Per tile of `tilesets` (their tiles in order), the index of its TileSet."""
    return np.repeat(np.arange(len(tilesets)), [len(t) for t in tilesets])


def _per_tile(tilesets, values):
    return np.concatenate([np.asarray(values(t)) for t in tilesets] or [np.empty(0, int)])


def tile_table(tilesets, scores, classes, novelty=None, options=ABSTAIN_DEFAULTS, shifted=()):
    """Per tile (or cell crop) of `tilesets`: where it is, the members' mean probability per class, the call and
    the spread, its novelty (members' mean; above 1 is unlike the training data) and why it abstains, if it does.
    `scores`: (members, tiles, classes), the TileSets' tiles one after another; `novelty`: (members, tiles);
    `shifted`: images unlike the training images (image_shift), every tile of which abstains."""
    owner = _owners(tilesets)
    # The members' mean, sharpened where the runs found their average under-confident (evaluate.ensemble).
    mean = calibration.ensemble(scores, options.get("ensemble_temperature", 1.0))
    call = mean.argmax(axis=1)
    table = pd.DataFrame({
        "image": np.array([t.meta["sample"] for t in tilesets], dtype=object)[owner],
        "group": np.array([t.meta["group"] for t in tilesets], dtype=object)[owner],
        "tile": [tile for t in tilesets for tile in t.tile_ids()],
        "row": _per_tile(tilesets, lambda t: t.rows), "col": _per_tile(tilesets, lambda t: t.cols),
    })
    filled = [t for t in tilesets if len(t)]
    for key in OBJECT_COLUMNS:  # a cell crop's object: label id, centroid and area in its field
        if filled and all(key in t.extra for t in filled):
            table[key] = _per_tile(filled, lambda t: t.extra[key])
    for i, cls in enumerate(classes):
        table[f"p_{cls}"] = mean[:, i]
    table["call"] = np.array(classes, dtype=object)[call] if len(call) else []
    # Spread: standard deviation across members of the called class's probability.
    table["spread"] = scores[:, np.arange(len(call)), call].std(axis=0)
    ensemble_novelty = None if novelty is None else novelty.mean(axis=0)
    table["novelty"] = np.nan if ensemble_novelty is None else ensemble_novelty
    table["abstain"] = abstentions(mean, ensemble_novelty, options)
    table.loc[table["image"].isin(shifted), "abstain"] = image_shift.SHIFTED
    return table


def image_table(tilesets, scores, classes, abstain=None, max_share=None):
    """One row per image (TileSet): its tiles' mean probability per member, then the mean over members, over the
    tiles that do not abstain (`abstain`: per tile, the reason or '').

    The spread is the members' standard deviation for the called class and the
    agreement the share of members making the same call. An image without a
    foreground tile is reported as 'no cells found' rather than dropped; one all
    of whose tiles abstain takes the commoner reason as its call, and one with a
    larger abstained share than `max_share` (None: any) gets no call either.
    """
    owner, n, k = _owners(tilesets), len(tilesets), len(classes)
    abstain = np.full(len(owner), "", dtype=object) if abstain is None else np.asarray(abstain, dtype=object)
    metas = [t.meta for t in tilesets]
    table = pd.DataFrame({
        "image": [m["sample"] for m in metas], "group": [m["group"] for m in metas],
        "files": [";".join(m["files"]) for m in metas], "known_class": [m["class"] for m in metas],
        "unit": [metrics.unit_of("tile", m["settings"]["kind"]) for m in metas],
        "tiles": np.bincount(owner, minlength=n),
        "unlike_training": np.bincount(owner[abstain == UNLIKE], minlength=n),
        "uncertain": np.bincount(owner[abstain == UNCERTAIN], minlength=n),
        "image_shift": np.bincount(owner[abstain == image_shift.SHIFTED], minlength=n),
    })
    table["abstained_share"] = abstained_share(table)
    kept = abstain == ""
    kept_owner, kept_scores = owner[kept], scores[:, kept]
    # How many of the image's tiles (cells) each class is called for: the per-cell count a screen reads.
    calls = kept_scores.mean(axis=0).argmax(axis=1) if kept_scores.shape[0] else np.zeros(len(kept_owner), int)
    called = np.bincount(kept_owner * k + calls, minlength=n * k).reshape(n, k)
    for i, c in enumerate(classes):
        table[f"called_{c}"] = called[:, i]
    kept_count = np.bincount(kept_owner, minlength=n)
    sums = np.array([[np.bincount(kept_owner, weights=member[:, i], minlength=n) for i in range(k)]
                     for member in kept_scores]).reshape(len(scores), k, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_member = np.moveaxis(sums, 2, 1) / np.where(kept_count > 0, kept_count, np.nan)[None, :, None]
    scorable = kept_count > 0
    mean = per_member.mean(axis=0) if len(scores) else np.full((n, k), np.nan)
    best = np.where(scorable, np.nan_to_num(mean, nan=-1.0).argmax(axis=1), 0)
    for i, c in enumerate(classes):
        table[f"p_{c}"] = np.where(scorable, mean[:, i], np.nan)
    call = np.array(classes, dtype=object)[best]
    for i in np.flatnonzero(~scorable):  # no tile, or every tile abstained: the reason is the call
        call[i] = tilestore.empty_reason(tilesets[i]) if not len(tilesets[i]) else pd.Series(abstain[owner == i]).mode()[0]
    call[scorable & (table["abstained_share"] > (1 if max_share is None else max_share)).to_numpy()] = MOSTLY_ABSTAINED
    table["call"] = call
    chosen = per_member[:, np.arange(n), best] if len(scores) else np.full((0, n), np.nan)
    table["spread"] = np.where(scorable, chosen.std(axis=0) if len(scores) else np.nan, np.nan)
    table["agreement"] = np.where(scorable, (per_member.argmax(axis=2) == best).mean(axis=0) if len(scores) else np.nan,
                                  np.nan)
    # Right or wrong only for a class the model has: an image of another known class has no correct call.
    table["correct"] = [bool(c == known) if known in classes and c in classes else None
                        for c, known in zip(call, table["known_class"])]
    return table


def scored_tables(tilesets, scores, novelty, classes, allowed, options=ABSTAIN_DEFAULTS, shifted=()):
    """The tile and image tables of `tilesets`, scored by the `allowed` members only (out_of_fold.scorers), with
    their novelty (None: not judged) and abstentions, and blanked when none may score them; each row says how
    it was scored."""
    scores = scores[allowed["members"]]
    if allowed["members"]:
        novelty = None if novelty is None else novelty[allowed["members"]]
        tiles = tile_table(tilesets, scores, classes, novelty, options, shifted)
        images = image_table(tilesets, scores, classes, tiles["abstain"].to_numpy(), options["max_share"])
    else:
        with warnings.catch_warnings():  # means over no member; withhold blanks them all
            warnings.simplefilter("ignore", RuntimeWarning)
            tiles = withhold(tile_table(tilesets, scores, classes), classes, allowed["scored_by"])
            images = withhold(image_table(tilesets, scores, classes), classes, allowed["scored_by"], images=True)
    return tiles.assign(scored_by=allowed["scored_by"]), images.assign(scored_by=allowed["scored_by"])


def withhold(table, classes, scored_by, images=False):
    """Blank the probabilities and calls of images no run may score (every run trained on them); the reason
    becomes the call. `table`: their tile table, or (images=True) their image table."""
    table = table.assign(**{f"p_{c}": np.nan for c in classes}, call=scored_by, spread=np.nan)
    if images:  # the image table also counts calls and says how the members agree
        table = table.assign(**{f"called_{c}": 0 for c in classes}, agreement=np.nan, correct=None)
    return table


def chunk_tables(chunk, scores, novelty, classes, scoring, everyone, options=ABSTAIN_DEFAULTS, shifted=()):
    """The tile and image tables of a chunk of TileSets, in their order, each image scored by the members
    `scoring` allows it (`everyone` unless it names the image): the images of one set of members at a time."""
    allowed = [scoring.get(t.meta["sample"], everyone) for t in chunk]
    keys = [(tuple(a["members"]), a["scored_by"]) for a in allowed]
    if len(set(keys)) <= 1:
        return scored_tables(chunk, scores, novelty, classes, allowed[0] if chunk else everyone, options, shifted)
    bounds = np.cumsum([0] + [len(t) for t in chunk])
    tile_parts, image_parts = [], []
    for key in dict.fromkeys(keys):
        mine = [i for i, k in enumerate(keys) if k == key]
        at = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in mine])
        tiles, images = scored_tables([chunk[i] for i in mine], scores[:, at], None if novelty is None else novelty[:, at],
                                      classes, allowed[mine[0]], options, shifted)
        tile_parts.append(tiles.assign(_order=at))
        image_parts.append(images.assign(_order=mine))
    return tuple(pd.concat(parts).sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)
                 for parts in (tile_parts, image_parts))


def abstained_share(table):
    """Per row of an image or group table: the share of its tiles (cells) that abstained, for any reason; NaN
    where it has none."""
    abstained = table["unlike_training"] + table["uncertain"] + table["image_shift"]
    return abstained / table["tiles"].where(table["tiles"] > 0)


def group_table(tiles, images, classes, max_share=None):
    """Per group (a well; the image itself unless a sheet names groups): images, tiles (cells), the mean class
    probability over its tiles, the call, how many tiles (cells) are called each class, and how it was scored.
    A group with a larger abstained share than `max_share` (None: any) gets no call."""
    counted = images.groupby("group", sort=False).agg(
        images=("image", "size"), unit=("unit", "first"), tiles=("tiles", "sum"),
        unlike_training=("unlike_training", "sum"), uncertain=("uncertain", "sum"), image_shift=("image_shift", "sum"),
        **{f"called_{c}": (f"called_{c}", "sum") for c in classes},
        scored_by=("scored_by", "first"),
    )
    # A group whose images were scored in different ways names each way (a lambda per group took seconds at 10^5).
    ways = images.drop_duplicates(["group", "scored_by"])
    mixed = ways[ways["group"].duplicated(keep=False)]
    if len(mixed):
        counted.loc[mixed["group"].unique(), "scored_by"] = mixed.groupby("group", sort=False)["scored_by"].agg("; ".join)
    counted["abstained_share"] = abstained_share(counted)
    if tiles.empty:  # no image gave a tile: each group says why
        return counted.assign(call=images.groupby("group", sort=False)["call"].first()).reset_index()
    # Abstained tiles (cells) are left out of the group's probabilities, as of its counts.
    mean = tiles[tiles["abstain"] == ""].groupby("group", sort=False)[[f"p_{c}" for c in classes]].mean()
    table = counted.join(mean)
    probabilities = table[[f"p_{c}" for c in classes]].to_numpy()
    # A group with no probability says why: its images' reason (abstained, no cells found, or not scored).
    reasons = images.groupby("group", sort=False)["call"].first()
    table["call"] = [classes[int(np.argmax(p))] if np.isfinite(p).any() else reasons[group]
                     for group, p in zip(table.index, probabilities)]
    mostly = table["call"].isin(classes) & (table["abstained_share"] > (1 if max_share is None else max_share))
    table.loc[mostly, "call"] = MOSTLY_ABSTAINED
    called = table[[f"called_{c}" for c in classes]].sum(axis=1)
    for c in classes:
        table[f"fraction_{c}"] = table[f"called_{c}"] / called.where(called > 0)
    return table.reset_index()


def overlay_order(images):
    """Image rows' indices in the order their overlays are worth drawing: taking turns across the calls, so every
    call is shown, and within a call the least sure first: the largest share of abstained tiles (cells), then the
    lowest probability of the call."""
    sure = [row.get(f"p_{row['call']}", np.nan) for row in images.to_dict("records")]
    ranked = images.assign(sure=sure).sort_values(["abstained_share", "sure"], ascending=[False, True],
                                                  na_position="last", kind="stable")
    turn = ranked.groupby("call", sort=False).cumcount()
    return list(turn.sort_values(kind="stable").index)


def draw_overlays(metas, tiles, images, classes, overlay_dir, limit):
    """Overlays of at most `limit` (None: every) images, in overlay_order; only of fields: a single-cell image's
    overlay would be the cell with one frame, and skipped images have no field to draw on. `tiles`: the set's
    tile table; `metas`: each image row's TileSet meta."""
    Path(overlay_dir).mkdir(parents=True, exist_ok=True)
    drawable = images[[not m["skipped"] and m["settings"]["kind"] != "cells" for m in metas]]
    chosen = overlay_order(drawable)[:limit]
    for index in chosen:
        overlay(metas[index], tiles[tiles["image"] == images.loc[index, "image"]], images.loc[index], classes,
                overlay_dir)
    return len(chosen)


def overlay(meta, tiles, image, classes, overlay_dir):
    """The image's calls drawn over its field."""
    from cellclass.predict import call_figures
    from cellclass.io.datasets import Sample

    sample = Sample(meta["sample"], tuple(meta["files"]), meta["class"], meta["group"], planes=meta.get("planes", 1))
    field, _ = tiling.load_field(sample, meta["settings"])
    path = Path(overlay_dir) / f"{meta['sample']}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    drawn = tiles[tiles["call"].isin(classes)]  # an image no run could score shows its field and why
    call_figures.call_overlay(field, drawn, image, classes, meta["settings"]["tile_size"], path)


def read_references(model_paths, novelty_paths):
    """Each member's novelty.Reference: from each run's novelty.npz, or from the package; None for a package
    exported before references existed (then no tile abstains for being unfamiliar)."""
    from cellclass.learn.novelty import Reference

    if package.is_package(model_paths[0]):
        return package.read_references(model_paths[0])
    return [Reference.load(path) for path in novelty_paths]


def predict_set(*, tile_files, model_paths, run_path, tiles_table, images_tsv, groups_tsv, calls_figures, overlay_dir,
                findings=None, novelty_paths=(), abstain=None, threads=1, tta="none", scoring=None, overlays=50,
                quality=None, calibration_parts=()):
    """Classify every image of a prediction set: tables per tile (cell: Parquet, as there may be millions), image
    and group (TSV), a calls figure, overlays of at most `overlays` fields (None: every one), and findings that
    warn of images unlike the training data. `tta` (evaluation.tta) averages each tile's dihedral views; every
    table's `tta` column says whether it did. `novelty_paths`: each member's novelty reference; `abstain`:
    predict.<set>.abstain. `scoring` (PredictionSet.scoring) names, for each image the runs trained on some
    of, the members that may score it; every table's `scored_by` column says how each image was scored.
    `quality`: the set's qc.parquet (cellclass.predict.image_shift): images unlike the training images get no
    call while abstain.image_shift is on, and are named either way. `calibration_parts`: the runs' calibration.tsv,
    on which one ensemble temperature is fitted where their mean is under-confident (cellclass.evaluate.ensemble);
    a package's members are averaged as they are."""
    from cellclass.predict import call_figures
    from cellclass.io.atomic import atomic_path
    from cellclass.learn.runtime import configure_tensorflow

    run = read_run(run_path)
    configure_tensorflow(threads=threads, seed=0, deterministic=True)
    members, temperatures = load_members(model_paths), member_temperatures(model_paths)
    references = read_references(model_paths, novelty_paths)
    fitted = ensemble.temperature_for([Path(p).parent for p in calibration_parts]) if calibration_parts else None
    options = {**ABSTAIN_DEFAULTS, **(abstain or {}), "ensemble_temperature": fitted["temperature"] if fitted else 1.0}
    classes = run["classes"]
    qc_table = None if quality is None else pd.read_parquet(quality)
    shifted = image_shift.shifted_images(qc_table, options["image_shift"])
    tile_tables, image_tables, metas = [], [], []
    everyone = {"members": list(range(len(members))),
                "scored_by": out_of_fold.UNCHECKED if package.is_package(run_path) else out_of_fold.ALL_RUNS}
    for path in tile_files:
        for chunk, scores, novelty in scored_chunks(members, references, tilestore.load(path), run, options, tta=tta,
                                                    temperatures=temperatures):
            tiles, images = chunk_tables(chunk, scores, novelty, classes, scoring or {}, everyone, options, shifted)
            tile_tables.append(tiles)
            image_tables.append(images)
            metas += [t.meta for t in chunk]
    images = why_no_call(with_quality(pd.concat(image_tables, ignore_index=True), qc_table), classes, options)
    tiles = pd.concat(tile_tables, ignore_index=True)
    log.info("%d image(s); test-time augmentation: %s; calls: %s", len(images), tta, images["call"].value_counts().to_dict())
    if scoring:
        log.warning("%d image(s) are also images of the runs' training dataset; scored: %s", len(scoring),
                    images.loc[images["image"].isin(scoring), "scored_by"].value_counts().to_dict())
    drawn = draw_overlays(metas, tiles, images, classes, overlay_dir, overlays)
    log.info("overlays of %d of %d image(s) (predict.<set>.overlays: %s)", drawn, len(images), overlays)
    groups = why_no_call(group_table(tiles, images, classes, options["max_share"]), classes, options)
    for frame, path in ((tiles, tiles_table), (images, images_tsv), (groups, groups_tsv)):
        write_table(frame.assign(tta=tta), path)
    call_figures.calls_plot(images, classes, calls_figures)
    if findings:
        with atomic_path(findings) as tmp:
            tmp.write_text(findings_page(images, groups, options, references, qc_table, fitted))
    return images


def with_quality(images, qc_table):
    """The image table with each image's distance from the training images' quality measures (qc_distance) and
    the measures that moved (unlike_training_images, '' where none); NaN and '' without a QC table."""
    if qc_table is None:
        return images.assign(qc_distance=np.nan, unlike_training_images="")
    found = qc_table.set_index("image")
    return images.assign(qc_distance=images["image"].map(found["qc_distance"]),
                         unlike_training_images=images["image"].map(found["unlike"]).fillna(""))


def why_no_call(table, classes, options):
    """An image or group table with `no_call`: why it has no call, in words ('' where it has one)."""
    share = table["abstained_share"].fillna(0)
    reasons = []
    for call, moved, fraction in zip(table["call"], table.get("unlike_training_images", [""] * len(table)), share):
        if call == image_shift.SHIFTED:
            reasons.append(f"unlike the training images: {moved}")
        elif call == MOSTLY_ABSTAINED:
            reasons.append(f"{fraction:.0%} of its tiles (cells) abstained, above abstain.max_share "
                           f"{options['max_share']:g}: the rest do not describe it")
        else:
            reasons.append("" if call in classes else str(call))
    return table.assign(no_call=reasons)


def write_table(frame, path):
    """A table as Parquet (.parquet: typed and compressed, for tables of millions of rows) or TSV, atomically."""
    from cellclass.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        if Path(path).suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, sep="\t", index=False)


MOSTLY = 0.5  # a set, group or image with more of its tiles (cells) unlike the training data is warned of


def abstention_lines(images, options, references):
    """What the findings say about abstention: how it was judged, how much abstained, and warnings."""
    unit = images["unit"].iloc[0] if len(images) else "tile"
    tiles = images["tiles"].sum()
    unlike, uncertain = images["unlike_training"].sum(), images["uncertain"].sum()
    lines = []
    if references is None:
        lines.append("No call is checked against the training data: the model carries no novelty reference "
                     "(retrain, or export the package again, to get one).")
    elif options["novelty_quantile"] is None:
        lines.append("Abstention on unfamiliar images is off (abstain.novelty_quantile: null).")
    else:
        lines.append(f"A {unit} abstains as unlike the training data when its distance to the nearest class in the "
                     "network's features exceeds what all but "
                     f"{1 - options['novelty_quantile']:.0%} of the validation side's {unit}s reach.")
    if tiles:
        lines.append(f"{unlike} of {tiles} {unit}s ({unlike / tiles:.1%}) abstained as unlike the training data, "
                     f"{uncertain} ({uncertain / tiles:.1%}) as uncertain"
                     + (f" (called class below {options['min_probability']:g})." if options["min_probability"] else
                        "; abstention on uncertainty is off (abstain.min_probability: null)."))
        if unlike / tiles > MOSTLY:
            lines.append(f"WARNING: most {unit}s of this set are unlike anything the model was trained on: "
                         "its calls do not apply here.")
    by_group = images.groupby("group")[["unlike_training", "tiles"]].sum()
    warned = [("image", images.loc[images["unlike_training"] > MOSTLY * images["tiles"], "image"])]
    if len(by_group) < len(images):  # groups (wells) of several images
        warned.append(("group", by_group.index[by_group["unlike_training"] > MOSTLY * by_group["tiles"]]))
    for kind, names in warned:
        names = [str(name) for name in names]
        if names:
            more = f" and {len(names) - 10} more" if len(names) > 10 else ""
            lines.append(f"WARNING: {len(names)} {kind}(s) mostly unlike the training data: {', '.join(names[:10])}{more}.")
    return lines


def quality_lines(images, groups, options, qc_table):
    """What the findings say about images unlike the training images, and calls withheld from a minority."""
    lines = []
    if qc_table is not None and len(qc_table) and qc_table["qc_check"].iloc[0] != "compared with the training images":
        lines.append(f"Image quality was not compared: {qc_table['qc_check'].iloc[0]}.")
    moved = images[images["unlike_training_images"] != ""]
    if len(moved):
        names = "; ".join(f"{r.image} ({r.unlike_training_images})" for r in moved.head(10).itertuples())
        more = f"; and {len(moved) - 10} more" if len(moved) > 10 else ""
        fate = ("they get no call (abstain.image_shift)" if options["image_shift"] else
                "they are called all the same (abstain.image_shift: false)")
        lines.append(f"WARNING: {len(moved)} of {len(images)} image(s) are unlike the training images in their quality "
                     f"measures (more than {qc.LIMIT:g} robust spreads from the training images' median), so "
                     f"{fate}: {names}{more}.")
    for kind, table in (("image", images), ("group", groups)):
        withheld = table[table["call"] == MOSTLY_ABSTAINED]
        if len(withheld):
            lines.append(f"{len(withheld)} {kind}(s) get no call: more than {options['max_share']:.0%} of their tiles "
                         f"(cells) abstained (abstain.max_share): {', '.join(map(str, withheld[kind].head(10)))}"
                         + (" ..." if len(withheld) > 10 else "") + ".")
    return lines


def findings_page(images, groups, options, references, qc_table=None, fitted=None):
    import html

    lines = abstention_lines(images, options, references) + quality_lines(images, groups, options, qc_table)
    if fitted:
        lines.append(f"Ensemble temperature {fitted['temperature']:.2f} applied to the members' mean probability per "
                     f"tile ({fitted['note']}).")
    items = "\n".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f"<html><body><h2>Predictions</h2>\n<ul>\n{items}\n</ul></body></html>\n"
