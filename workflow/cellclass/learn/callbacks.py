"""Keras callbacks of a training run: the per-epoch log, the atomic checkpoint, and training-set scoring."""

import logging
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, log_loss

from cellclass.learn import inference
from cellclass.io.atomic import atomic_path

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
    into place, and only then is the previous one removed.
    """

    def __init__(self, folder):
        super().__init__()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _saved(self):
        return sorted(self.folder.glob("epoch*.keras"), key=lambda p: int(p.stem[len("epoch") :]))

    def on_epoch_end(self, epoch, logs=None):
        with atomic_path(self.folder / f"epoch{epoch + 1}.keras") as tmp:
            self.model.save(tmp)
        for old in self._saved()[:-1]:
            old.unlink()

    def restore(self):
        """(model, epochs done) of the last saved epoch, or (None, 0)."""
        saved = self._saved()
        if not saved:
            return None, 0
        log.info("resuming from %s", saved[-1])
        return keras.saving.load_model(saved[-1]), int(saved[-1].stem[len("epoch") :])
