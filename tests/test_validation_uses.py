"""The validation side split between its two uses: choosing the epoch, and fitting the temperature and the
novelty threshold. Deterministic, disjoint, by group (by image only inside a lone group), never by tile."""

import numpy as np

from cellclass.config import validate
from cellclass.io.tilestore import TileSet
from cellclass.learn import validation


def tileset(sample, cls, group, n=5):
    meta = {"sample": sample, "class": cls, "group": group, "files": [f"{sample}.tif"]}
    return TileSet(np.zeros((n, 4, 4, 1), np.float32), np.arange(n), np.zeros(n, int), meta)


def side(groups_per_class, images_per_group=2):
    """Validation TileSets: per class, `groups_per_class` groups of `images_per_group` images."""
    return [
        tileset(f"{cls}/g{g}i{i}", cls, f"{cls}-g{g}", n=3 + i)
        for cls in ("a", "b")
        for g in range(groups_per_class)
        for i in range(images_per_group)
    ]


def parts(uses):
    return [t.meta["sample"] for t in uses.epoch], [t.meta["sample"] for t in uses.calibration]


def test_groups_are_split_per_class_disjoint_and_deterministically():
    tilesets = side(5)
    uses = validation.split(tilesets, chooses=True)
    epoch, calibrate = parts(uses)
    assert not set(epoch) & set(calibrate) and sorted(epoch + calibrate) == sorted(t.meta["sample"] for t in tilesets)
    groups = {t.meta["sample"]: t.meta["group"] for t in tilesets}
    assert not {groups[s] for s in epoch} & {groups[s] for s in calibrate}  # a group never straddles the parts
    # Per class: 2 of the 5 groups choose the epoch, the larger half (3) calibrates.
    for cls in ("a", "b"):
        assert len({groups[s] for s in epoch if s.startswith(cls)}) == 2
        assert len({groups[s] for s in calibrate if s.startswith(cls)}) == 3
    # The same ids give the same parts, in whatever order they come; the run's seed plays no part.
    again = validation.split(list(reversed(tilesets)), chooses=True)
    assert sorted(parts(again)[0]) == sorted(epoch) and sorted(parts(again)[1]) == sorted(calibrate)
    record = uses.record
    assert record["epoch"]["groups"] == 4 and record["calibration"]["groups"] == 6
    assert record["epoch"]["tiles"] + record["calibration"]["tiles"] == sum(len(t) for t in tilesets)
    assert record["epoch"]["images"] == 8 and record["shared"] == {"tiles": 0, "images": 0, "groups": 0}
    assert record["notes"] == []


def test_a_lone_group_is_split_by_image_and_a_lone_image_serves_both_uses():
    tilesets = side(1, images_per_group=3)[:3] + [tileset("b/only", "b", "b-only", n=7)]
    uses = validation.split(tilesets, chooses=True)
    epoch, calibrate = parts(uses)
    assert len([s for s in epoch if s.startswith("a/")]) == 1 and len([s for s in calibrate if s.startswith("a/")]) == 2
    assert "b/only" in epoch and "b/only" in calibrate
    assert uses.record["shared"] == {"tiles": 7, "images": 1, "groups": 1}
    assert any("one validation group (a-g0)" in note for note in uses.record["notes"])
    assert any("one validation image (b/only)" in note for note in uses.record["notes"])


def test_a_group_goes_with_the_class_of_most_of_its_tiles():
    tilesets = [
        tileset("x1", "a", "well1", n=9),
        tileset("x2", "b", "well1", n=2),
        tileset("x3", "a", "well2"),
        tileset("y1", "b", "well3"),
        tileset("y2", "b", "well4"),
    ]
    epoch, calibrate = parts(validation.split(tilesets, chooses=True))
    assert {"x1", "x2"} <= set(epoch) or {"x1", "x2"} <= set(calibrate)


def test_nothing_chosen_on_validation_lets_all_of_it_calibrate():
    article = validate({"train": {"recipe": "article"}, "datasets": {"d": {"demo": {"pattern": "aggregates"}}}})
    modern = validate({"datasets": {"d": {"demo": {"pattern": "aggregates"}}}})
    assert not validation.chooses_epoch(article["experiments"]["d"]["train"])
    assert validation.chooses_epoch(modern["experiments"]["d"]["train"])
    tilesets = side(3)
    uses = validation.split(tilesets, chooses=False)
    assert uses.epoch == tilesets and uses.calibration == tilesets  # the curves still show it all
    assert uses.record["epoch"] is None and uses.record["calibration"]["images"] == 12
    assert "nothing is chosen" in validation.words(uses.record)


def test_an_empty_validation_side_has_empty_parts():
    uses = validation.split([], chooses=True)
    assert uses.epoch == [] and uses.calibration == [] and uses.record["calibration"]["tiles"] == 0
