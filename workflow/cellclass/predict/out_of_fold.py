"""Out-of-fold scoring: an image of a prediction set that is also a training image is scored only by the runs
that never saw it.

A prediction set shares an image with the experiment's training dataset when they read the same raw file, or
when both are plates with a well of the same plate name and well. A run has seen an image when its group was on
the training side (or the validation side, which chose the run's epoch) of the run's fold, so only runs with it
on their test side may score it: under k folds, the runs of its one fold. With a single split a training image
has none: it is not scored, and the plate assay leaves it out. Scoring it with the runs that trained on it
would make a screen's controls look better separated than they are. An image with cells labelled in the
dataset's extra_labels sheet is a training image too: its cells join every run's training side, so no run may
score it.
"""

import os
from collections import defaultdict

from cellclass.prepare import extra_labels

ALL_RUNS = "all runs"
NOT_SCORED = "not scored"
EVERY_RUN_SAW_IT = f"{NOT_SCORED}: every run trained on it (its training or validation side)"
EVERY_RUN_SAW_ITS_CELLS = f"{NOT_SCORED}: every run trained on its cells labelled in the dataset's extra_labels sheet"
UNCHECKED = "all members of the package (a package has no split: not checked against its training images)"


def shared_images(samples, layout, dataset):
    """Sample id of a prediction set -> the sorted ids of `dataset`'s samples it shares a raw file (same resolved
    path) or a plate well (same plate and well) with, extra images (`extra:<image>`, from its extra_labels sheet)
    among them; `samples` maps id -> Sample, `layout` is the prediction set's plate layout or None."""
    by_file, by_well = defaultdict(set), defaultdict(set)
    # An extra image's id is its group's (`extra:<image>`): its bare name may be a dataset sample's too.
    files = [(s.id, s.files) for s in dataset.samples.values()] + [(i.sample().group, i.files) for i in dataset.extra]
    for sid, paths in files:
        for path in paths:
            by_file[os.path.realpath(path)].add(sid)
    for row in dataset.layout or []:
        by_well[(row["plate"], row["well"])].add(row["sample"])
    wells = {row["sample"]: (row["plate"], row["well"]) for row in layout or []}
    shared = {}
    for sid, sample in samples.items():
        found = set(by_well.get(wells.get(sid), ()))
        for path in sample.files:
            found |= by_file.get(os.path.realpath(path), set())
        if found:
            shared[sid] = sorted(found)
    return shared


def scorers(shared, dataset, run_folds):
    """Per shared image, the runs that may score it and how it is scored: {sample id: {"members": indices into
    the runs, "scored_by": words}}. `run_folds` is each run's fold; a run may score an image when every training
    image it shares is on that fold's test side."""
    plans = {}
    for sid, matches in shared.items():
        members = [i for i, fold in enumerate(run_folds) if all(dataset.side(m, fold) == "test" for m in matches)]
        plans[sid] = {"members": members, "scored_by": _words(members, run_folds, dataset.folds, matches)}
    return plans


def _words(members, run_folds, folds, matches):
    if not members:
        return EVERY_RUN_SAW_ITS_CELLS if any(m.startswith(extra_labels.PREFIX) for m in matches) else EVERY_RUN_SAW_IT
    runs = f"{len(members)} run{'s' if len(members) > 1 else ''}"
    if folds == 1:
        return f"out of fold (test side of the split, {runs})"
    tested = sorted({run_folds[i] for i in members})
    return f"out of fold (fold{'s' if len(tested) > 1 else ''} {', '.join(map(str, tested))}, {runs})"


def is_withheld(scored_by):
    """Whether a table's `scored_by` entries say that no run could score the image (a pandas Series in, out)."""
    return scored_by.fillna("").str.startswith(NOT_SCORED)
