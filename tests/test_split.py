"""The split: per group, deterministic, stable when images are added, checked before training."""

import numpy as np
import pandas as pd
import pytest

from cellclass.io.datasets import Sample
from cellclass.io.errors import InputError
from cellclass.prepare import split


def samples(n_per_class, classes=("control", "snap29"), start=0):
    return [Sample(f"{c}/f{i}", (f"{c}/f{i}.tif",), c, f"{c}/f{i}") for c in classes for i in range(start, n_per_class)]


def test_split_is_deterministic_and_near_the_fraction():
    data = samples(500)
    sides = split.assign(data, seed=0, test_fraction=0.2)
    assert sides == split.assign(data, seed=0, test_fraction=0.2)
    test_share = sum(v == "test" for v in sides.values()) / len(sides)
    assert 0.16 < test_share < 0.24
    assert sides != split.assign(data, seed=1, test_fraction=0.2)


def test_adding_images_never_moves_existing_ones():
    before = split.assign(samples(40), seed=3, test_fraction=0.2, validation_fraction=0.1)
    after = split.assign(samples(41), seed=3, test_fraction=0.2, validation_fraction=0.1)
    assert all(after[g] == side for g, side in before.items())
    assert set(before.values()) == {"train", "validation", "test"}


def test_groups_stay_together():
    data = [Sample(f"c/f{i}", ("x",), "c", f"well{i // 3}") for i in range(30)]
    data += [Sample(f"d/f{i}", ("x",), "d", f"dwell{i // 3}") for i in range(30)]
    sides = split.assign(data, seed=0, test_fraction=0.3)
    assert set(sides) == {s.group for s in data}


def test_tiny_class_still_gets_a_test_and_a_train_group():
    for seed in range(20):
        sides = split.assign(samples(2), seed=seed, test_fraction=0.2)
        for cls in ("control", "snap29"):
            got = {sides[f"{cls}/f{i}"] for i in range(2)}
            assert got == {"train", "test"}


def test_test_only_dataset_is_all_test():
    assert set(split.assign(samples(5), seed=0, test_fraction=0.2, test_only=True).values()) == {"test"}


def manifest(rows):
    return pd.DataFrame(rows, columns=["class", "split"]).assign(fold=0)


def test_check_rejects_missing_test_or_missing_class():
    with pytest.raises(InputError, match="dataset d: the split has no test tiles"):
        split.check(manifest([("a", "train"), ("b", "train")]), "d")
    with pytest.raises(InputError, match="class 'b' has no training tiles"):
        split.check(manifest([("a", "train"), ("b", "test")]), "d")
    with pytest.raises(InputError, match="no tiles at all"):
        split.check(manifest([]), "d", test_only=True)
    split.check(manifest([("a", "train"), ("b", "train"), ("a", "test")]), "d")


def test_counts_table_counts_images_with_and_without_tiles():
    from cellclass.io.tilestore import TileSet

    def tileset(sample, cls, n, skipped=None):
        meta = {"sample": sample, "group": sample, "class": cls, "skipped": skipped}
        return TileSet(np.empty((0,)), np.arange(n), np.arange(n), meta)

    sides = [{"a1": "train", "a2": "train", "a3": "test", "b1": "train", "b2": "test"}]
    images = split.image_table(
        [
            tileset("a1", "a", 5),
            tileset("a2", "a", 0, skipped="x.tif: not a TIFF"),
            tileset("a3", "a", 2),
            tileset("b1", "b", 3),
            tileset("b2", "b", 0),
        ],
        sides,
    )
    assert list(images["reason"]) == ["", "skipped: x.tif: not a TIFF", "", "", "no cells found"]
    table = split.counts(images).set_index(["fold", "class", "split"])
    assert table.loc[(0, "a", "train")].tolist() == [2, 1, 5]
    assert table.loc[(0, "a", "test")].tolist() == [1, 0, 2]
    assert table.loc[(0, "b", "test")].tolist() == [1, 1, 0]
    assert list(table.index.get_level_values("split")) == ["train", "test", "train", "test"]


def test_forced_moves_are_noted_not_logged_at_planning(caplog):
    notes = []
    sides = split.assign(samples(2), seed=0, test_fraction=0.01, notes=notes)
    assert set(sides.values()) == {"train", "test"}
    assert notes and all("no group hashed to test" in n for n in notes)
    assert not caplog.records


