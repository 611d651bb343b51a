"""Check the nuclei (and cells) a dataset's crops come from against the demo's ground-truth labels.

Each field is segmented as the tile job segments it and matched object by
object at IoU >= 0.5. Nuclei touching the border are dropped by design
(prepare.nuclei.exclude_border), so they leave the truth too, with their cells.
"""

import numpy as np
import pandas as pd
import tifffile
from skimage.segmentation import clear_border

from cellclass.io.atomic import atomic_path
from cellclass.prepare import crops, segment, tiling


def check_field(sample, settings, nuclei_truth, cells_truth):
    """Rows (objects: nuclei, cells) of detection scores of one field against its truth label images."""
    field, _ = tiling.load_field(sample, settings)
    nuclei, cells, _ = crops.find_objects(sample, field, settings["nuclei"])
    truth = tifffile.imread(nuclei_truth)
    if settings["nuclei"]["exclude_border"]:
        truth = clear_border(truth)
    rows = [{"sample": sample.id, "objects": "nuclei", **segment.match(truth, nuclei)}]
    if cells is not None:
        true_cells = tifffile.imread(cells_truth)
        true_cells = np.where(np.isin(true_cells, truth[truth > 0]), true_cells, 0)
        rows.append({"sample": sample.id, "objects": "cells", **segment.match(true_cells, cells)})
    return rows


def write_check(samples, settings, truth, path):
    """The segmentation check of a demo dataset: per field and object kind, then pooled ('all') per kind.
    `truth` maps a sample id to its (nuclei, cells) truth files."""
    table = pd.DataFrame([row for s in samples for row in check_field(s, settings, *truth[s.id])])
    counts = ["true_positives", "false_positives", "false_negatives"]
    pooled = table.groupby("objects", sort=False)[counts].sum().reset_index().assign(sample="all")
    tp, fp, fn = (pooled[c] for c in counts)
    pooled["precision"], pooled["recall"], pooled["f1"] = tp / (tp + fp), tp / (tp + fn), 2 * tp / (2 * tp + fp + fn)
    weighted = table.assign(w=table["mean_iou"] * table["true_positives"]).groupby("objects", sort=False)["w"].sum()
    pooled["mean_iou"] = (weighted.to_numpy() / tp.replace(0, np.nan)).to_numpy()
    with atomic_path(path) as tmp:
        pd.concat([table, pooled], ignore_index=True).to_csv(tmp, sep="\t", index=False)
