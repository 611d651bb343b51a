"""Image -> shard assignment: stable under additions, sized by images_per_job, one per image at size 1."""

import pytest

from cellclass.prepare import shards

IDS = [f"class{i % 6}/cell_{i:05d}" for i in range(13600)]


def test_shard_count_is_a_power_of_two_near_images_per_job():
    assert shards.shard_count(5, 100) == 1
    assert shards.shard_count(13600, 5000) == 2  # 2.7 -> 2
    assert shards.shard_count(13600, 100) == 128  # 136 -> 128
    assert shards.shard_count(100000, 100) == 1024
    sizes = [len(ids) for ids in shards.assign(IDS, 100).values()]
    assert len(sizes) == 128 and sum(sizes) == len(IDS)
    assert 0.7 * 106 < min(sizes) and max(sizes) < 1.3 * 106  # the hash spreads images evenly


def test_adding_an_image_changes_only_its_own_shard():
    before = shards.assign(IDS, 100)
    after = shards.assign([*IDS, "class0/new_cell"], 100)
    changed = {name for name in after if after[name] != before.get(name)}
    assert len(changed) == 1 and "class0/new_cell" in after[changed.pop()]


def test_assignment_depends_on_the_id_not_on_order():
    forward = shards.assign(IDS, 100)
    backward = shards.assign(IDS[::-1], 100)
    assert {n: sorted(v) for n, v in forward.items()} == {n: sorted(v) for n, v in backward.items()}


def test_one_image_per_job_names_each_shard_by_its_image():
    assert shards.assign(IDS[:3], 1) == {i: [i] for i in IDS[:3]}


@pytest.mark.parametrize(("kind", "expected"), [("fields", 100), ("cells", 5000)])
def test_default_shard_size_follows_the_kind(kind, expected):
    assert shards.images_per_job({"kind": kind, "images_per_job": None}) == expected
    assert shards.images_per_job({"kind": kind, "images_per_job": 7}) == 7