def test_validation_is_carved_from_training_groups_one_per_class_when_possible():
    carved = 0
    for seed in range(20):
        sides = split.assign(samples(3), seed=seed, test_fraction=0.2, validation_fraction=0.2)
        for cls in ("control", "snap29"):
            got = sorted(sides[f"{cls}/f{i}"] for i in range(3))
            # Test keeps what hashed there; of the rest, one trains and one validates when there are two.
            assert "train" in got and "test" in got
            assert got.count("test") == 2 or got == ["test", "train", "validation"]
            carved += got == ["test", "train", "validation"]
    assert carved > 20
    # Two groups: one to train, one to test, none spare for validation.
    sides = split.assign(samples(2), seed=0, test_fraction=0.2, validation_fraction=0.2)
    assert "validation" not in sides.values()


def test_a_fixed_split_overrides_the_hash():
    data = [Sample(f"c/f{i}", ("x",), "c", f"c{i}", "test" if i == 0 else "train") for i in range(4)]
    data += [Sample(f"d/f{i}", ("x",), "d", f"d{i}", "validation" if i == 3 else "") for i in range(4)]
    notes = []
    sides = split.assign(data, seed=0, test_fraction=0.2, validation_fraction=0.2, notes=notes)
    assert [sides[f"c{i}"] for i in range(4)] == ["test", "train", "train", "train"]
    assert sides["d3"] == "validation" and not any(n.startswith("class c") for n in notes)


def test_cross_validation_tests_every_group_exactly_once_stratified_by_class():
    data = samples(7, classes=("a", "b", "c"))
    notes = []
    folds = split.cross_validation(data, seed=1, folds=3, validation_fraction=0.2, notes=notes)
    assert folds == split.cross_validation(data, seed=1, folds=3, validation_fraction=0.2)
    assert len(folds) == 3 and all(set(f) == {s.group for s in data} for f in folds)
    tested = [g for f in folds for g, side in f.items() if side == "test"]
    assert sorted(tested) == sorted(s.group for s in data)  # each group tested once
    for f in folds:
        for cls in ("a", "b", "c"):
            sides = [side for g, side in f.items() if g.startswith(f"{cls}/")]
            assert sides.count("test") in (2, 3)  # 7 groups dealt to 3 folds
            assert sides.count("validation") == 1  # round(0.2 * 7)
            assert sides.count("train") >= 3
    assert split.cross_validation(data, seed=2, folds=3) != folds


def test_a_class_of_one_image_stops_the_plan_saying_what_the_split_needs_and_what_to_do():
    """Its one group trains (no error: it is only untested) or goes to test or validation, where no run learns it."""
    data = [*samples(6, classes=("control",)), Sample("snap29/f0", ("snap29/f0.tif",), "snap29", "snap29/f0")]
    stopped = []
    for seed in range(12):
        try:
            sides = split.fold_sides(
                data, seed=seed, folds=1, test_fraction=0.25, validation_fraction=0.2, dataset="mine"
            )
            assert sides[0]["snap29/f0"] == "train"
        except InputError as error:
            stopped.append(str(error))
    assert stopped
    assert all(
        m.startswith("dataset mine: class 'snap29' has 1 image (group), and the split sent it to the ") for m in stopped
    )
    assert (
        "The split needs at least 2 groups of each class: 1 to train, 1 to test (3 with a validation group, "
        "split.validation_fraction 0.2). Add images of 'snap29'; or list the images in a sample sheet "
        "(datasets.<name>.sheet: path, class, group, split) whose `split` column fixes"
    ) in stopped[0]
    assert "leave 'snap29' out of the dataset" in stopped[0] and "lower split.folds" not in stopped[0]
    # Three wells of two images each: the message counts both.
    wells = [Sample(f"c/f{i}", ("x",), "c", f"well{i // 2}") for i in range(6)] + data[:6]
    with pytest.raises(
        InputError,
        match=r"dataset d: class 'c' has 6 images in 3 groups, and split.folds 4 tests a "
        r"group of it in each fold\. The split needs at least 4 groups of each class: "
        r"one tested in each fold while the others train.* or lower split.folds",
    ):
        split.fold_sides(wells, seed=0, folds=4, test_fraction=0.2, validation_fraction=0.2, dataset="d")


