"""Backbones on a CPU: parameters, training and inference tiles/second, and the last feature map, per model.

Every model is built by the registry (cellclass.learn.models.build_model, weights=None: nothing is
downloaded) for 64x64x2 tiles, and trained for a few steps of random tiles after two warm-up steps (which
trace the graph). ConvNeXtTiny, a candidate left out of the registry, is measured as keras.applications
builds it under the same head, for comparison.

    python bench/backbones.py [--size 64] [--channels 2] [--batch 32] [--steps 5] [--threads 1] [models ...]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

DEFAULT = ["small", "resnet", "mobilenetv3small", "efficientnetv2b0", "resnet50v2", "convnexttiny"]


def build(name, shape):
    import keras

    from cellclass.learn import models

    if name != "convnexttiny":
        return models.build_model(name, shape, 2)
    inputs = keras.Input(shape)
    x = keras.applications.ConvNeXtTiny(
        include_top=False, weights=None, input_shape=shape, include_preprocessing=False
    )(inputs)
    x = keras.layers.Identity(name="feature_map")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x), name=name)


def measure(name, shape, batch, steps):
    import keras

    from cellclass.learn import model_specs

    keras.utils.set_random_seed(0)
    model = build(name, shape)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((batch, *shape), dtype=np.float32)
    y = keras.utils.to_categorical(np.arange(batch) % 2, 2)
    for _ in range(2):
        model.train_on_batch(x, y)
        model.predict_on_batch(x)
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    train = steps * batch / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(steps):
        model.predict_on_batch(x)
    infer = steps * batch / (time.perf_counter() - started)
    spec = model_specs.MODELS.get(name)
    layer = model.get_layer(spec.last_conv if spec else "feature_map")
    return {
        "model": name,
        "parameters": model.count_params(),
        "train_tiles_per_s": round(train, 1),
        "inference_tiles_per_s": round(infer, 1),
        "last_map": "x".join(map(str, layer.output.shape[1:3])),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=DEFAULT)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    shape = (args.size, args.size, args.channels)
    print(
        f"{shape} tiles, batch {args.batch}, {args.steps} steps, {args.threads} thread(s), "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print("model\tparameters\ttrain tiles/s\tinference tiles/s\tlast map")
    for name in args.models:
        r = measure(name, shape, args.batch, args.steps)
        print(
            f"{r['model']}\t{r['parameters']:,}\t{r['train_tiles_per_s']}\t{r['inference_tiles_per_s']}\t{r['last_map']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
