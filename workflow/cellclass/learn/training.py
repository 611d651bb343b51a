"""Train one classifier run (experiment, model, fold, seed) and save it; cellclass.learn.scoring scores it.

A run streams its tiles (cellclass.learn.pipeline), balances its classes if asked,
trains with its recipe (cellclass.learn.recipe: optimizer, schedule, loss, the epoch
it keeps, chosen on one part of the validation side), logs training (inference mode) and
validation metrics per epoch (cellclass.learn.callbacks), survives being killed (it
resumes from the last finished epoch), and fits the novelty threshold on the validation side's other part
(cellclass.learn.validation). It writes model.keras, history.csv, novelty.npz and training.json, and nothing
that depends on evaluation settings: scoring the test sides (with test-time augmentation or not) is its own job.
"""

import json
import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from cellclass.io import tilestore
from cellclass.io.atomic import atomic_path
from cellclass.io.errors import InputError
from cellclass.learn import budget, novelty, pipeline, recipe, runtime
from cellclass.learn import validation as validation_uses
from cellclass.prepare import extra_labels, split

log = logging.getLogger(__name__)
RECORD = "training.json"  # what the train job says of a run; metrics.json is it plus the scoring


def labelled(tilesets, classes, where):
    """Label index of each image's tiles, from the class recorded with them."""
    labels = []
    for tileset in tilesets:
        cls = tileset.meta["class"]
        if cls not in classes:
            raise InputError(
                f"{where}: {', '.join(tileset.meta['files'])} has class '{cls}', which the training "
                f"data does not have ({', '.join(classes)})"
            )
        labels.append(classes.index(cls))
    return labels


def on_side(tilesets, sides, side):
    """The images of `tilesets` on `side` of the split (`sides`: sample id -> side in this run's fold)."""
    return [t for t in tilesets if sides.get(t.meta["sample"]) == side]


def on_the_fly(augment):
    """The input pipeline's augmentation in words, for the log and metrics.json."""
    done = [key if value is True else f"{key} {value:g}" for key, value in (augment or {}).items() if value]
    return ", ".join(done) or "nothing"


def preparation(tilesets):
    """How the training tiles were made: prediction tiles new images the same way and checks them against it."""
    metas = [t.meta for t in tilesets]
    return {
        "settings": metas[0].get("settings"),  # None for tiles made outside the workflow
        "channels": sorted({m["field_shape"][-1] for m in metas if m.get("field_shape")}),
        "bit_depths": sorted({m["bit_depth"] for m in metas if m.get("bit_depth")}),
        "objects": sorted({m["objects"] for m in metas if m.get("objects")}),  # kind nuclei: segmented, user labels
    }


def tile_shape(tilesets, channels):
    """(H, W, C) of the network input, from the first image with tiles."""
    for tileset in tilesets:
        if len(tileset):
            _, height, width, n_channels = tileset.tiles.shape
            if channels is not None and max(channels) >= n_channels:
                raise InputError(
                    f"{', '.join(tileset.meta['files'])}: channel {max(channels)} selected but tiles "
                    f"have {n_channels} channel(s)"
                )
            return (height, width, n_channels if channels is None else len(channels))
    raise InputError("no training tiles at all: every training image was skipped or had no cells")


def class_balance(tiles_per_class, method, *, limit=3.0):
    """What `train.class_balance` does for these training tiles: 'none', 'sampling' or 'weights'.

    'auto' samples the classes evenly when the largest has more than `limit` times the tiles of the smallest.
    """
    present = [n for n in tiles_per_class if n]
    ratio = max(present) / min(present) if present else 1.0
    used = ("sampling" if ratio > limit else "none") if method == "auto" else method
    return used, ratio


def balancing(train_eval, labels, classes, method):
    """(tiles per class, balance used, largest/smallest ratio, Keras class weights or None) of a run's training
    tiles. Class balance is judged on the original tiles: augmentation multiplies every class alike."""
    per_class = np.bincount(labels, weights=[len(t) for t in train_eval], minlength=len(classes)).astype(int)
    balance, ratio = class_balance(per_class, method)
    class_weight = None
    if balance == "weights":
        class_weight = {i: float(per_class.sum() / (len(classes) * n)) for i, n in enumerate(per_class)}
    log.info(
        "training tiles per class: %s (largest/smallest %.1f); class balance: %s",
        dict(zip(classes, per_class.tolist())),
        ratio,
        balance,
    )
    return per_class, balance, ratio, class_weight