def test_cross_validation_needs_a_group_per_fold_and_no_fixed_split():
    with pytest.raises(
        InputError,
        match="class 'control' has 2 images \\(groups\\), and split.folds 3 tests a group "
        "of it in each fold. The split needs at least 3 groups of each class",
    ):
        split.cross_validation(samples(2), seed=0, folds=3)
    fixed = [Sample("c/f0", ("x",), "c", "c0", "test"), *samples(3)]
    with pytest.raises(InputError, match="c/f0: the sample sheet fixes its split \\(test\\), but split.folds is 2"):
        split.cross_validation(fixed, seed=0, folds=2)


def test_fold_sides_is_one_split_unless_cross_validating():
    data = samples(6)
    one = split.fold_sides(data, seed=0, folds=1, test_fraction=0.3, validation_fraction=0.2)
    assert one == [split.assign(data, seed=0, test_fraction=0.3, validation_fraction=0.2)]
    assert len(split.fold_sides(data, seed=0, folds=3, test_fraction=0.3, validation_fraction=0.2)) == 3
    only = split.fold_sides(data, seed=0, folds=3, test_fraction=0.3, validation_fraction=0.2, test_only=True)
    assert len(only) == 1 and set(only[0].values()) == {"test"}


def tileset(sample, cls, n, copies=1):
    """A TileSet of `n` grid tiles, each in `copies` augmented copies (op rot0, angle30, ...)."""
    from cellclass.io.tilestore import TileSet

    rows = np.tile(np.arange(n) * 32, copies)
    ops = np.repeat(["rot0", "angle30", "angle60"][:copies], n)
    meta = {"sample": sample, "class": cls, "group": "well1"}
    return TileSet(np.zeros((n * copies, 4, 4, 1), np.float32), rows, np.zeros(n * copies, int), meta, {"op": ops})


def test_a_random_tile_split_is_deterministic_near_its_fractions_and_ignores_images():
    images = [tileset(f"{c}{i}", c, 100) for c in ("a", "b") for i in range(5)]
    sides = split.tile_sides(images, seed=0, test_fraction=0.25, validation_fraction=0.1)
    assert sides == split.tile_sides(images, seed=0, test_fraction=0.25, validation_fraction=0.1)
    assert sides != split.tile_sides(images, seed=1, test_fraction=0.25, validation_fraction=0.1)
    ids = [tile for t in images for tile in t.tile_ids(op=False)]
    assert sorted(sides) == sorted(ids)  # every tile has exactly one side
    shares = pd.Series(sides).value_counts(normalize=True)
    assert 0.21 < shares["test"] < 0.29 and 0.07 < shares["validation"] < 0.13
    # The leak it measures: every image (and the one well they share) has tiles on both sides.
    for image in images:
        assert {sides[tile] for tile in image.tile_ids(op=False)} >= {"train", "test"}


def test_a_tiny_random_tile_split_still_has_every_side():
    for seed in range(20):
        sides = split.tile_sides(
            [tileset("a0", "a", 3), tileset("b0", "b", 3)], seed=seed, test_fraction=0.05, validation_fraction=0.05
        )
        for cls in ("a", "b"):
            assert sorted(side for tile, side in sides.items() if tile.startswith(cls)) == [
                "test",
                "train",
                "validation",
            ]


def test_the_control_runs_sides_hold_each_tile_once_with_its_copies():
    from cellclass.learn.training import on_tile_side

    originals = [tileset(f"{c}{i}", c, 20) for c in ("a", "b") for i in range(2)]
    copies = [tileset(f"{c}{i}", c, 20, copies=3) for c in ("a", "b") for i in range(2)]
    sides = split.tile_sides(originals, seed=3, test_fraction=0.3, validation_fraction=0.1)
    held = {
        side: [tile for t in on_tile_side(originals, sides, side) for tile in t.tile_ids(op=False)]
        for side in split.SPLITS
    }
    every = [tile for t in originals for tile in t.tile_ids(op=False)]
    assert sorted(sum(held.values(), [])) == sorted(every)
    # An augmented copy trains where its original does, so no copy of a test tile is trained on.
    trained = on_tile_side(copies, sides, "train")
    assert {tile for t in trained for tile in t.tile_ids(op=False)} == set(held["train"])
    assert sum(len(t) for t in trained) == 3 * len(held["train"])
