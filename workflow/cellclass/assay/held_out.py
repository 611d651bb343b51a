"""assay.scoring: out_of_fold_all: every well of a plate the runs partly trained on is scored as its controls are.

By default (out_of_fold) a control well the runs' training dataset holds is scored only by the runs of the fold
that held it out, while the plate's other wells (samples) are scored by every run: Z' then describes a smaller
ensemble than the one that scored the samples. Under out_of_fold_all each of those other wells is dealt to a
fold too, so it is scored by that fold's runs alone, as a held-out control of that fold is: every well of the
plate by one fold's runs. Planned before any job runs (a pure function of the plan's samples and split).
"""

from collections import defaultdict

from cellclass.prepare.split import unit_hash


def fold_of_wells(wells, *, seed, folds):
    """(plate, well) -> fold, the wells of each plate ranked by a hash of (seed, plate/well) and dealt to folds in
    turn, as cross-validation deals groups: each fold gets about 1/k of a plate's wells, and a well's fold is a
    fixed function of the seed and the plate's wells."""
    by_plate = defaultdict(list)
    for plate, well in sorted(set(wells)):
        by_plate[plate].append(well)
    dealt = {}
    for plate, names in by_plate.items():
        ranked = sorted(names, key=lambda w: unit_hash(f"{seed}:held_out", f"{plate}/{w}"))
        dealt.update({(plate, w): rank % folds for rank, w in enumerate(ranked)})
    return dealt


def held_out_words(fold, members, folds):
    """How a well dealt to a fold is scored, in the words out_of_fold uses, so both read as one scorer."""
    runs = f"{len(members)} run{'s' if len(members) != 1 else ''}"
    where = "test side of the split" if folds == 1 else f"fold {fold}"
    return f"held out with its plate's controls ({where}, {runs})"


def score_every_well(scoring, layout, run_folds, *, folds, seed):
    """The prediction set's `scoring` (sample id -> {"members", "scored_by"}, out_of_fold.scorers) with every
    other image of each plate that shares a well with the training dataset added: scored by the runs of the
    fold its well is dealt to (fold_of_wells). Plates that share no well are left to every run."""
    well_of = {row["sample"]: (row["plate"], row["well"]) for row in layout or []}
    shared_plates = {well_of[sid][0] for sid in scoring if sid in well_of}
    others = {sid: key for sid, key in well_of.items() if key[0] in shared_plates and sid not in scoring}
    dealt = fold_of_wells(others.values(), seed=seed, folds=folds)
    planned = dict(scoring)
    for sid, key in others.items():
        members = [i for i, fold in enumerate(run_folds) if fold == dealt[key]]
        planned[sid] = {"members": members, "scored_by": held_out_words(dealt[key], members, folds)}
    return planned
