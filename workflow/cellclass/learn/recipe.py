"""The training recipe: optimizer, learning-rate schedule, loss, how much a run trains and which epoch it keeps,
named by a preset.

`train.recipe: article` is the set-up cellclass trained with before recipes existed, the article's: the
model's own optimizer (Adam; SGD with momentum for alexnet) at its default rate held constant, plain
cross-entropy, 9 epochs, the last one kept, tiles fed as prepared. `modern` (the default) standardises each
input channel inside the model, trains AdamW with decoupled weight decay, a linear warm-up into a cosine decay
and label smoothing, for a budget of work (cellclass.learn.budget) cut into 10 to 30 epochs, keeping the epoch
with the lowest validation loss and stopping once it has not improved for 5 epochs. Every key of a preset can be set
on its own (train.learning_rate, train.patience, ...), and a key set overrides the preset's value.

Pure Python at import (the config check uses it while Snakemake parses); Keras is imported where it is used.
"""

PRESETS = {
    "article": {
        "optimizer": None,  # the model's own: adam, sgd for alexnet
        "learning_rate": None,  # the optimizer's default: 1e-3, 0.01 for sgd
        "schedule": "constant",
        "warmup_epochs": 0,
        "weight_decay": 0.0,
        "label_smoothing": 0.0,
        "epochs": 9,
        "patience": None,
        "keep_epoch": "last",
        "epoch_passes": None,  # 1: a pass of `views: all` holds every tile in its 8 views
        # Every tile in each of its 8 rotations and flips once an epoch, shuffled, in the order the stored copies
        # had: the article's epochs, batch for batch.
        "views": "all",
        "budget": None,  # epochs x epoch length is the work
        "standardise": False,
    },
    "modern": {
        "optimizer": "adamw",
        "learning_rate": 1e-3,
        "schedule": "cosine",
        "warmup_epochs": 1,
        # Keras (like PyTorch and Loshchilov & Hutter) decays decoupled and scaled by the rate: each step
        # shrinks a weight by learning_rate x weight_decay (5e-5 at the peak here, the product of ConvNeXt's
        # and DeiT's 4e-3 x 0.05). An SGD-style L2 coefficient such as 1e-4 would shrink by 1e-7: nothing.
        "weight_decay": 0.05,
        "label_smoothing": 0.1,
        "epochs": None,  # from the budget (cellclass.learn.budget); early stopping may end a run sooner
        "patience": 5,
        "keep_epoch": "best",
        # One pass an epoch trained deep50 to 0.81 on the six-pattern bench, 8 to 0.88 (bench/learn.py): an
        # epoch that shows each tile in its 8 views on average, as the article's did, with early stopping.
        "epoch_passes": None,
        "views": "random",
        # Chosen by bench/learn.py's accuracy per CPU-second (docs/training.md, Training budget): 30 passes learn a set
        # of hundreds of cells; the tile-step cap keeps a set of 10^4 cells within an hour on 2 cores.
        "budget": {"passes": 30, "tile_steps": 100_000},
        # Each channel standardised on the training tiles, inside the model: dim bit-depth-scaled fields
        # (values near 0.01) otherwise kill the article's ReLU networks under AdamW.
        "standardise": True,
    },
}
KEYS = tuple(PRESETS["article"])
# Our names of the monitored metrics -> (Keras' log key, the better direction).
MONITORS = {"validation_loss": ("val_loss", "min"), "validation_accuracy": ("val_accuracy", "max")}
OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD with momentum 0.9"}


def resolve(train):
    """`train` (checked settings of one experiment) with every recipe key it leaves out taken from its preset.

    The config check leaves these keys without schema defaults, so a key present here was set by the user, at
    the top level or in the experiment, and wins over the preset whichever level set `recipe`.
    """
    preset = PRESETS[train["recipe"]]
    return {**train, **{key: value for key, value in preset.items() if key not in train}}


def overrides(train):
    """The recipe keys of resolved settings that differ from their preset, {key: value}."""
    preset = PRESETS[train["recipe"]]
    return {key: train[key] for key in KEYS if train[key] != preset[key]}


