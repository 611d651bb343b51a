"""The calls as tables: per tile (or cell), per image and per group (well), and how each was scored.

Takes TileSets and their members' (members, tiles, classes) probabilities and novelty
(cellclass.predict.ensemble_scoring); gives tidy tables: per tile the mean probability per class, call, spread,
novelty and reason to abstain; per image and per group the counts of tiles called each class and abstained, the
mean probability over the tiles that do not abstain, the call (or why there is none) and the members'
agreement. An image the runs trained on is scored only by the members out_of_fold allows, or not at all.
"""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from cellclass.evaluate import metrics
from cellclass.io import tilestore
from cellclass.learn import calibration
from cellclass.predict import image_shift
from cellclass.predict.abstention import (
    ABSTAIN_DEFAULTS,
    MOSTLY_ABSTAINED,
    UNCERTAIN,
    UNLIKE,
    abstained_share,
    abstentions,
)

OBJECT_COLUMNS = ("label", "centroid_y", "centroid_x", "area")


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
    table = pd.DataFrame(
        {
            "image": np.array([t.meta["sample"] for t in tilesets], dtype=object)[owner],
            "group": np.array([t.meta["group"] for t in tilesets], dtype=object)[owner],
            "tile": [tile for t in tilesets for tile in t.tile_ids()],
            "row": _per_tile(tilesets, lambda t: t.rows),
            "col": _per_tile(tilesets, lambda t: t.cols),
        }
    )
    filled = [t for t in tilesets if len(t)]
    for key in OBJECT_COLUMNS:  # a cell crop's object: label id, centroid and area in its field
        if filled and all(key in t.extra for t in filled):
            table[key] = _per_tile(filled, lambda t, key=key: t.extra[key])
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
    table = pd.DataFrame(
        {
            "image": [m["sample"] for m in metas],
            "group": [m["group"] for m in metas],
            "files": [";".join(m["files"]) for m in metas],
            "known_class": [m["class"] for m in metas],
            "unit": [metrics.unit_of("tile", m["settings"]["kind"]) for m in metas],
            "tiles": np.bincount(owner, minlength=n),
            "unlike_training": np.bincount(owner[abstain == UNLIKE], minlength=n),
            "uncertain": np.bincount(owner[abstain == UNCERTAIN], minlength=n),
            "image_shift": np.bincount(owner[abstain == image_shift.SHIFTED], minlength=n),
        }
    )
    table["abstained_share"] = abstained_share(table)
    kept = abstain == ""
    kept_owner, kept_scores = owner[kept], scores[:, kept]
    # How many of the image's tiles (cells) each class is called for: the per-cell count a screen reads.
    calls = kept_scores.mean(axis=0).argmax(axis=1) if kept_scores.shape[0] else np.zeros(len(kept_owner), int)
    called = np.bincount(kept_owner * k + calls, minlength=n * k).reshape(n, k)
    for i, c in enumerate(classes):
        table[f"called_{c}"] = called[:, i]
    kept_count = np.bincount(kept_owner, minlength=n)
    sums = np.array(
        [[np.bincount(kept_owner, weights=member[:, i], minlength=n) for i in range(k)] for member in kept_scores]
    ).reshape(len(scores), k, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_member = np.moveaxis(sums, 2, 1) / np.where(kept_count > 0, kept_count, np.nan)[None, :, None]
    scorable = kept_count > 0
    mean = per_member.mean(axis=0) if len(scores) else np.full((n, k), np.nan)
    best = np.where(scorable, np.nan_to_num(mean, nan=-1.0).argmax(axis=1), 0)
    for i, c in enumerate(classes):
        table[f"p_{c}"] = np.where(scorable, mean[:, i], np.nan)
    call = np.array(classes, dtype=object)[best]
    for i in np.flatnonzero(~scorable):  # no tile, or every tile abstained: the reason is the call
        call[i] = (
            tilestore.empty_reason(tilesets[i]) if not len(tilesets[i]) else pd.Series(abstain[owner == i]).mode()[0]
        )
    call[scorable & (table["abstained_share"] > (1 if max_share is None else max_share)).to_numpy()] = MOSTLY_ABSTAINED
    table["call"] = call
    chosen = per_member[:, np.arange(n), best] if len(scores) else np.full((0, n), np.nan)
    table["spread"] = np.where(scorable, chosen.std(axis=0) if len(scores) else np.nan, np.nan)
    table["agreement"] = np.where(
        scorable, (per_member.argmax(axis=2) == best).mean(axis=0) if len(scores) else np.nan, np.nan
    )
    # Right or wrong only for a class the model has: an image of another known class has no correct call.
    table["correct"] = [
        bool(c == known) if known in classes and c in classes else None for c, known in zip(call, table["known_class"])
    ]
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
        tiles, images = scored_tables(
            [chunk[i] for i in mine],
            scores[:, at],
            None if novelty is None else novelty[:, at],
            classes,
            allowed[mine[0]],
            options,
            shifted,
        )
        tile_parts.append(tiles.assign(_order=at))
        image_parts.append(images.assign(_order=mine))
    return tuple(
        pd.concat(parts).sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)
        for parts in (tile_parts, image_parts)
    )


