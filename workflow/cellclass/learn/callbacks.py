"""Keras callbacks of a training run: the per-epoch log, the atomic checkpoint, training-set scoring and the
choice of the epoch a run keeps (early stopping)."""

import logging
import math
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, log_loss

from cellclass.io.atomic import atomic_path
from cellclass.learn import inference
from cellclass.learn.recipe import MONITORS

log = logging.getLogger(__name__)

# CSVLogger's names -> ours; "train_eval" is the inference-mode score of a fixed
# sample of unaugmented training tiles, "validation" the validation side.
COLUMNS = {
    "loss": "train_loss",
    "accuracy": "train_accuracy",
    "train_eval_loss": "train_eval_loss",
    "train_eval_accuracy": "train_eval_accuracy",
    "val_loss": "validation_loss",
    "val_accuracy": "validation_accuracy",
}


def epoch_log(path):
    """Keras' CSVLogger, appending, so a killed and resumed run keeps every finished epoch."""
    return keras.callbacks.CSVLogger(str(path), append=True)


def read_epoch_log(path):
    """The log as a table with our column names and 1-based epochs; a resumed epoch keeps its last record."""
    raw = pd.read_csv(path)
    history = pd.DataFrame({"epoch": raw["epoch"] + 1})
    for theirs, ours in COLUMNS.items():
        history[ours] = raw[theirs] if theirs in raw else np.nan
    return history.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)


class TrainingScore(keras.callbacks.Callback):
    """After each epoch, score fixed training tiles in inference mode (no dropout, no augmentation).

    Keras' own training accuracy is a running mean in training mode over augmented
    tiles: it cannot be set beside a test score. This one can. It must run before
    the epoch log, which records what it adds to `logs`.
    """

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not len(self.y):
            return
        probabilities = inference.probabilities(self.model, self.x).astype(np.float64)
        probabilities /= probabilities.sum(axis=1, keepdims=True)  # float32 softmax sums to 1 only roughly
        labels = np.arange(probabilities.shape[1])
        logs["train_eval_loss"] = float(log_loss(self.y, probabilities, labels=labels))
        logs["train_eval_accuracy"] = float(accuracy_score(self.y, probabilities.argmax(axis=1)))


class Checkpoint(keras.callbacks.Callback):
    """Save the whole model (weights and optimizer) after every epoch, atomically.

    Keras' own BackupAndRestore writes in place, so a kill during the save
    leaves a corrupt backup; here each epoch goes to a new file that is renamed
    into place, and only then is the previous one removed. `keep` (a BestEpoch,
    listed before this callback) keeps its best epoch's file too, so a resumed
    run can still go back to that epoch.
    """

    def __init__(self, folder, keep=None):
        super().__init__()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.keep = keep

    def _saved(self):
        return sorted(self.folder.glob("epoch*.keras"), key=lambda p: int(p.stem[len("epoch") :]))

    def on_epoch_end(self, epoch, logs=None):
        with atomic_path(self.folder / f"epoch{epoch + 1}.keras") as tmp:
            self.model.save(tmp)
        kept = {f"epoch{epoch + 1}"}
        if self.keep is not None and self.keep.restore_best_weights and self.keep.best is not None:
            kept.add(f"epoch{self.keep.best_epoch + 1}")
        for old in self._saved():
            if old.stem not in kept:
                old.unlink()

    def weights(self, epoch):
        """The weights saved after `epoch` (1-based)."""
        return keras.saving.load_model(self.folder / f"epoch{epoch}.keras").get_weights()

    def restore(self):
        """(model, epochs done) of the last saved epoch, or (None, 0)."""
        saved = self._saved()
        if not saved:
            return None, 0
        log.info("resuming from %s", saved[-1])
        return keras.saving.load_model(saved[-1]), int(saved[-1].stem[len("epoch") :])


class BestEpoch(keras.callbacks.EarlyStopping):
    """Keras' EarlyStopping on a validation metric, whose state survives a kill.

    `monitor` is our name (recipe.MONITORS); `patience` None never stops early; `restore` puts the best
    epoch's weights back when training ends (else the last epoch's stay). A killed run loses the state
    kept in memory, so `resume` replays the monitored values of its finished epochs (from the epoch log)
    through the same rule and reads the best epoch's weights from the file Checkpoint kept for it.
    """

    def __init__(self, monitor, *, patience=None, restore=True):
        name, mode = MONITORS[monitor]
        super().__init__(
            monitor=name, mode=mode, patience=math.inf if patience is None else patience, restore_best_weights=restore
        )
        self.finished = []
        self.resumed_weights = None
        self.final = True

    def _replay(self):
        restore, self.restore_best_weights = self.restore_best_weights, False  # the weights are not these epochs'
        for epoch, value in enumerate(self.finished):
            super().on_epoch_end(epoch, {self.monitor: value})
        self.restore_best_weights = restore
        if self.resumed_weights is not None:
            self.best_weights = self.resumed_weights

    def resume(self, model, values, weights):
        """Take up from the epochs a killed run finished, their monitored values `values` in order;
        `weights(epoch)` reads the weights saved after a (1-based) epoch. True when those epochs had
        already stopped the run."""
        self.set_model(model)
        self.finished = [float(v) for v in values]
        super().on_train_begin()
        self._replay()
        if self.restore_best_weights and self.finished:
            self.resumed_weights = self.best_weights = weights(self.best_epoch + 1)
        return self.stopped_epoch > 0

    def on_train_begin(self, logs=None):
        kept = self.best_weights  # a run of two fits (a frozen backbone's warm-up) keeps the first's best
        super().on_train_begin(logs)
        self._replay()
        if kept is not None:
            self.best_weights = kept

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self.finished.append(float((logs or {}).get(self.monitor, math.nan)))

    def on_train_end(self, logs=None):
        if self.final:  # not between the two fits of a warm-up: the fine-tuning goes on from the last epoch
            super().on_train_end(logs)


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress(keras.callbacks.Callback):
    """A log line each `every` share of a run's training steps: how far, how fast, and the time left.

    The rate is wall time since this fit began, so the validation side's scoring after each epoch is in it and
    in the estimate. Early stopping can end a run before the estimate says. It reads no logs, so Keras may call
    it asynchronously (async_safe) without waiting on each step's metrics.
    """

    async_safe = True

    def __init__(self, total_steps, batch_size, *, done=0, every=0.05):
        super().__init__()
        self.total, self.batch_size, self.done = int(total_steps), int(batch_size), int(done)
        self.step = max(1, math.ceil(self.total * every))
        self.started = None

    def on_train_begin(self, logs=None):
        if self.started is None:  # two fits (a frozen backbone's warm-up) are one run
            self.started, self.first = time.perf_counter(), self.done
            log.info(
                "training %s steps of %d tiles (%s tile-steps)%s",
                f"{self.total:,}",
                self.batch_size,
                f"{self.total * self.batch_size:,}",
                f", from step {self.done:,}" if self.done else "",
            )

    def on_train_batch_end(self, batch, logs=None):
        self.done += 1
        if self.done % self.step and self.done != self.total:
            return
        elapsed = time.perf_counter() - self.started
        rate = (self.done - self.first) / max(elapsed, 1e-9)
        left = (self.total - self.done) / rate if rate else math.inf
        log.info(
            "training %3d%%: step %s of %s, %.0f tiles/s, %s so far, about %s to go",
            100 * self.done // self.total,
            f"{self.done:,}",
            f"{self.total:,}",
            rate * self.batch_size,
            _duration(elapsed),
            _duration(left),
        )
