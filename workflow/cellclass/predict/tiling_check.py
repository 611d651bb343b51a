"""New images tiled exactly as a trained run's training images were, or refused.

Takes a run's record (read_run: its metrics.json, or a model package, which carries the same record) and new
images; gives their TileSets, tiled with the run's own settings, or an InputError naming the image and what
differs from the training images (labels, channels, bit depth, tile shape).
"""

from pathlib import Path

from cellclass.evaluate import runs
from cellclass.io.errors import InputError
from cellclass.learn.pipeline import select_channels
from cellclass.prepare import tiling
from cellclass.share import package


def read_run(metrics_path):
    """What a trained run recorded about its inputs: classes, channels fed, and how its tiles were made; from a
    run's training.json (or metrics.json), or from a model package (.zip), which carries the same record."""
    if package.is_package(metrics_path):
        return package.read_record(metrics_path)
    metrics = runs.read_metrics(Path(metrics_path).parent, Path(metrics_path).name)
    if not (metrics.get("prepare") or {}).get("settings"):
        raise InputError(
            f"{metrics_path}: this run predates recorded preparation settings; retrain it to predict with it"
        )
    return metrics


def tile_shard_like_training(samples, run):
    """Tile a shard of new images exactly as the run's training data was tiled."""
    return [tile_like_training(sample, run) for sample in samples]


def tile_like_training(sample, run):
    """Tile one new image as the run's training data was tiled; refuse an image of another kind."""
    prepared = run["prepare"]
    model = f"the model ({run['source']})" if "source" in run else "the model"
    if "user labels" in prepared.get("objects", []) and not sample.labels:
        raise InputError(
            f"{', '.join(sample.files)}: {model} was trained on crops of user label images; give this image's "
            "label image in a labels column, so its cells are cropped the same way"
        )
    try:
        tileset = tiling.tile_sample(sample, prepared["settings"])
    except InputError as error:
        raise InputError(f"{error}; tiled as {model} was: {_tiling(prepared['settings'])}") from None
    if tileset.meta["skipped"]:
        return tileset
    channels, bit_depth = tileset.meta["field_shape"][-1], tileset.meta["bit_depth"]
    if channels not in prepared["channels"] or bit_depth not in prepared["bit_depths"]:
        wanted = " or ".join(str(c) for c in prepared["channels"])
        depths = " or ".join(f"{b}-bit" for b in prepared["bit_depths"])
        raise InputError(
            f"{', '.join(sample.files)}: {channels} channel(s), {bit_depth}-bit; {model} was trained on "
            f"{wanted}-channel {depths} images (expected shape (Y, X, {wanted}) after channel selection)"
        )
    return tileset


def _tiling(settings):
    return f"{settings['kind']}, {settings['tile_size']} px tiles"


def check_input_shape(tilesets, run):
    """Refuse tiles the model cannot take, naming the image. The TileSets of one shard file share a tile shape
    (tilestore.save checks it), so the first decides."""
    first = next((t for t in tilesets if len(t)), None)
    if first is not None:
        shape = select_channels(first.tiles[:1], run["channels"]).shape[1:]
        if shape != tuple(run["input_shape"]):
            raise InputError(
                f"{', '.join(first.meta['files'])}: tiles of shape {shape} do not fit the input "
                f"{tuple(run['input_shape'])} of {run.get('source', 'the model')}"
            )