def training_sample(tilesets, labels, *, per_class, seed, channels):
    """A fixed, seeded sample of up to `per_class` tiles of each class (inference-mode scoring)."""
    owner, row, tile_labels = pipeline.tile_index(tilesets, labels)
    if not len(owner):
        return np.empty((0,)), np.empty(0, int)
    rng = np.random.default_rng([seed, 7])
    keep = np.concatenate(
        [rng.permutation(np.flatnonzero(tile_labels == c))[:per_class] for c in np.unique(tile_labels)]
    )
    keep.sort()
    return pipeline.gather(tilesets, owner[keep], row[keep], channels), tile_labels[keep]


def channel_statistics(tilesets, labels, *, seed, channels, per_class=500):
    """(mean, variance) of each input channel over a seeded sample of up to `per_class` training tiles a class,
    as stored: what the model's "standardise" layer subtracts and divides by. A constant channel gets variance 1,
    so standardising it gives zeros rather than its rounding noise blown up."""
    x, _ = training_sample(tilesets, labels, per_class=per_class, seed=seed, channels=channels)
    pixels = x.reshape(-1, x.shape[-1]).astype(np.float64)
    variance = pixels.var(axis=0)
    return pixels.mean(axis=0), np.where(variance > 1e-12, variance, 1.0)


def standardisation(model):
    """{mean, sd} per channel that `model`'s "standardise" layer applies (models._tiles), or None without one."""
    try:
        layer = model.get_layer("standardise")
    except ValueError:
        return None
    scale, offset = np.asarray(layer.scale, np.float64), np.asarray(layer.offset, np.float64)
    return {"mean": (-offset / scale).tolist(), "sd": (1 / scale).tolist()}


def resolve_work(options, stream, *, model, optimizer, scored_tiles, record):
    """How much this run trains (cellclass.learn.budget.resolve), written to `record` (in the run's backup
    folder) before the first step. A killed run that resumes with the same settings reads it back, so a budget
    in minutes keeps the steps it resolved the first time. A budget in minutes first measures this machine's
    training throughput on a copy of the model."""
    asked = {key: options[key] for key in ("budget", "epochs", "epoch_tiles", "epoch_passes", "batch_size")}
    if record.exists():
        kept = json.loads(record.read_text())
        if kept["asked"] == asked:
            log.info("resuming with the work resolved at the start: %s tile-steps", f"{kept['tile_steps']:,}")
            return kept
    rate = scoring = None
    if "minutes" in (options["budget"] or {}) and not (options["epochs"] and budget.epoch_length(options)):
        rate, scoring = budget.measure(
            model,
            lambda probe: compile_for(probe, {**options, "epochs": 1}, optimizer=optimizer, steps=1),
            stream.at,
            scored_tiles=scored_tiles,
        )
        log.info(
            "measured %.1f training tiles/s; scoring %d tiles after each epoch takes %.1f s",
            rate,
            scored_tiles,
            scoring,
        )
    try:
        work = budget.resolve(options, stream.tiles_per_pass, tiles_per_second=rate, fixed_cost=scoring or 0.0)
    except ValueError as error:
        raise InputError(str(error)) from None
    work = {**work, "measured_tiles_per_second": None if rate is None else round(rate, 2), "asked": asked}
    with atomic_path(record) as tmp:
        tmp.write_text(json.dumps(work, indent=2))
    length = (
        f"{work['epoch_passes']} pass(es)" if work["epoch_passes"] is not None else f"{work['epoch_tiles']:,} tiles"
    )
    log.info(
        "work set by %s (%s): %d epochs of %s, %s tile-steps, %.3g passes over %s training tiles",
        work["set_by"],
        recipe.budget_words(options["budget"]),
        work["epochs"],
        length,
        f"{work['tile_steps']:,}",
        work["passes"],
        f"{stream.tiles_per_pass:,}",
    )
    return work