def group_table(tiles, images, classes, max_share=None):
    """Per group (a well; the image itself unless a sheet names groups): images, tiles (cells), the mean class
    probability over its tiles, the call, how many tiles (cells) are called each class, and how it was scored.
    A group with a larger abstained share than `max_share` (None: any) gets no call."""
    counted = images.groupby("group", sort=False).agg(
        images=("image", "size"),
        unit=("unit", "first"),
        tiles=("tiles", "sum"),
        unlike_training=("unlike_training", "sum"),
        uncertain=("uncertain", "sum"),
        image_shift=("image_shift", "sum"),
        **{f"called_{c}": (f"called_{c}", "sum") for c in classes},
        scored_by=("scored_by", "first"),
    )
    # A group whose images were scored in different ways names each way (a lambda per group took seconds at 10^5).
    ways = images.drop_duplicates(["group", "scored_by"])
    mixed = ways[ways["group"].duplicated(keep=False)]
    if len(mixed):
        each_way = mixed.groupby("group", sort=False)["scored_by"].agg("; ".join)
        counted.loc[mixed["group"].unique(), "scored_by"] = each_way
    counted["abstained_share"] = abstained_share(counted)
    if tiles.empty:  # no image gave a tile: each group says why
        return counted.assign(call=images.groupby("group", sort=False)["call"].first()).reset_index()
    # Abstained tiles (cells) are left out of the group's probabilities, as of its counts.
    mean = tiles[tiles["abstain"] == ""].groupby("group", sort=False)[[f"p_{c}" for c in classes]].mean()
    table = counted.join(mean)
    probabilities = table[[f"p_{c}" for c in classes]].to_numpy()
    # A group with no probability says why: its images' reason (abstained, no cells found, or not scored).
    reasons = images.groupby("group", sort=False)["call"].first()
    table["call"] = [
        classes[int(np.argmax(p))] if np.isfinite(p).any() else reasons[group]
        for group, p in zip(table.index, probabilities)
    ]
    mostly = table["call"].isin(classes) & (table["abstained_share"] > (1 if max_share is None else max_share))
    table.loc[mostly, "call"] = MOSTLY_ABSTAINED
    called = table[[f"called_{c}" for c in classes]].sum(axis=1)
    for c in classes:
        table[f"fraction_{c}"] = table[f"called_{c}"] / called.where(called > 0)
    return table.reset_index()


def with_quality(images, qc_table):
    """The image table with each image's distance from the training images' quality measures (qc_distance) and
    the measures that moved (unlike_training_images, '' where none); NaN and '' without a QC table."""
    if qc_table is None:
        return images.assign(qc_distance=np.nan, unlike_training_images="")
    found = qc_table.set_index("image")
    return images.assign(
        qc_distance=images["image"].map(found["qc_distance"]),
        unlike_training_images=images["image"].map(found["unlike"]).fillna(""),
    )


def write_table(frame, path):
    """A table as Parquet (.parquet: typed and compressed, for tables of millions of rows) or TSV, atomically."""
    from cellclass.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        if Path(path).suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, sep="\t", index=False)
