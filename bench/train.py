"""Training input: our streaming pipeline against the article's all-in-memory way, in one run.

(1) tiles/second training the same model on the same tiles, streamed from
    memory-mapped shard files vs one numpy array given to model.fit (target >= 0.9x);
(2) peak memory (max RSS of a fresh process) as the dataset grows 10x: ours
    should stay flat (<= 1.3x), the in-memory baseline grows with the data;
(3) achieved training FLOP/s as a fraction of this machine's matmul rate.
On a GPU machine it also reports tiles/second with mixed precision.

    python bench/train.py [--model deep] [--size 64] [--tiles 2000]

`--shares` measures instead each model's training throughput as a share of the machine's GEMM rate (2 threads,
streamed tiles, 64 px), with the threading cellclass used before (two inter-op threads, tf.data's machine-wide
pool), now (one inter-op thread, a pool of the job's own threads) and now with XLA (jit_compile; op
determinism off, as Keras needs), alternated over `--rounds` rounds; it prints the median and range of each and
the ratios to before. The strided stem (resnet, stem_stride 2) is a model
of its own there: the same network at a quarter of the arithmetic.

    python bench/train.py --shares [--rounds 3] [--steps 40]
"""

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cellclass.io import tilestore
from cellclass.io.tilestore import TileSet

TILES_PER_IMAGE = 100
IMAGES_PER_SHARD = 10


def write_dataset(folder, n_tiles, size, channels=2, seed=0):
    """Images of TILES_PER_IMAGE random tiles, IMAGES_PER_SHARD to a shard file."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(0, n_tiles, TILES_PER_IMAGE):
        n = min(TILES_PER_IMAGE, n_tiles - i)
        tiles = rng.random((n, size, size, channels), dtype=np.float32)
        meta = {"sample": f"img{i}", "class": "ab"[i // TILES_PER_IMAGE % 2], "group": f"img{i}", "files": []}
        images.append(TileSet(tiles, np.zeros(n), np.zeros(n), meta))
    for k in range(0, len(images), IMAGES_PER_SHARD):
        tilestore.save(Path(folder) / f"shard{k}.npz", images[k : k + IMAGES_PER_SHARD])


def training_flops_per_tile(model):
    """Forward multiply-adds of convolutions (depthwise too) and dense layers x2 (FLOPs) x3 (forward + backward),
    nested models (a keras.applications backbone) included."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += training_flops_per_tile(layer) // 3
            continue
        for node_index in range(len(layer._inbound_nodes)):  # a shared layer counts once per call
            out = layer._inbound_nodes[node_index].output_tensors[0].shape
            if isinstance(layer, keras.layers.DepthwiseConv2D):
                kh, kw = layer.kernel_size
                total += 2 * out[1] * out[2] * kh * kw * out[3]
            elif isinstance(layer, keras.layers.Conv2D):
                kh, kw = layer.kernel_size
                total += 2 * out[1] * out[2] * kh * kw * layer.kernel.shape[2] * layer.filters
            elif isinstance(layer, keras.layers.Dense):
                total += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
    return 3 * total


def matmul_flops():
    import tensorflow as tf

    a = tf.random.normal((2048, 2048))
    tf.linalg.matmul(a, a).numpy()
    start, reps = time.perf_counter(), 10
    for _ in range(reps):
        c = tf.linalg.matmul(a, a)
    c.numpy()
    return reps * 2 * 2048**3 / (time.perf_counter() - start)


REPEATS = 4  # timed epochs after the warm-up epoch


def _epoch_timer():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer


# Threading before this was measured (runtime.configure_tensorflow's inter-op threads, as_dataset's own pool).
THREADING = {
    "before": {"inter_op_threads": 2, "own_threads": False},
    "now": {"inter_op_threads": 1, "own_threads": True},
    "now+xla": {"inter_op_threads": 1, "own_threads": True, "xla": True},
}
SHARE_MODELS = {"small": {}, "deep": {}, "resnet": {}, "resnet_stem2": {"stem_stride": 2}, "mobilenetv3small": {}}


