"""Nuclei segmentation: our watershed pipeline against a plain Otsu threshold, same fields, one run.

Fields are freshly rendered demo fields (both patterns, --fields per class,
1024 px and 100 cells as config/config.yaml uses), normalised as the workflow
does; rendering and normalising are not timed. Timed, in megapixels of field
per second:
  A, ours:     segment.segment_nuclei with the config's defaults (smooth, Otsu with
               the contrast check, fill holes, distance watershed, border and
               area filters, relabel).
  B, baseline: Otsu threshold of the raw nuclear channel, then connected
               components (no smoothing, no watershed, no filters).
  C, cells:    segment.grow_cells from A's nuclei, timed on its own.
A and B alternate, `--repeat` times (default 3); medians and ranges are printed,
and the ratio of the medians. Then detection at IoU >= 0.5 against the demo's
nucleus truth, per pattern: objects touching the border are left out of truth
and of both results alike, so the scores compare the splitting and filtering,
not the border rule. A third, untimed row runs ours with plain connected
components in place of the watershed split, to show what the split buys.
Cells are scored against the truth cells of the nuclei that remain.

Last, the workflow: the whole prepare stage (`snakemake --cores 2 --until split`:
the tile jobs and the split) on `--stage-fields` demo fields per class written
to a folder, as single-cell crops (`kind: nuclei`, cells grown) against the
grid tiling (`kind: fields`), alternated, from scratch each time.

    python bench/segment.py [--fields 2] [--size 1024] [--cells 100] [--repeat 3] [--stage-fields 12]
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.segmentation import clear_border

from cellclass.config import validate
from cellclass.demo import synthetic
from cellclass.prepare import segment
from cellclass.prepare.crops import segment_options
from cellclass.prepare.foreground import foreground_mask
from cellclass.prepare.normalise import normalise

# The workflow's defaults (config schema), with cells grown in the demo's protein channel.
_DEMO = {"datasets": {"d": {"demo": {"pattern": "aggregates"}, "prepare": {"nuclei": {"cell_channel": 0}}}}}
NUCLEI, CELLS = segment_options(validate(_DEMO)["datasets"]["d"]["prepare"]["nuclei"])


def ours(image):
    return segment.segment_nuclei(image, **NUCLEI)


def baseline(image):
    """Otsu on the nuclear channel, then connected components."""
    nuclear = image[..., NUCLEI["channel"]]
    return ndi.label(nuclear > threshold_otsu(nuclear))[0]


def unsplit(image):
    """Ours with connected components where the watershed would split touching nuclei."""
    mask = segment.fill_holes(foreground_mask(image, **NUCLEI))
    return segment.keep_objects(ndi.label(mask)[0], min_area=NUCLEI["min_area"], max_area=NUCLEI["max_area"])


def cells(image, nuclei):
    return segment.grow_cells(nuclei, image, **CELLS)


def fields(args):
    """[(pattern, normalised image, demo truth), ...], every pattern and class."""
    out = []
    for pattern in synthetic.PATTERNS:
        for cls in synthetic.CLASSES:
            for index in range(args.fields):
                truth = synthetic.render_field(
                    pattern, cls, seed=0, index=index, size=args.size, cells_per_field=args.cells
                )
                out.append((pattern, normalise(np.moveaxis(truth.image, 0, -1), method="percentile"), truth))
    return out


def timed(function, inputs):
    """Seconds to run function over every input, and its results."""
    start = time.perf_counter()
    results = [function(*x) for x in inputs]
    return time.perf_counter() - start, results


def spread(values):
    return f"median {np.median(values):7.2f}  range {min(values):7.2f}-{max(values):7.2f}"


def score(truth, found):
    """Pooled precision, recall and F1 at IoU >= 0.5 over (truth, found) label image pairs."""
    counts = np.zeros(3)
    for t, f in zip(truth, found):
        m = segment.match(t, f)
        counts += [m["true_positives"], m["false_positives"], m["false_negatives"]]
    tp, fp, fn = counts
    return f"precision {tp / (tp + fp):.3f}  recall {tp / (tp + fn):.3f}  F1 {2 * tp / (2 * tp + fp + fn):.3f}"


def stage(args):
    """Seconds of the prepare stage per kind, alternated, on fields written once to a folder dataset."""
    import yaml

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import snakemake_command  # the tests' command line

    folder = Path(tempfile.mkdtemp(prefix="segment_stage_"))
    for cls in synthetic.CLASSES:
        (folder / "data" / cls).mkdir(parents=True)
        for index in range(args.stage_fields):
            field = synthetic.render_field(
                "aggregates", cls, seed=1, index=index, size=args.size, cells_per_field=args.cells
            )
            tifffile.imwrite(
                folder / "data" / cls / f"field_{index:03d}.tif", field.image, imagej=True, metadata={"axes": "CYX"}
            )
    seconds = {"nuclei": [], "fields": []}
    for _ in range(args.repeat):
        for kind in seconds:
            config = {
                "prepare": {"kind": kind, "nuclei": {"cell_channel": 0}},
                "datasets": {"d": {"path": "data"}},
                "attribution": {"experiments": []},
            }
            (folder / "config.yaml").write_text(yaml.safe_dump(config))
            shutil.rmtree(folder / "results", ignore_errors=True)
            start = time.perf_counter()
            subprocess.run(
                snakemake_command(folder, "--quiet", "all", "--until", "split"), check=True, capture_output=True
            )
            seconds[kind].append(time.perf_counter() - start)
    shutil.rmtree(folder)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=2, help="fields per pattern and class")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--cells", type=int, default=100, help="cells per field")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stage-fields", type=int, default=12, help="fields per class of the workflow stage (0: skip)")
    args = parser.parse_args()
    data = fields(args)
    images = [(image,) for _, image, _ in data]
    megapixels = len(data) * args.size**2 / 1e6

    speed = {"ours": [], "baseline": [], "cells": []}
    for _ in range(args.repeat):
        seconds, nuclei = timed(ours, images)
        speed["ours"].append(megapixels / seconds)
        seconds, found = timed(baseline, images)
        speed["baseline"].append(megapixels / seconds)
        seconds, grown = timed(cells, [(image, n) for (image,), n in zip(images, nuclei)])
        speed["cells"].append(megapixels / seconds)

    print(f"{len(data)} demo fields of {args.size}x{args.size}, {args.cells} cells each ({megapixels:.1f} MP), "
          f"{args.repeat} runs each, MP/s")  # fmt: skip
    print(f"ours:       {spread(speed['ours'])}  (segment_nuclei)")
    print(f"baseline:   {spread(speed['baseline'])}  (Otsu + connected components)")
    print(f"ratio:      {np.median(speed['ours']) / np.median(speed['baseline']):7.2f}x  (ours / baseline)")
    print(f"grow_cells: {spread(speed['cells'])}")
    print("detection at IoU >= 0.5, objects at the border left out:")
    for pattern in synthetic.PATTERNS:
        rows = [i for i, (p, _, _) in enumerate(data) if p == pattern]
        truth = [clear_border(data[i][2].nucleus_labels) for i in rows]
        true_cells = [np.where(np.isin(data[i][2].cell_labels, t[t > 0]), data[i][2].cell_labels, 0) for i, t in
                      zip(rows, truth)]  # fmt: skip
        print(f"  {pattern:10s} ours      {score(truth, [nuclei[i] for i in rows])}")
        print(f"  {pattern:10s} baseline  {score(truth, [clear_border(found[i]) for i in rows])}")
        print(f"  {pattern:10s} no split  {score(truth, [unsplit(data[i][1]) for i in rows])}")
        print(f"  {pattern:10s} cells     {score(true_cells, [grown[i] for i in rows])}")
    if args.stage_fields:
        seconds = stage(args)
        megapixels = 2 * args.stage_fields * args.size**2 / 1e6
        print(f"prepare stage (snakemake --until split), {2 * args.stage_fields} fields ({megapixels:.1f} MP), s:")
        print(f"  nuclei crops: {spread(seconds['nuclei'])}  ({megapixels / np.median(seconds['nuclei']):.1f} MP/s)")
        print(f"  grid tiles:   {spread(seconds['fields'])}  ({megapixels / np.median(seconds['fields']):.1f} MP/s)")
        print(f"  ratio:        {np.median(seconds['nuclei']) / np.median(seconds['fields']):7.2f}x  (nuclei / grid)")


if __name__ == "__main__":
    main()
