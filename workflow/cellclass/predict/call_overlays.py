"""Overlays of the calls on their fields: which images are worth drawing, and drawing them.

Takes a prediction set's image and tile tables and each image's TileSet meta; gives a PNG per chosen image
(cellclass.predict.call_figures.call_overlay) and how many were drawn.
"""

from pathlib import Path

import numpy as np

from cellclass.prepare import tiling


def overlay_order(images):
    """Image rows' indices in the order their overlays are worth drawing: taking turns across the calls, so every
    call is shown, and within a call the least sure first: the largest share of abstained tiles (cells), then the
    lowest probability of the call."""
    sure = [row.get(f"p_{row['call']}", np.nan) for row in images.to_dict("records")]
    ranked = images.assign(sure=sure).sort_values(
        ["abstained_share", "sure"], ascending=[False, True], na_position="last", kind="stable"
    )
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
        overlay(
            metas[index], tiles[tiles["image"] == images.loc[index, "image"]], images.loc[index], classes, overlay_dir
        )
    return len(chosen)


def overlay(meta, tiles, image, classes, overlay_dir):
    """The image's calls drawn over its field."""
    from cellclass.io.datasets import Sample
    from cellclass.predict import call_figures

    sample = Sample(meta["sample"], tuple(meta["files"]), meta["class"], meta["group"], planes=meta.get("planes", 1))
    field, _ = tiling.load_field(sample, meta["settings"])
    path = Path(overlay_dir) / f"{meta['sample']}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    drawn = tiles[tiles["call"].isin(classes)]  # an image no run could score shows its field and why
    call_figures.call_overlay(field, drawn, image, classes, meta["settings"]["tile_size"], path)