def child(mode, folder, model_name, batch, steps, mixed, threading="now"):
    """One measurement in this process: tiles/s (mode speed-*) or a pass for peak memory (mem-*)."""
    import keras

    from cellclass.learn import models, pipeline, runtime

    EpochTimer = _epoch_timer()
    setting = THREADING[threading]
    runtime.configure_tensorflow(
        threads=2, seed=0, deterministic=False, mixed_precision=mixed, inter_op_threads=setting["inter_op_threads"]
    )
    tilesets = [t for t in tilestore.load_all(sorted(Path(folder).glob("*.npz"))) if len(t)]
    classes = sorted({t.meta["class"] for t in tilesets})
    labels = [classes.index(t.meta["class"]) for t in tilesets]
    shape = tilesets[0].tiles.shape[1:]
    network = model_name.split("_")[0]
    model = models.build_model(network, shape, len(classes), **SHARE_MODELS.get(model_name, {}))
    model.compile(
        optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"], jit_compile=setting.get("xla", False)
    )
    if setting.get("xla") and not model.jit_compile:
        raise SystemExit("Keras did not compile this model with XLA")
    timer = EpochTimer()
    if mode.endswith("stream"):
        # As in training: an endless stream cut into epochs of `steps` batches.
        data, steps, _ = pipeline.training_stream(
            tilesets,
            labels,
            n_classes=len(classes),
            tile_shape=shape,
            batch_size=batch,
            epoch_tiles=steps * batch,
            workers=2,
            own_threads=setting["own_threads"],
        )
        model.fit(data, epochs=1 + REPEATS, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    else:
        # The article's way: every tile in one array in memory, labels one-hot.
        x = np.concatenate([np.asarray(t.tiles, np.float32) for t in tilesets])
        y = keras.utils.to_categorical(np.repeat(labels, [len(t) for t in tilesets]), len(classes))
        model.fit(x, y, epochs=1 + REPEATS, batch_size=batch, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    # The first epoch traces the graph and fills buffers; the median of the rest is the steady state.
    seconds = float(np.median(timer.seconds[1:]))
    if mode.startswith("mem") and mode.endswith("stream"):
        for _ in data.take(math.ceil(sum(len(t) for t in tilesets) / batch)):  # a whole pass through the pipeline
            pass
    result = {"tiles_per_s": steps * batch / seconds, "flops_per_tile": training_flops_per_tile(model)}
    print(json.dumps(result))


def measure(mode, folder, args, mixed=False, model=None, threading="now"):
    command = [
        sys.executable,
        __file__,
        "--child",
        mode,
        folder,
        "--model",
        model or args.model,
        "--size",
        str(args.size),
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
        "--threading",
        threading,
    ]
    command += ["--mixed"] if mixed else []
    code = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    result = json.loads(lines[-2])
    result["peak_mb"] = int(lines[-1]) / 1024
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deep")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--tiles", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--child", nargs=2)
    parser.add_argument("--mixed", action="store_true")
    parser.add_argument("--threading", choices=sorted(THREADING), default="now")
    parser.add_argument("--shares", action="store_true", help="each model's share of the GEMM rate, before and now")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.child:
        return child(*args.child, args.model, args.batch, args.steps, args.mixed, args.threading)
    if args.shares:
        return shares(args)

    import tensorflow as tf

    with tempfile.TemporaryDirectory() as small, tempfile.TemporaryDirectory() as large:
        write_dataset(small, args.tiles, args.size)
        write_dataset(large, 10 * args.tiles, args.size)
        # Alternate the two twice and keep each one's best, so a busy moment on
        # the machine does not decide the ratio.
        stream, memory = {"tiles_per_s": 0}, {"tiles_per_s": 0}
        for _ in range(2):
            stream = max(stream, measure("speed-stream", small, args), key=lambda r: r["tiles_per_s"])
            memory = max(memory, measure("speed-memory", small, args), key=lambda r: r["tiles_per_s"])
        print(f"model {args.model}, {args.size}x{args.size}x2 tiles, batch {args.batch}, {args.steps} steps")
        print(
            f"(1) speed   streaming {stream['tiles_per_s']:7.1f} tiles/s   in-memory {memory['tiles_per_s']:7.1f} tiles/s"
            f"   ratio {stream['tiles_per_s'] / memory['tiles_per_s']:.2f}x (target >= 0.9x)"
        )
        ours = [measure("mem-stream", d, args)["peak_mb"] for d in (small, large)]
        base = [measure("mem-memory", d, args)["peak_mb"] for d in (small, large)]
        print(
            f"(2) memory  {args.tiles} -> {10 * args.tiles} tiles: streaming {ours[0]:.0f} -> {ours[1]:.0f} MB "
            f"({ours[1] / ours[0]:.2f}x, target <= 1.3x)   in-memory {base[0]:.0f} -> {base[1]:.0f} MB ({base[1] / base[0]:.2f}x)"
        )
        peak = matmul_flops()
        achieved = stream["tiles_per_s"] * stream["flops_per_tile"]
        print(
            f"(3) compute {achieved / 1e9:.2f} GFLOP/s training vs {peak / 1e9:.1f} GFLOP/s matmul = {achieved / peak:.0%}"
        )
        if tf.config.list_physical_devices("GPU"):
            mixed = measure("speed-stream", small, args, mixed=True)
            print(
                f"GPU: float32 {stream['tiles_per_s']:.0f} tiles/s, mixed precision {mixed['tiles_per_s']:.0f} tiles/s"
            )


def shares(args):
    """Each model's training FLOP/s as a share of the matmul rate, with the threading of before and of now."""
    peak = matmul_flops()
    print(
        f"matmul (GEMM) rate: {peak / 1e9:.0f} GFLOP/s on this machine; {args.size} px tiles, 2 channels, batch "
        f"{args.batch}, 2 threads, {args.steps} steps an epoch, median (range) over {args.rounds} alternated rounds"
    )
    print(
        f"{'model':<18} {'GFLOP/tile':>10}"
        + "".join(f" {name + ': tiles/s':>19} {'share':>6}" for name in THREADING)
        + "  ratios to before"
    )
    with tempfile.TemporaryDirectory() as folder:
        write_dataset(folder, args.tiles, args.size)
        for model in SHARE_MODELS:
            runs = {name: [] for name in THREADING}
            for _ in range(args.rounds):
                for threading in runs:
                    runs[threading].append(measure("speed-stream", folder, args, model=model, threading=threading))
            flops = runs["now"][0]["flops_per_tile"]
            text = {}
            for threading, results in runs.items():
                rates = sorted(r["tiles_per_s"] for r in results)
                median = float(np.median(rates))
                text[threading] = (
                    median,
                    f"{median:>7.1f} ({rates[0]:.0f}-{rates[-1]:.0f})",
                    f"{median * flops / peak:>6.0%}",
                )
            ratios = ", ".join(f"{text[name][0] / text['before'][0]:.2f}x" for name in THREADING if name != "before")
            print(
                f"{model:<18} {flops / 1e9:>10.2f}"
                + "".join(f" {text[name][1]:>19} {text[name][2]}" for name in THREADING)
                + f"  {ratios}",
                flush=True,
            )


if __name__ == "__main__":
    main()
