"""How much a run trains: its budget (`train.budget`) turned into epochs and tiles per epoch.

A budget is a set of limits, in passes over the training tiles, in tile-steps (tiles shown to the network in
training steps, repeats counted) or in minutes; the smallest of those given is the run's work. Minutes become
tile-steps through the throughput a run measures in its first seconds (`measure`), and the tile-steps resolved
are recorded (metrics.json's `work`), so `budget: {tile_steps: N}` reruns the same training exactly.

The work is then cut into epochs: as many as whole passes it holds, at least MIN_EPOCHS (so the epoch kept and
early stopping have a choice) and at most MAX_EPOCHS (each epoch also scores the validation side). Explicit
`epochs`, `epoch_passes` or `epoch_tiles` override what the budget would derive; with an epoch count and an
epoch length both set the budget has nothing left to decide.

Pure Python (the plan and tests use it without TensorFlow); `measure` imports Keras where it runs.
"""

import math
import time

from cellclass.learn import recipe

MIN_EPOCHS, MAX_EPOCHS = 10, 30
UNITS = ("passes", "tile_steps", "minutes")


def epoch_length(options):
    """An epoch's length as the config sets it explicitly: ('tiles', epoch_tiles), ('passes', epoch_passes) or
    None."""
    if options["epoch_tiles"]:
        return "tiles", int(options["epoch_tiles"])
    if options["epoch_passes"] is not None:
        return "passes", int(options["epoch_passes"])
    return None


def limits(budget, tiles_per_pass, tiles_per_second=None):
    """Each limit of `budget` in tile-steps: {unit: tile-steps} (minutes need the measured tiles_per_second)."""
    out = {}
    if "passes" in budget:
        out["passes"] = budget["passes"] * tiles_per_pass
    if "tile_steps" in budget:
        out["tile_steps"] = budget["tile_steps"]
    if "minutes" in budget:
        out["minutes"] = budget["minutes"] * 60 * tiles_per_second
    return {unit: int(math.floor(value)) for unit, value in out.items()}


def resolve(options, tiles_per_pass, *, tiles_per_second=None, fixed_cost=0.0):
    """A run's work: {epochs, epoch_tiles or epoch_passes (the other None), tile_steps, passes, set_by}.

    `options`: the run's train settings (recipe resolved); `tiles_per_pass`: training tiles per pass (after
    class-balanced sampling); `tiles_per_second`, `fixed_cost` (seconds an epoch spends outside training
    steps: scoring the validation side): measured, for a budget in minutes. Raises ValueError for a budget
    smaller than one batch.
    """
    batch, budget, epochs = options["batch_size"], options["budget"], options["epochs"]
    length = epoch_length(options)
    if epochs and length:
        return _work(epochs, length, tiles_per_pass, "epochs x epoch length (the budget is not used)")
    if not budget:
        return _work(epochs, length or ("passes", recipe.epoch_passes(options)), tiles_per_pass, "epochs")
    each = limits(budget, tiles_per_pass, tiles_per_second)
    if "minutes" in each and fixed_cost:
        each["minutes"] = _after_scoring(budget["minutes"] * 60, tiles_per_second, fixed_cost, tiles_per_pass)
    unit = min(each, key=each.get)
    total = each[unit]
    if total < batch:
        raise ValueError(
            f"train.budget {recipe.budget_words(budget)} is {total} tile-steps here, less than one batch "
            f"({batch} tiles) of {tiles_per_pass} training tiles per pass"
        )
    set_by = f"budget ({unit.replace('_', '-')})"
    if epochs:
        return _work(epochs, ("tiles", max(batch, total // epochs)), tiles_per_pass, set_by)
    if length:
        unit, size = length
        per_epoch = size * tiles_per_pass if unit == "passes" else size
        return _work(max(1, round(total / per_epoch)), length, tiles_per_pass, set_by)
    epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, round(total / tiles_per_pass)), max(1, total // batch))
    return _work(epochs, ("tiles", total // epochs), tiles_per_pass, set_by)


def _after_scoring(seconds, tiles_per_second, fixed_cost, tiles_per_pass):
    """Tile-steps that fit in `seconds` once each epoch's scoring (`fixed_cost` s) is paid; the epoch count
    depends on the tile-steps, so two rounds settle it."""
    total = seconds * tiles_per_second
    for _ in range(2):
        epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, round(total / tiles_per_pass)))
        total = max(0.0, seconds - epochs * fixed_cost) * tiles_per_second
    return int(total)


def _work(epochs, length, tiles_per_pass, set_by):
    unit, size = length
    per_epoch = size * tiles_per_pass if unit == "passes" else size
    return {
        "epochs": int(epochs),
        "epoch_tiles": size if unit == "tiles" else None,
        "epoch_passes": size if unit == "passes" else None,
        "tile_steps": int(epochs * per_epoch),
        "passes": round(epochs * per_epoch / max(tiles_per_pass, 1), 2),
        "set_by": set_by,
    }


def steps_per_epoch(work, batch_size, batches_per_pass):
    """Training steps in an epoch of `work`: whole passes of batches, or epoch_tiles' worth of batches."""
    if work["epoch_passes"] is not None:
        return work["epoch_passes"] * batches_per_pass
    return math.ceil(work["epoch_tiles"] / batch_size)


def measure(model, compile_model, stream_at, *, scored_tiles, seconds=8.0, max_steps=60):
    """(training tiles per second, seconds to score `scored_tiles` in inference mode) of `model`, measured on
    a copy of it (the run's own weights and optimizer stay untouched) with batches `stream_at(i)`.

    The first step of each kind compiles and is not timed.
    """
    import keras

    probe = keras.models.clone_model(model)
    compile_model(probe)
    x, y = stream_at(0)
    probe.train_on_batch(x, y)
    steps, tiles, started = 0, 0, time.perf_counter()
    while steps < max_steps and time.perf_counter() - started < seconds:
        x, y = stream_at(steps + 1)
        probe.train_on_batch(x, y)
        steps, tiles = steps + 1, tiles + len(x)
    rate = tiles / (time.perf_counter() - started)
    batch = x[:1].repeat(min(256, max(scored_tiles, 1)), axis=0)
    probe.predict_on_batch(batch)
    started = time.perf_counter()
    probe.predict_on_batch(batch)
    per_tile = (time.perf_counter() - started) / len(batch)
    return rate, per_tile * scored_tiles