def novelty_reference(model, train_eval, eval_labels, validation, classes, *, channels, seed, per_class=500):
    """Where the kept model puts its training tiles (a seeded sample of up to `per_class` a class, as stored)
    and how far out the tiles of `validation` (the validation side's calibration part) lie: the run's
    novelty.Reference. Without a validation side
    the threshold comes from the training sample itself, which is closer than new tiles would be, so more
    new tiles exceed it."""
    step = novelty.feature_step((model,))
    train_x, train_y = training_sample(train_eval, eval_labels, per_class=per_class, seed=seed, channels=channels)
    [train_features] = novelty.features(step, train_x)
    held_out, where = train_features, "training sample (no validation side)"
    if validation:
        valid_x, _ = training_sample(
            validation,
            labelled(validation, classes, "validation data"),
            per_class=per_class,
            seed=seed,
            channels=channels,
        )
        [held_out], where = novelty.features(step, valid_x), "validation side's calibration part"
    return novelty.fit(train_features, train_y, held_out, held_out=where, layers=novelty.probed_layers(model))


def novelty_record(reference):
    """metrics.json's `novelty`: the reference's record, its threshold at the default quantile and the sample
    behind it (novelty.sample_size; a warning when it is too small for the quantile)."""
    sample = novelty.sample_size(reference.meta["held_out_tiles"])
    if sample["threshold_note"]:
        log.warning("%s", sample["threshold_note"])
    return reference.meta | {"threshold_0.99": reference.threshold()} | sample


def speed_settings(options, model, batches, optimizer):
    """What a run trains with of what `train.xla` and `train.mixed_precision` ask: {xla, precision, notes}.
    XLA that fails to compile this model here is dropped, with the reason in the notes (the log and
    metrics.json say it); mixed precision needs a GPU (runtime.configure_tensorflow)."""
    notes = []
    xla = bool(options["xla"])
    if xla:
        failure = runtime.xla_failure(
            model,
            lambda copy: compile_for(copy, {**options, "epochs": 1, "xla": True}, optimizer=optimizer, steps=1),
            batches.at(0),
        )
        if failure:
            xla = False
            notes.append(f"train.xla asked for, but XLA was not used ({failure}): trained without it")
    precision = runtime.precision()
    if options["mixed_precision"] and precision == "float32":
        notes.append("train.mixed_precision asked for, but there is no GPU: trained in float32")
    for note in notes:
        log.warning(note)
    return {"xla": xla, "precision": precision, "notes": notes}


def compile_for(model, options, *, optimizer, steps):
    """Compile a new model with the recipe's optimizer, learning rate (schedule) and loss."""
    from cellclass.learn import models

    peak = models.DEFAULT_LEARNING_RATES[optimizer] if options["learning_rate"] is None else options["learning_rate"]
    rate = recipe.learning_rate(
        options["schedule"],
        peak,
        epochs=options["epochs"],
        steps_per_epoch=steps,
        warmup_epochs=options["warmup_epochs"],
    )
    model.compile(
        optimizer=models.make_optimizer(optimizer, rate, weight_decay=options["weight_decay"]),
        loss=recipe.loss(options["label_smoothing"]),
        metrics=["accuracy"],
        jit_compile=options["xla"],
    )


def epoch_chooser(options, selection):
    """The callback that keeps the best epoch and stops early (Keras' EarlyStopping), or None where a run trains
    every epoch and keeps the last, or has no validation side to choose on."""
    from cellclass.learn import callbacks

    if selection == "best" or (selection == "last" and options["patience"] is not None):
        return callbacks.BestEpoch(options["monitor"], patience=options["patience"], restore=selection == "best")
    return None


def recipe_record(options, optimizer, *, asked):
    """What a run trained with, for metrics.json: the recipe's keys as used (`options`, the epochs resolved from
    its budget), and those the config set (the keys in `asked` as the config gave them)."""
    from cellclass.learn import models

    used = {key: options[key] for key in recipe.KEYS}
    used["optimizer"] = optimizer
    if used["learning_rate"] is None:
        used["learning_rate"] = models.DEFAULT_LEARNING_RATES[optimizer]
    return {
        "name": options["recipe"],
        **used,
        "monitor": options["monitor"],
        "overrides": recipe.overrides({**options, **asked}),
    }


def choice_record(chooser, selection, history, monitor):
    """metrics.json's record of the epoch kept (1-based): which, by what rule, its monitored value, and the epoch
    after which early stopping ended training (None if it ran every epoch)."""
    kept = int(history["epoch"].max())
    if chooser is not None and chooser.restore_best_weights and chooser.best is not None:
        kept = int(chooser.best_epoch) + 1
    stopped = int(chooser.stopped_epoch) + 1 if chooser is not None and chooser.stopped_epoch > 0 else None
    value = history.loc[history["epoch"] == kept, monitor].iloc[0]
    return {
        "kept_epoch": kept,
        "epoch_selection": selection,
        "stopped_epoch": stopped,
        "monitor_at_kept": None if pd.isna(value) else float(value),
    }


