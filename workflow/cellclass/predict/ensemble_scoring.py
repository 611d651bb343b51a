"""The ensemble's scores of new tiles: each member's calibrated class probabilities and novelty per tile.

Takes model paths (runs' model.keras, or a package) and TileSets; gives the members, their temperatures and
novelty references, and per chunk of TileSets the (members, tiles, classes) probabilities, each calibrated by
its member's temperature, and the (members, tiles) novelty. Each member of an ensemble (the seeds of one
experiment and model) scores every tile; the calls are their mean (cellclass.predict.call_tables).
"""

from pathlib import Path

import numpy as np

from cellclass.evaluate import runs
from cellclass.learn import calibration, inference
from cellclass.predict.tiling_check import check_input_shape
from cellclass.share import package


def load_members(model_paths):
    """The ensemble: every trained model (a run's model.keras, or the members of a package), loaded once
    (inference only, so no optimizer state)."""
    import keras

    return [
        member
        for path in model_paths
        for member in (
            package.load_members(path) if package.is_package(path) else [keras.models.load_model(path, compile=False)]
        )
    ]


def member_temperatures(model_paths):
    """Each member's temperature (cellclass.learn.calibration), in load_members' order: from its run's
    metrics.json beside its model.keras, or from the package's record; 1 for runs from before calibration."""
    return [
        t
        for path in model_paths
        for t in (
            package.temperatures(path)
            if package.is_package(path)
            else [calibration.temperature_of(runs.read_metrics(Path(path).parent))]
        )
    ]


def read_references(model_paths, novelty_paths):
    """Each member's novelty.Reference: from each run's novelty.npz, or from the package; None for a package
    exported before references existed (then no tile abstains for being unfamiliar)."""
    from cellclass.learn.novelty import Reference

    if package.is_package(model_paths[0]):
        return package.read_references(model_paths[0])
    return [Reference.load(path) for path in novelty_paths]


def scored_chunks(members, references, tilesets, run, options, tta="none", temperatures=None, batch_size=256):
    """Per chunk of consecutive TileSets (inference.chunks): the chunk, its tiles' (members, tiles, classes)
    probabilities, each calibrated by its member's temperature (`tta`: cellclass.learn.inference.TTA), and their
    (members, tiles) novelty, None where the runs carry no reference or it is off."""
    check_input_shape(tilesets, run)
    judged = None if options["novelty_quantile"] is None else references
    n_members, n_classes = len(members), len(run["classes"])
    for chunk, tiles, _ in inference.chunks(tilesets, channels=run["channels"]):
        if tiles is None:
            scores = np.zeros((n_members, 0, n_classes), np.float32)
            novelty = None if judged is None else np.zeros((n_members, 0))
        else:
            scores, novelty = inference.scores_and_novelty(
                members, judged, tiles, quantile=options["novelty_quantile"], batch_size=batch_size, tta=tta
            )
        yield chunk, calibration.per_member(scores, temperatures or [1.0] * n_members), novelty
