"""Train one classifier run (dataset, model, seed) and evaluate it on every test set.

A run streams its tiles (cellclass.pipeline), logs train and held-out metrics
per epoch, survives being killed (it resumes from the last finished epoch), and writes per-tile predictions for each test set.
"""

import csv
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cellclass import tilestore
from cellclass.atomic import atomic_path
from cellclass.errors import InputError
from cellclass.pipeline import select_channels

log = logging.getLogger(__name__)


def configure_tensorflow(*, threads, seed, deterministic, mixed_precision=False):
    """Seed everything, pin CPU threads, pick the device; returns 'GPU' or 'CPU' for the log."""
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
    except RuntimeError:  # TensorFlow already ran in this process (a notebook, a test session)
        log.info("TensorFlow is already initialised; keeping its thread settings")
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    if mixed_precision and gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    # On a cluster the scheduler hands a job its GPU(s) through CUDA_VISIBLE_DEVICES
    # (Slurm's gres); TensorFlow then sees only those.
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    device = f"GPU ({', '.join(g.name for g in gpus)}; CUDA_VISIBLE_DEVICES={visible})" if gpus else f"CPU ({threads} threads)"
    log.info("running on %s; deterministic=%s, mixed precision=%s", device, deterministic, bool(mixed_precision and gpus))
    return device


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


class EpochLog:
    """Append each finished epoch to a CSV as it ends, so a killed run keeps its history."""

    def __init__(self, path):
        import keras

        self.path = Path(path)
        outer = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                outer.append(epoch + 1, logs or {})

        self.callback = Callback()

    def append(self, epoch, logs):
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["epoch", "train_loss", "train_accuracy", "heldout_loss", "heldout_accuracy"])
            writer.writerow([epoch, logs.get("loss"), logs.get("accuracy"), logs.get("val_loss"), logs.get("val_accuracy")])

    def table(self):
        """Rows of all epochs; a resumed epoch keeps its last record."""
        history = pd.read_csv(self.path)
        return history.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)


class Checkpoint:
    """Save the whole model (weights and optimizer) after every epoch, atomically.

    Keras' own BackupAndRestore writes in place, so a kill during the save
    leaves a corrupt backup; here each epoch goes to a new file that is renamed
    into place, and only then is the previous one removed.
    """

    def __init__(self, folder):
        import keras

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        outer = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                outer.save(self.model, epoch + 1)

        self.callback = Callback()

    def _saved(self):
        return sorted(self.folder.glob("epoch*.keras"), key=lambda p: int(p.stem[len("epoch") :]))

    def save(self, model, epoch):
        with atomic_path(self.folder / f"epoch{epoch}.keras") as tmp:
            model.save(tmp)
        for old in self._saved()[:-1]:
            old.unlink()

    def restore(self):
        """(model, epochs done) of the last saved epoch, or (None, 0)."""
        import keras

        saved = self._saved()
        if not saved:
            return None, 0
        log.info("resuming from %s", saved[-1])
        return keras.saving.load_model(saved[-1]), int(saved[-1].stem[len("epoch") :])


def predict_files(model, files, classes, *, channels, batch_size, test_set):
    """Per-tile predictions of `files` as a tidy table."""
    rows = []
    for path in files:
        tileset = tilestore.load(path)
        if not len(tileset):
            continue
        tiles = select_channels(tileset.tiles, channels)
        probabilities = model.predict(tiles.astype(np.float32), batch_size=batch_size, verbose=0)
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
    model_name,
    classes,
    train_files,
    heldout_files,
    test_sets,
    out_dir,
    seed,
    options,
    threads=1,
):
    """Train, save and evaluate one run; returns its metrics dict.

    `test_sets` maps a test-set name to its tile files. `heldout_files` (the
    validation side if there is one, else the test side) are scored after every
    epoch for the learning curves; nothing is selected on them.
    """

    from cellclass import models, pipeline

    out_dir = Path(out_dir)
    backup_dir = out_dir / "backup"  # made by Checkpoint once the inputs are checked
    device = configure_tensorflow(
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
    checkpoint = Checkpoint(backup_dir)
    model, epochs_done = checkpoint.restore()
    if model is None:
        model = models.build_model(model_name, shape, len(classes), **options["model_options"].get(model_name, {}))
        spec = models.MODELS[model_name]
        optimizer = models.make_optimizer(options["optimizer"] or spec.optimizer, options["learning_rate"])
        model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"], jit_compile=options["xla"])

    common = dict(n_classes=len(classes), tile_shape=shape, batch_size=options["batch_size"], channels=channels)
    train_data, n_train = pipeline.make_dataset(
        train_files, train_labels, shuffle=True, seed=seed, files_at_once=options["files_at_once"],
        first_pass=epochs_done, **common
    )
    heldout_data, n_heldout = pipeline.make_dataset(heldout_files, labelled(heldout_files, classes, "held-out data"), **common)
    # An epoch is one pass over the training tiles, or `epoch_tiles` drawn from an
    # endless stream of them (the article's epochs were 400 images).
    steps = None
    if options["epoch_tiles"]:
        train_data = train_data.repeat()
        steps = math.ceil(options["epoch_tiles"] / options["batch_size"])
    log.info("model %s, input %s, %d classes, %d training tiles, %d held-out tiles", model_name, shape, len(classes), n_train, n_heldout)

    epochs_log = EpochLog(backup_dir / "history.csv")
    started = time.perf_counter()
    model.fit(
        train_data,
        validation_data=heldout_data if n_heldout else None,
        epochs=options["epochs"],
        initial_epoch=epochs_done,
        steps_per_epoch=steps,
        shuffle=False,  # the stream shuffles; Keras would only warn that it ignores this
        verbose=2,
        # The epoch is logged before it is saved: a kill in between repeats the
        # epoch on resume, and the log keeps the repeat's record.
        callbacks=[epochs_log.callback, checkpoint.callback],
    )
    seconds = time.perf_counter() - started

    with atomic_path(out_dir / "model.keras") as tmp:
        model.save(tmp)
    history = epochs_log.table()
    with atomic_path(out_dir / "history.csv") as tmp:
        history.to_csv(tmp, index=False)
    predictions = pd.concat(
        [predict_files(model, files, classes, channels=channels, batch_size=256, test_set=name) for name, files in test_sets.items()],
        ignore_index=True,
    )
    with atomic_path(out_dir / "predictions.tsv") as tmp:
        predictions.to_csv(tmp, sep="\t", index=False)
    correct = predictions["true"] == predictions["predicted"]
    metrics = {
        "model": model_name,
        "seed": seed,
        "classes": classes,
        "input_shape": list(shape),
        "channels": channels,
        "prepare": preparation(train_files),
        "parameters": int(model.count_params()),
        "device": device,
        "train_tiles": n_train,
        "epochs": int(history["epoch"].max()),
        "final_train_accuracy": float(history["train_accuracy"].iloc[-1]),
        "train_seconds": round(seconds, 2),
        "test_accuracy": {name: float(correct[predictions["test_set"] == name].mean()) for name in test_sets},
        "test_tiles": {name: int((predictions["test_set"] == name).sum()) for name in test_sets},
    }
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    shutil.rmtree(backup_dir)
    log.info("test accuracy: %s", metrics["test_accuracy"])
    return metrics