def fit_with_warm_up(model, compile_model, freeze_epochs, data, *, epochs, initial_epoch, chooser=None, **fit_options):
    """model.fit, with the model's "backbone" frozen for the first `freeze_epochs` epochs, then every layer
    fine-tuned: while the new head is random, its large gradients would otherwise scramble pretrained features.

    Two fits on one epoch counter, so the epoch log and the checkpoints read as one run, and a run killed in
    either phase resumes in it: the checkpoint keeps the backbone's frozen state. `compile_model(model)` compiles
    afresh (a new optimizer) when the trainable weights change; Keras needs that to see the change. The epoch
    `chooser` (BestEpoch) watches both fits as one: it puts the best epoch back only after the last one, and an
    early stop in the frozen phase ends the run.
    """
    from cellclass.learn import models

    phases = [(min(freeze_epochs, epochs), False), (epochs, True)] if freeze_epochs else [(epochs, None)]
    fitted = False
    for i, (end, trainable) in enumerate(phases):
        if initial_epoch >= end:
            continue
        backbone = models.backbone(model)
        if trainable is not None:
            if backbone.trainable != trainable:
                backbone.trainable = trainable
                compile_model(model)
            log.info(
                "epochs %d-%d: %s",
                initial_epoch + 1,
                end,
                "fine-tuning every layer" if trainable else "backbone frozen, training the head",
            )
        if chooser is not None:
            chooser.final = i == len(phases) - 1
        model.fit(data, epochs=end, initial_epoch=initial_epoch, **fit_options)
        fitted, initial_epoch = True, end
        if chooser is not None and chooser.stopped_epoch > 0:
            break
    # Stopped early while the backbone was frozen, or resumed with every epoch done: the best epoch goes back.
    if chooser is not None and (not chooser.final or not fitted):
        chooser.final = True
        chooser.on_train_end()


def run_inputs(*, dataset, fold, shards, manifest, train_shards=None, other_test_sets=None, extra=()):
    """The TileSets one run reads, by side of its fold's split (the dataset's split.tsv says which).

    `train_shards` are the precomputed copies resampled from the raw field
    (augment.angles, augment.translations), or `shards` when there are none; the train job reads them, the score
    job does not (None). The other test sets (name -> shard files; the score job's) are tested whole. `extra`:
    the extra labelled cells' file (datasets.<name>.extra_labels), outside the split: they only train.
    """
    sides = split.sides_in_fold(manifest, fold)
    own = tilestore.load_all(shards)
    inputs = {
        "train_eval": on_side(own, sides, "train"),
        "validation": on_side(own, sides, "validation"),
        "test_sets": {dataset: on_side(own, sides, "test")}
        | {name: tilestore.load_all(files) for name, files in (other_test_sets or {}).items()},
        "extra": tilestore.load_all(extra),
    }
    if train_shards is not None:
        inputs["train"] = on_side(tilestore.load_all(train_shards), sides, "train")
    return inputs


def on_tile_side(tilesets, sides, side):
    """The tiles of `tilesets` on `side` of a tile-level split (`sides`: tile id -> side), image by image."""
    kept = []
    for tileset in tilesets:
        part = tileset.subset([sides.get(tile) == side for tile in tileset.tile_ids(op=False)])
        if len(part):
            kept.append(part)
    return kept


def random_tile_inputs(*, dataset, shards, seed, test_fraction, validation_fraction, train_shards=None):
    """The TileSets of the leakage check's control run: the sides of a random split of the dataset's tiles that
    ignores images and groups (split.tile_sides), read as run_inputs reads a fold's."""
    own = tilestore.load_all(shards)
    notes = []
    sides = split.tile_sides(
        own, seed=seed, test_fraction=test_fraction, validation_fraction=validation_fraction, notes=notes
    )
    for note in notes:
        log.warning("random tile split of %s: %s", dataset, note)
    inputs = {
        "train_eval": on_tile_side(own, sides, "train"),
        "validation": on_tile_side(own, sides, "validation"),
        "test_sets": {dataset: on_tile_side(own, sides, "test")},
    }
    if train_shards is not None:
        inputs["train"] = on_tile_side(tilestore.load_all(train_shards), sides, "train")
    return inputs


