"""The split: per group, deterministic, stable when images are added, checked before training."""

import pandas as pd
import pytest

from cellclass import split
from cellclass.datasets import Sample
from cellclass.errors import InputError


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
    return pd.DataFrame(rows, columns=["class", "split"])


def test_check_rejects_missing_test_or_missing_class():
    with pytest.raises(InputError, match="dataset d: the split has no test tiles"):
        split.check(manifest([("a", "train"), ("b", "train")]), "d")
    with pytest.raises(InputError, match="class 'b' has no training tiles"):
        split.check(manifest([("a", "train"), ("b", "test")]), "d")
    with pytest.raises(InputError, match="no tiles at all"):
        split.check(manifest([]), "d", test_only=True)
    split.check(manifest([("a", "train"), ("b", "train"), ("a", "test")]), "d")


def test_counts_table():
    table = split.counts(manifest([("a", "train"), ("a", "train"), ("a", "test"), ("b", "train")]))
    assert table.loc["a", "train"] == 2 and table.loc["b", "test"] == 0
    assert list(table.columns) == ["train", "test"]
