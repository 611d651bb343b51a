"""The validation side's two uses, each on cells of its own: one part chooses the epoch (and stops early), the
other fits the temperature (cellclass.learn.calibration) and the novelty threshold (cellclass.learn.novelty).

A temperature or a quantile fitted on the tiles that also picked the epoch is fitted on tiles the model was
selected to do well on, so it comes out optimistic. Cross-fitting (each half choosing for the other) would need
the epoch chosen twice, that is two trainings; a split needs one.

Per class, the validation groups are ranked by a hash of (SALT, group id) and the first half (rounded down)
chooses the epoch, the rest calibrates: the larger half goes to calibration, whose novelty quantile needs the
tiles most. A class with one validation group splits that group's images the same way (its two parts then
share the group: noted); a class with one validation image lets that image serve both uses (noted). Tiles of
one image never straddle the parts. The split depends only on the group and image ids, never on the run's
seed, so every seed of a fold has the same calibration part: the ensemble's temperature is fitted on it.

When nothing is chosen on the validation side (the last epoch is kept and nothing stops early, as
`train.recipe: article` does), the whole side calibrates; the curves still show all of it.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass

from cellclass.prepare.split import unit_hash

SALT = "validation use"


@dataclass
class Uses:
    """The TileSets that choose the epoch (the curves show them), those that calibrate, and metrics.json's
    `validation_uses` record (tiles, images and groups of each use, those shared, notes)."""

    epoch: list
    calibration: list
    record: dict


def chooses_epoch(options):
    """Whether a run with these train settings chooses anything on its validation side: the best epoch, or when
    to stop early (cellclass.learn.training.epoch_chooser)."""
    return options["keep_epoch"] == "best" or options["patience"] is not None


def group_of(tileset):
    return tileset.meta.get("group") or tileset.meta["sample"]


def classes_of_groups(tilesets):
    """{class: {group: [sample ids]}}, a group filed under the class of most of its tiles (ties: by name)."""
    tiles = defaultdict(Counter)
    samples = defaultdict(list)
    for tileset in tilesets:
        tiles[group_of(tileset)][tileset.meta["class"]] += len(tileset)
        samples[group_of(tileset)].append(tileset.meta["sample"])
    by_class = defaultdict(dict)
    for group, counts in tiles.items():
        cls = min(counts, key=lambda c: (-counts[c], c))
        by_class[cls][group] = samples[group]
    return by_class


def halves(ids):
    """(first, rest) of `ids` ranked by their hash: the first half, rounded down, and the rest."""
    ranked = sorted(ids, key=lambda i: unit_hash(SALT, i))
    return ranked[: len(ranked) // 2], ranked[len(ranked) // 2 :]


def deal(cls, groups, notes):
    """{sample id: 'epoch', 'calibration' or 'both'} for one class's validation `groups` ({group: samples})."""
    if len(groups) >= 2:
        first, rest = halves(groups)
        return {s: "epoch" for g in first for s in groups[g]} | {s: "calibration" for g in rest for s in groups[g]}
    [(group, samples)] = groups.items()
    if len(samples) >= 2:
        first, rest = halves(samples)
        notes.append(
            f"class {cls}: one validation group ({group}); its {len(samples)} images are split between "
            "choosing the epoch and calibrating, so the two parts share that group"
        )
        return {s: "epoch" for s in first} | {s: "calibration" for s in rest}
    notes.append(
        f"class {cls}: one validation image ({samples[0]}); it both chooses the epoch and fits the "
        "temperature and novelty threshold"
    )
    return {samples[0]: "both"}


def counts(tilesets):
    """Tiles, images and groups of `tilesets`."""
    return {
        "tiles": sum(len(t) for t in tilesets),
        "images": len({t.meta["sample"] for t in tilesets}),
        "groups": len({group_of(t) for t in tilesets}),
    }


def split(tilesets, *, chooses):
    """The validation side's Uses: `chooses` (chooses_epoch) says whether anything is chosen on it."""
    tilesets = list(tilesets)
    if not chooses:
        note = (
            "nothing is chosen on the validation side (the last epoch is kept, no early stopping): all of it "
            "fits the temperature and novelty threshold; the curves show it too"
        )
        record = {"epoch": None, "calibration": counts(tilesets), "shared": counts([]), "notes": [note]}
        return Uses(tilesets, tilesets, record)
    notes, part = [], {}
    for cls, groups in sorted(classes_of_groups(tilesets).items()):
        part |= deal(cls, groups, notes)
    epoch = [t for t in tilesets if part[t.meta["sample"]] in ("epoch", "both")]
    calibration = [t for t in tilesets if part[t.meta["sample"]] in ("calibration", "both")]
    shared = [t for t in tilesets if part[t.meta["sample"]] == "both"]
    record = {"epoch": counts(epoch), "calibration": counts(calibration), "shared": counts(shared), "notes": notes}
    return Uses(epoch, calibration, record)


def words(record):
    """A run's `validation_uses` in words, for its log."""
    if record["epoch"] is None:
        return record["notes"][0]
    e, c, s = record["epoch"], record["calibration"], record["shared"]
    text = (
        f"validation side: {e['tiles']} tiles ({e['images']} image(s)) choose the epoch, {c['tiles']} tiles "
        f"({c['images']} image(s)) fit the temperature and novelty threshold"
    )
    return text + (f"; {s['images']} image(s) serve both" if s["images"] else "")