@dataclass
class RunData:
    """What one run trains on, checked: the TileSets of each side (extra labelled cells joined to training),
    their labels, the input shape; then (with_fit_inputs) the class balance, the validation side's two uses,
    the training sample the curves score and the training batches."""

    train: list
    train_eval: list
    train_labels: list
    eval_labels: list
    shape: tuple
    extra: list
    validation: list = ()
    per_class: np.ndarray = None
    balance: str = None
    ratio: float = None
    class_weight: dict = None
    uses: validation_uses.Uses = None
    batches: pipeline.Batches = None
    curve_sample: tuple = None
    validation_data: object = None
    n_validation: int = 0


def checked_data(classes, train, train_eval, extra, channels):
    """A run's training tiles, labelled and checked: every class has some, the channels exist."""
    extra = list(extra)
    train, train_eval = [*train, *extra], [*train_eval, *extra]
    shape = tile_shape(train, channels)
    train_labels = labelled(train, classes, "training data")
    if sorted(set(train_labels)) != list(range(len(classes))):
        missing = [c for i, c in enumerate(classes) if i not in train_labels]
        raise InputError(f"class(es) {', '.join(missing)} have no training tiles")
    eval_labels = labelled(train_eval, classes, "training data")
    return RunData(train, train_eval, train_labels, eval_labels, shape, extra)


def with_fit_inputs(data, validation, classes, options, seed):
    """`data` with what fitting reads: class balance, the validation side's uses (one part chooses the epoch,
    the other calibrates: cellclass.learn.validation), the curves' training sample and the batches."""
    per_class, balance, ratio, class_weight = balancing(
        data.train_eval, data.eval_labels, classes, options["class_balance"]
    )
    uses = validation_uses.split(validation, chooses=validation_uses.chooses_epoch(options))
    log.info("%s", validation_uses.words(uses.record))
    validation_data, validation_stream = pipeline.make_dataset(
        uses.epoch, labelled(uses.epoch, classes, "validation data"), **common_options(data, classes, options)
    )
    curve_sample = training_sample(
        data.train_eval,
        data.eval_labels,
        per_class=options["train_eval_tiles"],
        seed=seed,
        channels=options["channels"],
    )
    batches = pipeline.Batches(
        data.train,
        data.train_labels,
        shuffle=True,
        n_classes=len(classes),
        batch_size=options["batch_size"],
        channels=options["channels"],
        **stream_options(options, seed, balance),
    )
    return replace(
        data,
        validation=list(validation),
        per_class=per_class,
        balance=balance,
        ratio=ratio,
        class_weight=class_weight,
        uses=uses,
        batches=batches,
        curve_sample=curve_sample,
        validation_data=validation_data,
        n_validation=validation_stream.tiles_per_pass,
    )


def common_options(data, classes, options):
    """What every dataset of the run is built with."""
    return dict(
        n_classes=len(classes), tile_shape=data.shape, batch_size=options["batch_size"], channels=options["channels"]
    )


def stream_options(options, seed, balance):
    """How the training stream draws and augments its batches."""
    return dict(seed=seed, balance=balance == "sampling", augment=options.get("augment"), views=recipe.views(options))


def new_model(model_name, data, classes, options, seed):
    """A fresh network for these tiles, standardising its inputs inside the model if asked."""
    from cellclass.learn import models

    standardise = (
        channel_statistics(data.train_eval, data.eval_labels, seed=seed, channels=options["channels"])
        if options["standardise"]
        else None
    )
    model_options = options["model_options"].get(model_name, {})
    return models.build_model(model_name, data.shape, len(classes), standardise=standardise, **model_options)


def epoch_choice(model, options, has_validation, checkpoint, epochs_done):
    """(selection, chooser, stopped): how the kept epoch is chosen, on the validation side only (the test side is
    scored after training, cellclass.learn.scoring); its callback, told where a resumed run stands; and whether
    a resumed run had already stopped early."""
    from cellclass.learn import callbacks

    selection = recipe.epoch_selection(options, has_validation=has_validation)
    chooser = epoch_chooser(options, selection)
    checkpoint.keep = chooser
    stopped = False
    if chooser is not None and epochs_done:
        done = callbacks.read_epoch_log(checkpoint.folder / "history.csv")
        done = done[done["epoch"] <= epochs_done][options["monitor"]]  # a logged but unsaved epoch is redone
        stopped = chooser.resume(model, done, checkpoint.weights)
    return selection, chooser, stopped