def epoch_passes(train):
    """Passes over the training tiles in an epoch (without epoch_tiles); by default (null) 8 with dihedral
    augmentation drawn at random, else 1. The article's epochs held every stored dihedral copy of every tile,
    8 tiles' worth each, which is one pass of `views: all`; drawing one view per tile and pass, 8 passes show
    each tile in its 8 views on average."""
    if train["epoch_passes"] is not None:
        return train["epoch_passes"]
    return 8 if _dihedral(train) and train["views"] == "random" else 1


def views(train):
    """How a pass shows the rotations and flips: 'all' (every tile in each of its 8 views) or 'random' (one view
    per tile drawn per batch; also when dihedral augmentation is off, the one view being the tile as stored)."""
    return train["views"] if _dihedral(train) else "random"


def _dihedral(train):
    return bool((train.get("augment") or {}).get("dihedral"))


def epoch_selection(train, has_validation):
    """How a run picks the epoch it keeps: 'best' (on the validation side), 'last', or 'last: no validation side'."""
    if not has_validation:
        return "last: no validation side"
    return train["keep_epoch"]


def learning_rate(schedule, peak, *, epochs, steps_per_epoch, warmup_epochs):
    """What the optimizer's rate follows: the number `peak`, or a Keras schedule of the optimizer's step.

    cosine: keras.optimizers.schedules.CosineDecay from `peak` to 0 at the last step of `epochs`, after a
    linear warm-up from 0 over `warmup_epochs`. constant: `peak` throughout (after the warm-up, if any:
    CosineDecay with alpha 1 holds its rate). The schedule lives in the optimizer, so it is saved with the
    model and a resumed run continues it.
    """
    import keras

    if schedule == "constant" and not warmup_epochs:
        return float(peak)
    total = epochs * steps_per_epoch
    warmup = min(round(warmup_epochs * steps_per_epoch), total)
    alpha = 1.0 if schedule == "constant" else 0.0
    decay = max(total - warmup, 1)
    if not warmup:
        return keras.optimizers.schedules.CosineDecay(float(peak), decay, alpha=alpha)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay, alpha=alpha, warmup_target=float(peak), warmup_steps=warmup
    )


def loss(label_smoothing):
    """Cross-entropy on the pipeline's one-hot labels, smoothed towards uniform by `label_smoothing`.

    No smoothing keeps the name Keras compiled with before recipes existed.
    """
    if not label_smoothing:
        return "categorical_crossentropy"
    import keras

    return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)


def budget_words(budget):
    """A budget (train.budget) in words: '30 passes, at most 100,000 tile-steps'."""
    if not budget:
        return "no budget"
    parts = []
    if "passes" in budget:
        parts.append(f"{budget['passes']:g} passes over the training tiles")
    if "tile_steps" in budget:
        parts.append(f"{budget['tile_steps']:,} tile-steps")
    if "minutes" in budget:
        parts.append(f"{budget['minutes']:g} minutes")
    return parts[0] if len(parts) == 1 else parts[0] + ", at most " + " and ".join(parts[1:])


def describe(used):
    """A run's recipe in words, from the `recipe` record of its metrics.json."""
    parts = [OPTIMIZER_NAMES.get(used["optimizer"], used["optimizer"])]
    if used["weight_decay"]:
        parts[0] += f" (weight decay {used['weight_decay']:g})"
    rate = f"learning rate {used['learning_rate']:g}"
    if used["schedule"] == "cosine":
        rate += " decaying on a cosine to 0"
    else:
        rate += " held constant"
    if used["warmup_epochs"]:
        rate += f" after a {used['warmup_epochs']:g}-epoch linear warm-up"
    parts.append(rate)
    parts.append(f"label smoothing {used['label_smoothing']:g}" if used["label_smoothing"] else "no label smoothing")
    stop = f", stopping after {used['patience']} epochs without improvement" if used["patience"] else ""
    keep = (
        f"the epoch of best {used['monitor'].replace('_', ' ')} kept"
        if used["keep_epoch"] == "best"
        else "the last epoch kept"
    )
    parts.append(f"at most {used['epochs']} epochs{stop}, {keep}")
    if used.get("standardise"):
        parts.append("each input channel standardised inside the model on the training tiles' statistics")
    text = f"the {used['name']} recipe: " + ", ".join(parts)
    if used.get("overrides"):
        text += (
            " (set in the config: "
            + ", ".join(
                f"budget {budget_words(v)}" if k == "budget" else f"{k} {v}" for k, v in used["overrides"].items()
            )
            + ")"
        )
    return text
