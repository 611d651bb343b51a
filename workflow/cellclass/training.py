"""Train one classifier run (experiment, model, fold, seed) and score it once on every test set.

A run streams its tiles (cellclass.pipeline), balances its classes if asked,
logs training (inference mode) and validation metrics per epoch
(cellclass.callbacks), survives being killed (it resumes from the last finished
epoch), and writes per-tile predictions for each test set.
"""

import json
import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cellclass import inference, runtime, tilestore
from cellclass.atomic import atomic_path
from cellclass.errors import InputError
from cellclass.pipeline import select_channels

log = logging.getLogger(__name__)


def labelled(files, classes, where):
    """Label index of each tile file, from the class recorded in it."""
    labels = []
    for path in files:
        cls = tilestore.load(path, tiles=False).meta["class"]
        if cls not in classes:
            raise InputError(f"{where}: {path} has class '{cls}', which the training data does not have ({', '.join(classes)})")
        labels.append(classes.index(cls))
    return labels


def preparation(files):
    """How the training tiles were made: prediction tiles new images the same way and checks them against it."""
    metas = [tilestore.load(path, tiles=False).meta for path in files]
    return {
        "settings": metas[0].get("settings"),  # None for tiles made outside the workflow
        "channels": sorted({m["field_shape"][-1] for m in metas if m.get("field_shape")}),
        "bit_depths": sorted({m["bit_depth"] for m in metas if m.get("bit_depth")}),
    }


def tile_shape(files, channels):
    """(H, W, C) of the network input, from the first non-empty tile file."""
    for path in files:
        tiles = tilestore.load(path).tiles
        if len(tiles):
            n_channels = tiles.shape[-1] if channels is None else len(channels)
            if channels is not None and max(channels) >= tiles.shape[-1]:
                raise InputError(f"{path}: channel {max(channels)} selected but tiles have {tiles.shape[-1]} channel(s)")
            return (tiles.shape[1], tiles.shape[2], n_channels)
    raise InputError("no training tiles at all: every training image was skipped or had no cells")


def class_balance(tiles_per_class, method, *, limit=3.0):
    """What `train.class_balance` does for these training tiles: 'none', 'sampling' or 'weights'.

    'auto' samples the classes evenly when the largest has more than `limit` times the tiles of the smallest.
    """
    present = [n for n in tiles_per_class if n]
    ratio = max(present) / min(present) if present else 1.0
    used = ("sampling" if ratio > limit else "none") if method == "auto" else method
    return used, ratio


def training_sample(files, labels, *, per_class, seed, channels):
    """A fixed, seeded sample of up to `per_class` tiles of each class from `files` (inference-mode scoring)."""
    rng = np.random.default_rng([seed, 7])
    xs, ys = [], []
    for path, label in zip(files, labels):
        tiles = tilestore.load(path).tiles
        if len(tiles):
            xs.append(select_channels(tiles, channels).astype(np.float32))
            ys.append(np.full(len(tiles), label))
    if not xs:
        return np.empty((0,)), np.empty(0, int)
    x, y = np.concatenate(xs), np.concatenate(ys)
    keep = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)])
    keep.sort()
    return x[keep], y[keep]


