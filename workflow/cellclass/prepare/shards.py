"""Which shard of a dataset each raw image goes to: a stable hash of its id.

One job tiles (augments, predict-tiles) a whole shard, so the cost of starting
Python and Snakemake is paid per shard, not per image. The shard count is a
power of two near n_images / images_per_job, so adding an image changes only
its own shard until the dataset grows past a doubling (then every shard is
made once more). images_per_job 1 keeps one shard per image, named by its id.
"""

import hashlib
import math

# Per kind, images a shard holds by default: each shard is some tens of seconds
# of work. A megapixel field takes ~0.1-0.3 s to read, threshold and tile; a
# small single-cell crop ~0.5 ms, so a cells shard that costs as much as the
# ~2 s of starting its job needs thousands of crops.
DEFAULT_IMAGES_PER_JOB = {"fields": 100, "cells": 5000, "nuclei": 100}


def images_per_job(prepare):
    """The shard size a dataset's prepare settings ask for (null: the kind's default)."""
    return prepare["images_per_job"] or DEFAULT_IMAGES_PER_JOB[prepare["kind"]]


def shard_count(n_images, per_job):
    """A power of two, n_images / per_job rounded in log scale (at least 1)."""
    if n_images <= per_job:
        return 1
    return 2 ** round(math.log2(n_images / per_job))


def image_hash(image_id):
    return int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:8], "big")


def assign(image_ids, per_job):
    """Shard name -> the image ids it holds, in the given order; shard names sort in shard order."""
    image_ids = list(image_ids)
    if per_job == 1:
        return {image_id: [image_id] for image_id in image_ids}
    count = shard_count(len(image_ids), per_job)
    width = len(str(count - 1))
    shards = {f"shard{i:0{width}d}-of-{count}": [] for i in range(count)}
    names = list(shards)
    for image_id in image_ids:
        shards[names[image_hash(image_id) % count]].append(image_id)
    return {name: ids for name, ids in shards.items() if ids}
