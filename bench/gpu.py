"""The GPU path, measured: `resnet` and a keras.applications backbone trained on the six-pattern cells in float32
and in mixed precision (bfloat16 and float16), each with and without XLA, at one equal budget.

For each variant it prints training cells per second (steady state: the first epoch, which traces and compiles,
is left out), the share of the device's peak that this is (the model's training FLOPs per cell x cells per
second, against the device's own matmul rate in that precision, measured here), and the balanced accuracy per
cell on held-out cells after the same number of steps. It runs the models as the workflow builds them
(cellclass.learn.models, standardised inputs, the modern recipe's optimizer and schedule), on tiles kept on the
device, so it measures the network and not the input side. Budget: under 10 minutes on one H100.

    python bench/gpu.py [--cells 600] [--size 64] [--epochs 6] [--batch 256]

On a machine without a GPU it prints one line saying so and exits 0 (`--allow-cpu` runs it anyway, small, to
check the script itself).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

MODELS = ("resnet", "efficientnetv2b0")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def cells(n_per_class, size, seed=0):
    """The six patterns, n_per_class each (72 px, 16-bit), centre-cropped or padded to `size`, scaled to [0, 1]."""
    from cellclass.demo import patterns

    x, y = [], []
    for label, cls in enumerate(patterns.CLASSES):
        for index in range(n_per_class):
            image = patterns.render_cell(cls, seed=seed, index=index).image.astype(np.float32) / 65535
            x.append(fit(image, size))
            y.append(label)
    return np.stack(x)[..., None], np.array(y)


def fit(image, size):
    side = image.shape[0]
    if side >= size:
        start = (side - size) // 2
        return image[start : start + size, start : start + size]
    pad = size - side
    return np.pad(image, ((pad // 2, pad - pad // 2),) * 2)


def matmul_rate(dtype):
    """FLOP/s of a 8192 x 8192 matmul in `dtype` on the device: the peak this machine reaches here."""
    import tensorflow as tf

    a = tf.random.normal((8192, 8192), dtype=tf.float32)
    a = tf.cast(a, dtype)
    tf.linalg.matmul(a, a).numpy()
    reps, start = 20, time.perf_counter()
    for _ in range(reps):
        c = tf.linalg.matmul(a, a)
    c.numpy()
    return reps * 2 * 8192**3 / (time.perf_counter() - start)


def one_variant(name, precision, xla, data, args):
    """(cells/s, balanced accuracy, training FLOPs per cell) of one model, precision and XLA setting."""
    import keras
    import tensorflow as tf
    from sklearn.metrics import balanced_accuracy_score
    from train import _epoch_timer, training_flops_per_tile

    from cellclass.learn import models, recipe

    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    (x, y), (test_x, test_y) = data
    pixels = x.reshape(-1, x.shape[-1])
    model = models.build_model(name, x.shape[1:], 6, standardise=(pixels.mean(0), pixels.var(0)))
    steps = len(x) // args.batch
    schedule = recipe.learning_rate("cosine", 1e-3, epochs=args.epochs, steps_per_epoch=steps, warmup_epochs=1)
    model.compile(
        optimizer=models.make_optimizer("adamw", schedule, weight_decay=0.05),
        jit_compile=xla,
        loss=recipe.loss(0.1),
        metrics=["accuracy"],
    )
    onehot = np.eye(6, dtype=np.float32)[y]
    data = (
        tf.data.Dataset.from_tensor_slices((x, onehot))
        .cache()
        .shuffle(len(x), seed=0)
        .batch(args.batch, drop_remainder=True)
        .repeat()
        .prefetch(tf.data.AUTOTUNE)
    )
    timer = _epoch_timer()()
    model.fit(data, epochs=args.epochs, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    per_epoch = float(np.median(timer.seconds[1:])) if len(timer.seconds) > 1 else timer.seconds[0]
    calls = model.predict(test_x, batch_size=args.batch, verbose=0).argmax(axis=1)
    flops = training_flops_per_tile(model)
    keras.mixed_precision.set_global_policy("float32")
    return steps * args.batch / per_epoch, balanced_accuracy_score(test_y, calls), flops


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=600, help="training cells per class (a third as many test)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (a check of the script)")
    args = parser.parse_args()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not args.allow_cpu:
        print("bench/gpu.py: no GPU visible to TensorFlow on this machine; nothing measured")
        return 0
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    started = time.perf_counter()
    train = cells(args.cells, args.size, seed=0)
    test = cells(max(1, args.cells // 3), args.size, seed=1)
    device = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "CPU"
    print(
        f"{device}: {len(train[1])} training cells, {len(test[1])} test cells of {args.size} px, "
        f"{args.epochs} epochs of batch {args.batch} for every variant (an equal budget)",
        flush=True,
    )
    peaks = {
        "float32": matmul_rate(tf.float32),
        "mixed_bfloat16": matmul_rate(tf.bfloat16),
        "mixed_float16": matmul_rate(tf.float16),
    }
    print("matmul peak here: " + ", ".join(f"{k} {v / 1e12:.1f} TFLOP/s" for k, v in peaks.items()), flush=True)
    print(f"{'model':<18} {'precision':<15} {'XLA':<4} {'cells/s':>9} {'share of peak':>13} {'bal. acc.':>9}")
    for name in MODELS:
        for precision in PRECISIONS:
            for xla in (False, True):
                try:
                    rate, accuracy, flops = one_variant(name, precision, xla, (train, test), args)
                except Exception as error:  # one variant failing (an XLA refusal) does not end the table
                    print(f"{name:<18} {precision:<15} {'yes' if xla else 'no':<4} failed: {str(error)[:80]}")
                    continue
                share = rate * flops / peaks[precision]
                print(
                    f"{name:<18} {precision:<15} {'yes' if xla else 'no':<4} {rate:>9.0f} {share:>13.1%} "
                    f"{accuracy:>9.3f}",
                    flush=True,
                )
    print(f"{time.perf_counter() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