def fit_callbacks(options, steps, epochs_done, curve_sample, chooser, checkpoint):
    """Scored, then logged, then judged, then saved: a kill between log and save repeats the epoch on resume,
    and the log keeps the repeat's record."""
    from cellclass.learn import callbacks

    return [
        callbacks.Progress(options["epochs"] * steps, options["batch_size"], done=epochs_done * steps),
        callbacks.TrainingScore(*curve_sample),
        callbacks.epoch_log(checkpoint.folder / "history.csv"),
        *([chooser] if chooser is not None else []),
        checkpoint,
    ]


def fit_run(model, data, classes, *, model_name, options, optimizer, checkpoint, epochs_done, fresh, seed, threads):
    """Train `model` to the run's budget, keeping the epoch its recipe chooses; returns the options as resolved
    (epochs, xla) and what the training record says of the fit (work, speed, epoch choice, tiles, seconds)."""
    from cellclass.learn import models

    n_validation = data.n_validation  # the tiles the curves score, and the epoch is chosen on
    train_x, train_y = data.curve_sample
    work = resolve_work(
        options,
        data.batches,
        model=model,
        optimizer=optimizer,
        scored_tiles=n_validation + len(train_y),
        record=checkpoint.folder / "work.json",
    )
    speed = speed_settings(options, model, data.batches, optimizer)
    options = {**options, "epochs": work["epochs"], "xla": speed["xla"]}
    # An epoch is `epoch_passes` passes over the training tiles, or `epoch_tiles` drawn from an endless stream (the
    # article's epochs were 400 images). Each batch is augmented on the fly as a pure function of (seed, pass,
    # batch), so a resumed run sees what an uninterrupted one would have seen.
    train_data, steps, n_train = pipeline.training_stream(
        data.train,
        data.train_labels,
        epoch_tiles=work["epoch_tiles"],
        passes=work["epoch_passes"] or 1,
        epochs_done=epochs_done,
        workers=threads,
        **stream_options(options, seed, data.balance),
        **common_options(data, classes, options),
    )

    def compile_model(model):  # a new optimizer with the recipe's schedule (fresh model, or fine-tuning starts)
        compile_for(model, options, optimizer=optimizer, steps=steps)

    if fresh:  # a resumed model comes with its optimizer, its schedule and its step
        compile_model(model)
    log.info(
        "model %s, input %s, %d classes, %d training tiles per pass, %d validation tiles%s; augmented on the fly: %s",
        model_name,
        data.shape,
        len(classes),
        n_train,
        n_validation,
        "" if n_validation else " (no validation side: the curves show training data only)",
        on_the_fly(options.get("augment")),
    )
    selection, chooser, stopped = epoch_choice(model, options, bool(n_validation), checkpoint, epochs_done)
    started, cpu_started = time.perf_counter(), time.process_time()
    if stopped:  # killed after early stopping, before the outputs were written
        chooser.on_train_end()
    else:
        fit_with_warm_up(
            model,
            compile_model,
            models.freeze_epochs(model_name, options["model_options"].get(model_name, {})),
            train_data,
            chooser=chooser,
            validation_data=data.validation_data if n_validation else None,
            epochs=options["epochs"],
            initial_epoch=epochs_done,
            steps_per_epoch=steps,
            class_weight=data.class_weight,
            shuffle=False,  # the stream shuffles; Keras would only warn that it ignores this
            verbose=2,
            callbacks=fit_callbacks(options, steps, epochs_done, (train_x, train_y), chooser, checkpoint),
        )
    return options, {
        "work": work,
        "speed": speed,
        "selection": selection,
        "chooser": chooser,
        "n_train": n_train,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
    }


