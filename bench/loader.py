"""Input pipeline: can the loader, augmenting on the fly, feed training? Loader alone against the `deep` model.

Measures, on tiles this script writes to shard files (64 px, 2 channels,
float16 as the workflow stores them):
(1) the loader alone: tiles/second of shuffled batches gathered from the shard
    files and augmented on the fly (a random one of the 8 rotations/flips per
    tile, plus brightness and contrast jitter), made one batch at a time in
    this thread: one core (target: >= 20,000 tiles/s);
(2) the same through the tf.data pipeline training uses (1 and 2 workers);
(3) training speed of the `deep` model on one thread, in tiles/second;
and prints the ratio (1)/(3): how many such training jobs one loader core
could feed. Also the cost of the optional ops (zoom, noise) and of the same
rotation/flip + jitter written as TensorFlow ops instead of NumPy.

Each figure is the median and range of 3 runs, the measurements alternated,
in wall-clock time and (for the NumPy loader) in CPU time of this process,
which a busy shared machine disturbs less.

    python bench/loader.py [--tiles 4000] [--batch 20] [--steps 40]
"""

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from cellclass.io import tilestore
from cellclass.io.tilestore import TileSet
from cellclass.learn import pipeline

TILES_PER_IMAGE = 100
IMAGES_PER_SHARD = 10
DEFAULT = dict(pipeline.NO_AUGMENTATION, dihedral=True)  # the config's default: rotations and flips only
JITTER = dict(DEFAULT, brightness=0.05, contrast=0.1)


def write_tiles(folder, n_tiles, size=64, channels=2, seed=0):
    """Random tiles in images of TILES_PER_IMAGE, IMAGES_PER_SHARD images to a shard file; returns the stored
    TileSets (read on demand, as training reads them) and their labels."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(0, n_tiles, TILES_PER_IMAGE):
        n = min(TILES_PER_IMAGE, n_tiles - i)
        meta = {"sample": f"img{i}", "class": "ab"[i // TILES_PER_IMAGE % 2], "group": f"img{i}", "files": []}
        images.append(TileSet(rng.random((n, size, size, channels), dtype=np.float32), np.zeros(n), np.zeros(n), meta))
    paths = []
    for k in range(0, len(images), IMAGES_PER_SHARD):
        paths.append(Path(folder) / f"shard{k}.npz")
        tilestore.save(paths[-1], images[k : k + IMAGES_PER_SHARD])
    tilesets = tilestore.load_all(paths)
    return tilesets, ["ab".index(t.meta["class"]) for t in tilesets]


def numpy_loader(tilesets, labels, batch, augment, start):
    """Tiles/s (wall, CPU) of one pass of batches made one by one in this thread."""
    stream = pipeline.Batches(tilesets, labels, n_classes=2, batch_size=batch, shuffle=True, seed=0, augment=augment)
    first = start * stream.per_pass  # a fresh pass each run: nothing cached from the last one
    wall, cpu = time.perf_counter(), time.process_time()
    n = sum(len(stream.at(first + b)[0]) for b in range(stream.per_pass))
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def tf_loader(tilesets, labels, batch, augment, start, workers):
    """Tiles/s of one pass through the tf.data pipeline training uses."""
    stream = pipeline.Batches(tilesets, labels, n_classes=2, batch_size=batch, shuffle=True, seed=0, augment=augment)
    data = pipeline.as_dataset(
        stream, tilesets[0].tiles.shape[1:], endless=True, first_batch=start * stream.per_pass, workers=workers
    ).take(stream.per_pass)
    wall = time.perf_counter()
    n = sum(len(x) for x, _ in data.as_numpy_iterator())
    return n / (time.perf_counter() - wall)


def tf_ops_augment():
    """The rotation/flip + jitter of pipeline.augment_batch as TensorFlow ops on a float16 batch (the comparison)."""
    import tensorflow as tf

    @tf.function
    def augment(tiles, ops, gain, shift):
        x = tf.cast(tiles, tf.float32)
        for bit, turn in (
            (1, lambda t: tf.transpose(t, (0, 2, 1, 3))),
            (2, lambda t: tf.reverse(t, [1])),
            (4, lambda t: tf.reverse(t, [2])),
        ):
            x = tf.where(tf.reshape(ops & bit > 0, (-1, 1, 1, 1)), turn(x), x)
        mean = tf.reduce_mean(x, axis=(1, 2), keepdims=True)
        return (x - mean) * gain + mean + shift

    return augment


def tf_ops_loader(tilesets, labels, batch, start, augment):
    """Tiles/s of one pass: batches gathered by NumPy (no augmentation), augmented by TensorFlow ops."""
    stream = pipeline.Batches(tilesets, labels, n_classes=2, batch_size=batch, shuffle=True, seed=0)
    first = start * stream.per_pass
    wall, n = time.perf_counter(), 0
    for b in range(stream.per_pass):
        x, _ = stream.at(first + b)
        rng = np.random.default_rng([0, start, b, 1])
        gain = (1 + 0.1 * rng.uniform(-1, 1, (len(x), 1, 1, x.shape[-1]))).astype(np.float32)
        shift = (0.05 * rng.uniform(-1, 1, (len(x), 1, 1, x.shape[-1]))).astype(np.float32)
        n += len(augment(x.astype(np.float16), rng.integers(0, 8, len(x)), gain, shift).numpy())
    return n / (time.perf_counter() - wall)


def augment_only(size, batch, options, reps=50):
    """Tiles/CPU-second of pipeline.augment_batch alone on an in-memory batch (the cost of each op)."""
    x = np.random.default_rng(1).random((batch, size, size, 2), dtype=np.float32)
    cpu = time.process_time()
    for k in range(reps):
        pipeline.augment_batch(x.copy(), np.random.default_rng([0, 0, k, 1]), options)
    return reps * batch / (time.process_time() - cpu)


def training_speed(model, batches, steps):
    """Tiles/s of model.fit on batches already in memory: the model's own speed, the input costing nothing."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices(batches).repeat()
    model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)  # traced and warm
    wall = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    return steps * len(batches[0][0]) / (time.perf_counter() - wall)