def predict_files(model, files, classes, *, channels, batch_size, test_set):
    """Per-tile predictions of `files` as a tidy table."""
    rows = []
    for path in files:
        tileset = tilestore.load(path)
        if not len(tileset):
            continue
        tiles = select_channels(tileset.tiles, channels)
        probabilities = inference.probabilities(model, tiles, batch_size)
        table = pd.DataFrame(probabilities, columns=[f"p_{c}" for c in classes])
        table.insert(0, "predicted", [classes[i] for i in probabilities.argmax(axis=1)])
        table.insert(0, "true", tileset.meta["class"])
        table.insert(0, "group", tileset.meta["group"])
        table.insert(0, "sample", tileset.meta["sample"])
        table.insert(0, "tile", tileset.tile_ids())
        table.insert(0, "test_set", test_set)
        rows.append(table)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def train_run(
    *,
    identity,
    classes,
    train_files,
    train_eval_files,
    validation_files,
    test_sets,
    out_dir,
    options,
    threads=1,
):
    """Train, save and evaluate one run; returns its metrics dict.

    `identity` is {experiment, dataset, model, fold, seed}, recorded in metrics.json so
    nothing downstream reads it from paths. `test_sets` maps a test-set name to its
    tile files; they are scored once, after training. The per-epoch curves use the
    validation side (none if it is empty) and a fixed sample of the unaugmented
    training tiles (`train_eval_files`) scored in inference mode.
    """

    from cellclass import callbacks, models, pipeline

    model_name, seed = identity["model"], int(identity["seed"])
    out_dir = Path(out_dir)
    backup_dir = out_dir / "backup"  # made by Checkpoint once the inputs are checked
    device = runtime.configure_tensorflow(
        threads=threads, seed=seed, deterministic=options["deterministic"], mixed_precision=options["mixed_precision"]
    )
    channels = options["channels"]
    shape = tile_shape(train_files, channels)
    train_labels = labelled(train_files, classes, "training data")
    if sorted(set(train_labels)) != list(range(len(classes))):
        missing = [c for i, c in enumerate(classes) if i not in train_labels]
        raise InputError(f"class(es) {', '.join(missing)} have no training tiles")
    for name, files in test_sets.items():
        labelled(files, classes, f"test set {name}")
        if not files:
            raise InputError(f"test set {name} has no images")
    checkpoint = callbacks.Checkpoint(backup_dir)
    model, epochs_done = checkpoint.restore()
    if model is None:
        model = models.build_model(model_name, shape, len(classes), **options["model_options"].get(model_name, {}))
        spec = models.MODELS[model_name]
        optimizer = models.make_optimizer(options["optimizer"] or spec.optimizer, options["learning_rate"])
        model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"], jit_compile=options["xla"])

    # Class balance is judged on the original tiles: augmentation multiplies every class alike.
    eval_labels = labelled(train_eval_files, classes, "training data")
    counts = pipeline.tile_counts(train_eval_files)
    per_class = np.bincount(eval_labels, weights=counts, minlength=len(classes)).astype(int)
    balance, ratio = class_balance(per_class, options["class_balance"])
    repeats = pipeline.balancing_repeats(pipeline.tile_counts(train_files), train_labels, len(classes)) if balance == "sampling" else None
    class_weight = None
    if balance == "weights":
        class_weight = {i: float(per_class.sum() / (len(classes) * n)) for i, n in enumerate(per_class)}
    log.info("training tiles per class: %s (largest/smallest %.1f); class balance: %s",
             dict(zip(classes, per_class.tolist())), ratio, balance)

    common = dict(n_classes=len(classes), tile_shape=shape, batch_size=options["batch_size"], channels=channels)
    train_data, n_train = pipeline.make_dataset(
        train_files, train_labels, shuffle=True, seed=seed, files_at_once=options["files_at_once"],
        first_pass=epochs_done, repeats=repeats, **common
    )
    validation_data, n_validation = pipeline.make_dataset(
        validation_files, labelled(validation_files, classes, "validation data"), **common
    )
    train_x, train_y = training_sample(
        train_eval_files, eval_labels, per_class=options["train_eval_tiles"], seed=seed, channels=channels
    )
    # An epoch is one pass over the training tiles, or `epoch_tiles` drawn from an
    # endless stream of them (the article's epochs were 400 images).
    steps = None
    if options["epoch_tiles"]:
        train_data = train_data.repeat()
        steps = math.ceil(options["epoch_tiles"] / options["batch_size"])
    log.info("model %s, input %s, %d classes, %d training tiles per pass, %d validation tiles%s",
             model_name, shape, len(classes), n_train, n_validation,
             "" if n_validation else " (no validation side: the curves show training data only)")

    log_path = backup_dir / "history.csv"
    started = time.perf_counter()
    model.fit(
        train_data,
        validation_data=validation_data if n_validation else None,
        epochs=options["epochs"],
        initial_epoch=epochs_done,
        steps_per_epoch=steps,
        class_weight=class_weight,
        shuffle=False,  # the stream shuffles; Keras would only warn that it ignores this
        verbose=2,
        # Scored, then logged, then saved: a kill between log and save repeats the
        # epoch on resume, and the log keeps the repeat's record.
        callbacks=[callbacks.TrainingScore(train_x, train_y), callbacks.epoch_log(log_path), checkpoint],
    )
    seconds = time.perf_counter() - started

    with atomic_path(out_dir / "model.keras") as tmp:
        model.save(tmp)
    history = callbacks.read_epoch_log(log_path)
    with atomic_path(out_dir / "history.csv") as tmp:
        history.to_csv(tmp, index=False)
    # The test sides are scored here, once, after the last epoch; nothing was chosen on them.
    predictions = pd.concat(
        [predict_files(model, files, classes, channels=channels, batch_size=256, test_set=name) for name, files in test_sets.items()],
        ignore_index=True,
    )
    with atomic_path(out_dir / "predictions.tsv") as tmp:
        predictions.to_csv(tmp, sep="\t", index=False)
    metrics = {
        **identity,
        "seed": seed,
        "classes": classes,
        "input_shape": list(shape),
        "channels": channels,
        "prepare": preparation(train_files),
        "parameters": int(model.count_params()),
        "device": device,
        "train_tiles": n_train,
        "train_tiles_per_class": dict(zip(classes, per_class.tolist())),
        "imbalance_ratio": round(float(ratio), 3),
        "class_balance": balance,
        "validation_tiles": n_validation,
        "test_sets": list(test_sets),
        "epochs": int(history["epoch"].max()),
        "train_seconds": round(seconds, 2),
    }
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    shutil.rmtree(backup_dir)
    return metrics