def record_run(model, data, classes, *, identity, options, optimizer, fitted, out_dir, device):
    """Save the kept model, its epoch log, its novelty reference and the training record (training.json: what was
    trained, on what and how; cellclass.learn.scoring adds the calibration and test sides to make metrics.json)."""
    with atomic_path(out_dir / "model.keras") as tmp:
        model.save(tmp)  # with the kept epoch's weights
    from cellclass.learn import callbacks

    history = callbacks.read_epoch_log(out_dir / "backup" / "history.csv")
    chosen = choice_record(fitted["chooser"], fitted["selection"], history, options["monitor"])
    history["kept"] = history["epoch"] == chosen["kept_epoch"]
    log.info(
        "kept epoch %d of %d (%s)%s",
        chosen["kept_epoch"],
        int(history["epoch"].max()),
        fitted["selection"],
        f"; stopped early after epoch {chosen['stopped_epoch']}" if chosen["stopped_epoch"] else "",
    )
    with atomic_path(out_dir / "history.csv") as tmp:
        history.to_csv(tmp, index=False)
    seed = int(identity["seed"])
    reference = novelty_reference(
        model,
        data.train_eval,
        data.eval_labels,
        data.uses.calibration,
        classes,
        channels=options["channels"],
        seed=seed,
    )
    with atomic_path(out_dir / novelty.FILE) as tmp:
        with open(tmp, "wb") as handle:
            reference.save(handle)
    work = fitted["work"]
    record = {
        **identity,
        "seed": seed,
        "classes": classes,
        "input_shape": list(data.shape),
        "channels": options["channels"],
        "prepare": preparation(data.train),
        "parameters": int(model.count_params()),
        "device": device,
        "train_tiles": fitted["n_train"],
        "train_tiles_per_class": dict(zip(classes, data.per_class.tolist())),
        # Extra labelled cells trained on (in train_tiles_per_class too), and the sheets they came from.
        "extra_tiles": extra_labels.counts(data.extra, classes),
        "extra_labels": sorted({t.meta["extra_labels"] for t in data.extra}),
        "imbalance_ratio": round(float(data.ratio), 3),
        "class_balance": data.balance,
        "augmented_on_the_fly": on_the_fly(options.get("augment")),
        "validation_tiles": sum(len(t) for t in data.validation),
        "epochs": int(history["epoch"].max()),
        "recipe": recipe_record(options, optimizer, asked=work["asked"]),
        "work": {key: value for key, value in work.items() if key != "asked"},
        "standardise": standardisation(model),
        **fitted["speed"],
        **chosen,
        "train_seconds": round(fitted["seconds"], 2),
        "train_cpu_seconds": round(fitted["cpu_seconds"], 2),  # every thread of the job, scoring after each epoch
        "novelty": novelty_record(reference),
        "validation_uses": data.uses.record,
    }
    with atomic_path(out_dir / RECORD) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    return record


def train_run(*, identity, classes, train, train_eval, validation, out_dir, options, threads=1, extra=()):
    """Train and save one run; returns its training record (training.json). The steps: the data, checked; the
    model, new or resumed from the run's last finished epoch; the fit; the record.

    `identity` is {experiment, dataset, model, fold, seed}, recorded so nothing downstream reads it from paths.
    `train`, `train_eval` and `validation` are TileSets. The per-epoch curves use the validation side's part that
    chooses the epoch (none if it is empty) and a fixed sample of the unaugmented training tiles (`train_eval`)
    scored in inference mode; its other part fits the novelty threshold here, and the temperature when the run
    is scored (cellclass.learn.scoring). `extra` (TileSets of extra labelled cells,
    cellclass.prepare.extra_labels) join `train` and `train_eval`; they are never validated or tested on.
    """
    from cellclass.learn import callbacks, models

    model_name, seed, out_dir = identity["model"], int(identity["seed"]), Path(out_dir)
    device = runtime.configure_tensorflow(
        threads=threads, seed=seed, deterministic=options["deterministic"], mixed_precision=options["mixed_precision"]
    )
    data = checked_data(classes, train, train_eval, extra, options["channels"])
    checkpoint = callbacks.Checkpoint(out_dir / "backup")  # its folder is made once the inputs are checked
    model, epochs_done = checkpoint.restore()
    fresh = model is None
    if fresh:
        model = new_model(model_name, data, classes, options, seed)
    data = with_fit_inputs(data, validation, classes, options, seed)
    optimizer = options["optimizer"] or models.MODELS[model_name].optimizer
    options, fitted = fit_run(
        model,
        data,
        classes,
        model_name=model_name,
        options=options,
        optimizer=optimizer,
        checkpoint=checkpoint,
        epochs_done=epochs_done,
        fresh=fresh,
        seed=seed,
        threads=threads,
    )
    record = record_run(
        model,
        data,
        classes,
        identity=identity,
        options=options,
        optimizer=optimizer,
        fitted=fitted,
        out_dir=out_dir,
        device=device,
    )
    shutil.rmtree(checkpoint.folder)
    return record