def summary(values):
    values = np.asarray(values)
    return f"{np.median(values):9.0f}  ({values.min():.0f}-{values.max():.0f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=20, help="the config's train.batch_size default")
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from cellclass.learn import models, runtime

    runtime.configure_tensorflow(threads=1, seed=0, deterministic=False)
    results = {}

    def record(name, value):
        results.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory() as tmp:
        tilesets, labels = write_tiles(tmp, args.tiles)
        shape = tilesets[0].tiles.shape[1:]
        model = models.build_model("deep", shape, 2)
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        stream = pipeline.Batches(tilesets, labels, n_classes=2, batch_size=args.batch, augment=DEFAULT)
        in_memory = [stream.batch(0, b) for b in range(min(stream.per_pass, 10))]
        batches = (np.stack([x for x, _ in in_memory]), np.stack([y for _, y in in_memory]))
        tf_augment = tf_ops_augment()
        for run in range(args.runs):
            wall, cpu = numpy_loader(tilesets, labels, args.batch, DEFAULT, 3 * run)
            record("loader, rotations/flips (default): wall", wall)
            record("loader, rotations/flips (default): CPU", cpu)
            wall, cpu = numpy_loader(tilesets, labels, args.batch, JITTER, 3 * run + 1)
            record("loader, + brightness/contrast: wall", wall)
            record("loader, + brightness/contrast: CPU", cpu)
            record("training, deep, 1 thread", training_speed(model, batches, args.steps))
            for workers in (1, 2):
                record(
                    f"tf.data pipeline, + jitter, {workers} worker(s)",
                    tf_loader(tilesets, labels, args.batch, JITTER, 3 * run + 2, workers),
                )
            record(
                "same in TensorFlow ops (gather in NumPy)", tf_ops_loader(tilesets, labels, args.batch, run, tf_augment)
            )
            for name, options in (
                ("rotations/flips", DEFAULT),
                ("+ jitter", JITTER),
                ("+ zoom 5%", dict(JITTER, scale=0.05)),
                ("+ noise", dict(JITTER, noise=0.02)),
            ):
                record(f"augmentation alone, {name}: CPU", augment_only(shape[0], args.batch, options))

    print(
        f"{args.tiles} tiles of {shape[0]} px x {shape[2]} channels in {math.ceil(args.tiles / (TILES_PER_IMAGE * IMAGES_PER_SHARD))} shard "
        f"files, batches of {args.batch}; tiles/second, median (range) of {args.runs} runs"
    )
    for name, values in results.items():
        print(f"  {name:50s} {summary(values)}")
    loader = np.median(results["loader, + brightness/contrast: wall"])
    training = np.median(results["training, deep, 1 thread"])
    print(f"loader (+ jitter, one core, wall) / deep training (one thread): {loader / training:.1f}x")
    numpy_tf = np.median(results["tf.data pipeline, + jitter, 1 worker(s)"]) / np.median(
        results["same in TensorFlow ops (gather in NumPy)"]
    )
    print(f"NumPy augmentation in the tf.data pipeline / TensorFlow-op augmentation: {numpy_tf:.1f}x")


if __name__ == "__main__":
    main()
