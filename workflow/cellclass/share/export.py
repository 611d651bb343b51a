"""Write trained runs as a bioimage.io model package (spec 0.5, Keras 3 weights) that cellclass can predict with.

The runs' networks become one Keras model (their mean, for an ensemble), the
input and output tensors are described with real test tiles of the first run,
and what the spec cannot say (how fields are tiled and normalised, which layers
are the members) travels in cellclass.json, described in the README.
"""

import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from cellclass.evaluate import runs
from cellclass.io import contact_sheet, imageio, tilestore
from cellclass.io.atomic import atomic_path
from cellclass.io.errors import InputError
from cellclass.learn import calibration, inference, novelty
from cellclass.learn.pipeline import select_channels
from cellclass.share import package
from cellclass.templates import render

log = logging.getLogger(__name__)

DEFAULT_AUTHOR = "Anonymous"  # the schema's default author, named so the log can warn before sharing
TEST_INPUT, TEST_OUTPUT, COVER, README = "test_input.npy", "test_output.npy", "cover.png", "README.md"
# The settings that must agree between the members of an ensemble: one input, one tiling, one class order.
SHARED = ("dataset", "classes", "input_shape", "channels")


def read_members(run_dirs):
    """The runs' metrics.json, checked to make one ensemble."""
    members = [runs.read_metrics(d) for d in run_dirs]
    first = members[0]
    for other, run_dir in zip(members[1:], run_dirs[1:]):
        for key in SHARED:
            if other[key] != first[key]:
                raise InputError(
                    f"{run_dir}/metrics.json: {key} {other[key]} differs from {run_dirs[0]}'s "
                    f"{first[key]}; these runs cannot form one ensemble"
                )
        if other["prepare"]["settings"] != first["prepare"]["settings"]:
            raise InputError(
                f"{run_dir}/metrics.json: its tiles were made with other settings than "
                f"{run_dirs[0]}'s; these runs cannot form one ensemble"
            )
    if not (first.get("prepare") or {}).get("settings"):
        raise InputError(f"{run_dirs[0]}/metrics.json: no recorded preparation settings; retrain it to export it")
    return members


def member_name(metrics):
    return f"fold{metrics['fold']}_seed{metrics['seed']}"


def ensemble(models, members):
    """One Keras model: the member itself, or the mean of the members' class probabilities (as predict.py
    averages them), each member a named layer that cellclass can take out again for the spread."""
    import keras

    if len(models) == 1:
        return models[0]
    tile = keras.Input(models[0].input_shape[1:], name="tile")
    outputs = []
    for model, metrics in zip(models, members):
        model.name = member_name(metrics)
        outputs.append(model(tile))
    return keras.Model(tile, keras.layers.Average(name="mean")(outputs), name="ensemble")


def raw_input(run):
    """Whether the package's input can be the raw tile with the normalisation as bioimage.io preprocessing:
    only a fixed bit-depth scaling of grid tiles that are not resized. Percentiles are taken over the whole field
    before tiling, which a tile's preprocessing cannot reproduce; then the input is the normalised tile."""
    settings = run["prepare"]["settings"]
    return (
        settings["normalise"]["method"] == "bit_depth"
        and settings["kind"] == "fields"
        and settings["resize_to"] in (None, settings["tile_size"])
        and len(run["prepare"]["bit_depths"]) == 1
    )


def pick_test_tiles(run, predictions_tsv, tile_files, count):
    """Up to `count` tiles of the run's own test side, spread evenly over each class: their ids, classes, the
    tiles as the network sees them, and their raw pixels (None unless the package takes raw tiles)."""
    table = runs.read_predictions(predictions_tsv)
    table = table[table["test_set"] == run["dataset"]]
    classes = run["classes"]
    per_class = max(1, count // len(classes))
    picked = []
    for cls in classes:
        rows = table[table["true"] == cls]
        picked += (
            list(rows["tile"].iloc[np.unique(np.linspace(0, len(rows) - 1, per_class).astype(int))])
            if len(rows)
            else []
        )
    where = {tid: (t, i) for t in tilestore.load_all(tile_files) for i, tid in enumerate(t.tile_ids())}
    missing = [tid for tid in picked if tid not in where]
    if missing:
        raise InputError(
            f"{predictions_tsv}: test tile {missing[0]} is in no tile file of dataset {run['dataset']}; "
            "re-tile the dataset or retrain the run"
        )
    tiles = np.stack([np.asarray(where[tid][0].tiles[where[tid][1]], np.float32) for tid in picked])
    truth = [where[tid][0].meta["class"] for tid in picked]
    raw = np.stack([raw_tile(*where[tid], run) for tid in picked]) if raw_input(run) else None
    return picked, truth, select_channels(tiles, run["channels"]), raw


def raw_tile(tileset, index, run):
    """One grid tile's pixels as stored in its image, channels as fed to the network."""
    settings = run["prepare"]["settings"]
    image = imageio.read_image(
        tileset.meta["files"],
        channels=settings["channels"],
        plane=settings["plane"],
        bit_depth=settings["bit_depth"],
        planes=tileset.meta.get("planes", 1),
        axes=settings.get("axes"),
    )
    row, col, size = tileset.rows[index], tileset.cols[index], settings["tile_size"]
    return select_channels(image.pixels[row : row + size, col : col + size], run["channels"])


def channel_names(run):
    """Names of the network's input channels, by their index in the image file(s)."""
    settings = run["prepare"]["settings"]
    n_image = run["prepare"]["channels"][0]
    kept = settings["channels"] if settings["channels"] is not None else list(range(n_image))
    fed = run["channels"] if run["channels"] is not None else list(range(len(kept)))
    return [f"image_channel_{kept[i]}" for i in fed]


def write_cover(tiles, truth, classes, path, columns=None):
    """The cover: a row of test tiles per class (about 2:1, as bioimage.io shows covers), each row named."""
    from PIL import Image, ImageDraw
    from skimage.util import montage

    columns = columns or min(8, 2 * len(classes))
    side = max(96, tiles.shape[1])
    rows = []
    for cls in classes:
        own = tiles[[t == cls for t in truth]][:columns]
        rgb = contact_sheet.to_rgb(own) if len(own) else np.zeros((0, *tiles.shape[1:3], 3), np.uint8)
        rgb = np.concatenate([rgb, np.zeros((columns - len(rgb), *rgb.shape[1:]), np.uint8)])
        rows.append(rgb)
    grid = montage(
        np.concatenate(rows), grid_shape=(len(classes), columns), padding_width=2, fill=(40, 40, 40), channel_axis=-1
    )
    scale = side // tiles.shape[1] or 1
    image = Image.fromarray(np.kron(grid, np.ones((scale, scale, 1), np.uint8)))
    draw = ImageDraw.Draw(image)
    for i, cls in enumerate(classes):
        draw.text((8, 6 + i * (image.height // len(classes))), cls, fill="white")
    image.save(path)


def describe_tiling(run):
    """The tiling and normalisation settings as README lines."""
    s = run["prepare"]["settings"]
    norm = s["normalise"]
    normalised = (
        f"each channel of the whole field stretched between its {norm['low']} and {norm['high']} "
        "percentiles, then clipped to [0, 1]"
        if norm["method"] == "percentile"
        else "divided by the largest value of the bit depth (2^bits - 1), then clipped to [0, 1]"
    )
    kind = {
        "fields": "a grid of square tiles over each field; a tile is kept when enough of it is foreground",
        "cells": "each image is one cell, padded to a square with its border level and resized",
        "nuclei": "one window per segmented nucleus (or per object of a label image), centred on it",
    }[s["kind"]]
    lines = [
        f"- kind: `{s['kind']}`: {kind}",
        (
            f"- tile size: {s['tile_size']} px, stride {s['stride'] or s['tile_size']} px, network input "
            f"{run['input_shape'][0]}x{run['input_shape'][1]} px"
        ),
        (
            f"- image channels kept: {s['channels'] if s['channels'] is not None else 'all'} (of "
            f"{' or '.join(map(str, run['prepare']['channels']))}); fed to the network: "
            f"{run['channels'] if run['channels'] is not None else 'all kept'}; z planes: `{s['plane']}`"
        ),
        f"- bit depth: `{s['bit_depth']}` (training images: {', '.join(f'{b}-bit' for b in run['prepare']['bit_depths'])})",
        f"- normalisation (`{norm['method']}`): {normalised}",
    ]
    if s["kind"] == "fields":
        fg = s["foreground"]
        lines.append(
            f"- foreground: `{fg['method']}` threshold of channel {fg['channel']} (smoothed, sigma "
            f"{fg['smooth_sigma']}); a tile is kept when at least {fg['min_fraction']:.0%} of it is foreground"
        )
    if s["kind"] == "nuclei":
        lines.append(f"- nuclei: `{json.dumps(s['nuclei'])}`")
    return "\n".join(lines)


def evaluation_tables(summary_tsv, classes_tsv, experiment, model):
    """The experiment and model's rows of summary.tsv (without the by-eye baseline, evaluation.human: a setting of
    the evaluation, not a property of the model) and classes.tsv."""
    summary = pd.read_csv(summary_tsv, sep="\t", keep_default_na=True).drop(columns="human", errors="ignore")
    per_class = pd.read_csv(classes_tsv, sep="\t")
    own = (summary["experiment"] == experiment) & (summary["model"] == model)
    mine = (per_class["experiment"] == experiment) & (per_class["model"] == model)
    return summary[own], per_class[mine]


def markdown_table(frame):
    header = "| " + " | ".join(frame.columns) + " |\n| " + " | ".join("---" for _ in frame.columns) + " |\n"
    return header + "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in frame.itertuples(index=False))


def _number(value):
    return "" if pd.isna(value) else f"{value:.3f}"


def evaluation_markdown(summary, per_class):
    """Balanced accuracy per test set and level with its interval, and the mean per-class recall."""
    rows = summary[summary["metric"] == "balanced_accuracy"]
    accuracy = pd.DataFrame(
        {
            "test set": rows["test_set"],
            "level": [f"{lvl}{' (headline)' if h else ''}" for lvl, h in zip(rows["level"], rows["headline"])],
            "balanced accuracy": [_number(v) for v in rows["estimate"].fillna(rows["mean"])],
            "95% interval": [
                "none (too few test groups)" if pd.isna(lo) else f"{lo:.3f}-{hi:.3f}"
                for lo, hi in zip(rows["ci95_low"], rows["ci95_high"])
            ],
            "runs": rows["n_runs"],
            "groups": rows["n_groups"],
            "units": rows["n_units"],
            "chance": [_number(v) for v in rows["chance"]],
        }
    )
    recall = (
        per_class.groupby(["test_set", "level", "class"], sort=False)
        .agg(recall=("recall", "mean"), support=("support", "sum"), runs=("recall", "size"))
        .reset_index()
    )
    recall["recall"] = recall["recall"].map(_number)
    recall = recall.rename(columns={"test_set": "test set"})
    return markdown_table(accuracy), markdown_table(recall)


def readme(*, title, description, members, run, summary, per_class, raw, n_test, onnx):
    """The package's documentation: what it classifies, how it was trained and tested, how to use it."""
    first = members[0]
    accuracy, recall = evaluation_markdown(summary, per_class)
    member_rows = pd.DataFrame(
        [
            {
                "run": member_name(m),
                "training tiles": m["train_tiles"],
                "per class (unaugmented)": ", ".join(f"{c} {n}" for c, n in m["train_tiles_per_class"].items()),
                "validation tiles": m["validation_tiles"],
                "epochs": m["epochs"],
                "class balance": m["class_balance"],
            }
            for m in members
        ]
    )
    ensemble_note = (
        f"an ensemble of {len(members)} runs; its output is the mean of their class probabilities"
        if len(members) > 1
        else "one run"
    )
    input_note = (
        "the **raw tile** as stored in the image (after channel and plane selection); the package's "
        "preprocessing scales it by the bit depth and clips it to [0, 1], as the training did"
        if raw
        else "the **normalised tile** (float32 in [0, 1]): cut from a field that was normalised as a whole "
        "before tiling (see Tiling). The spec's preprocessing acts on the tile alone, so it cannot redo "
        "this; cellclass does, from cellclass.json"
    )
    return render(
        "package_readme.md",
        title=title,
        description=description,
        experiment=first["experiment"],
        model=first["model"],
        ensemble_note=ensemble_note,
        classes=run["classes"],
        shape=run["input_shape"],
        channels=channel_names(run),
        input_note=input_note,
        tiling=describe_tiling(run),
        dataset=first["dataset"],
        member_table=markdown_table(member_rows),
        n_members=len(members),
        accuracy=accuracy,
        recall=recall,
        tta_note=test_time_augmentation_note(members),
        calibration_note=calibration_note(members),
        n_test=n_test,
        test_run=member_name(first),
        onnx=onnx,
    )


def test_time_augmentation_note(members):
    """The README's words on test-time augmentation: whether the evaluation used it, and how to do the same."""
    used = sorted({m.get("tta", "none") for m in members})
    if used == ["none"]:
        return (
            "None: the evaluation above scored each test tile once, as the package's output does "
            "(cellclass `evaluation.tta: none`)."
        )
    return (
        f"The evaluation above used test-time augmentation (cellclass `evaluation.tta: {', '.join(used)}`): "
        "each test tile's class probabilities are the mean over its 8 dihedral views (rotations by 0, 90, "
        "180 and 270 degrees, each also mirrored). The bioimage.io description cannot express that: the "
        "package's output, its test output and `bioimageio predict` score each tile once. To reproduce the "
        "numbers, run the network on the 8 views of every tile and average the probabilities; cellclass "
        "`predict` does so when its config sets `evaluation.tta: dihedral` (its tables' `tta` column says so)."
    )


def calibration_note(members):
    """The README's words on calibration: each member's temperature, and that the package's output lacks it."""
    temperatures = [calibration.temperature_of(m) for m in members]
    if all(t == 1 for t in temperatures):
        return (
            "None: the runs had no validation side to fit a temperature on, so the package's output is the "
            "probabilities cellclass evaluated."
        )
    fitted = ", ".join(f"`{member_name(m)}` {t:.3g}" for m, t in zip(members, temperatures))
    return (
        f"cellclass calibrates each run by temperature scaling, fitted on its validation side: a member's class "
        f"probabilities p become softmax(log(p) / T). Temperatures: {fitted} (also in `cellclass.json`, "
        "`members[].temperature`). The evaluation above and cellclass `predict` use the calibrated "
        "probabilities, averaged over the members. The network's output, its test output and "
        "`bioimageio predict` are **uncalibrated**"
        + (
            " (the mean of the members' raw probabilities): to reproduce cellclass's probabilities, take each "
            "member's output (its layer, named in `cellclass.json`), apply its temperature, then average"
            if len(members) > 1
            else ": apply the temperature to the output to reproduce cellclass's probabilities"
        )
        + ". The most probable class of a tile is the same either way"
        + (" for a single run." if len(members) == 1 else " for each member; the ensemble's call can differ.")
    )


def record(members, weights, raw, quality=False):
    """cellclass.json: what cellclass needs to tile images for this package and call them with its members."""
    first = members[0]
    return {
        "format": package.FORMAT,
        "version": package.VERSION,
        "experiment": first["experiment"],
        "dataset": first["dataset"],
        "model": first["model"],
        "classes": first["classes"],
        "input_shape": first["input_shape"],
        "channels": first["channels"],
        "prepare": first["prepare"],
        "input": "raw" if raw else "normalised",
        "weights": weights,
        "members": [
            {
                "fold": m["fold"],
                "seed": m["seed"],
                "layer": member_name(m) if len(members) > 1 else None,
                "name": member_name(m),
                "temperature": calibration.temperature_of(m),
                "metrics": m,
            }
            for m in members
        ],
        "novelty": package.NOVELTY,
        "quality": package.QUALITY if quality else None,
    }


def tensor_descriptions(run, folder, raw, dtype):
    """bioimage.io input and output tensor descriptions (spec 0.5)."""
    from bioimageio.spec.common import FileDescr
    from bioimageio.spec.model import v0_5

    height, width, _ = run["input_shape"]
    settings = run["prepare"]["settings"]
    axes = [
        v0_5.BatchAxis(),
        v0_5.SpaceInputAxis(id=v0_5.AxisId("y"), size=height),
        v0_5.SpaceInputAxis(id=v0_5.AxisId("x"), size=width),
        v0_5.ChannelAxis(channel_names=channel_names(run)),
    ]
    if raw:
        bits = run["prepare"]["bit_depths"][0]
        data = v0_5.IntervalOrRatioDataDescr(type=dtype, range=(0, 2**bits - 1))
        as_float = v0_5.EnsureDtypeDescr(kwargs=v0_5.EnsureDtypeKwargs(dtype="float32"))
        # Ending on float32 too: otherwise the spec appends a cast back to the raw dtype (`data` describes the
        # tensor given, not the network's input).
        preprocessing = [
            as_float,
            v0_5.ScaleLinearDescr(kwargs=v0_5.ScaleLinearKwargs(gain=1.0 / (2**bits - 1))),
            v0_5.ClipDescr(kwargs=v0_5.ClipKwargs(min=0.0, max=1.0)),
            as_float,
        ]
        text = f"raw {settings['tile_size']} px tile, {bits}-bit"
    else:
        data = v0_5.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0))
        preprocessing = []
        text = f"{settings['tile_size']} px tile of a field normalised ({settings['normalise']['method']}), see README"
    tile = v0_5.InputTensorDescr(
        id=v0_5.TensorId("tile"),
        description=text[:128],
        axes=axes,
        data=data,
        preprocessing=preprocessing,
        test_tensor=FileDescr(source=folder / TEST_INPUT),
    )
    probabilities = v0_5.OutputTensorDescr(
        id=v0_5.TensorId("probabilities"),
        description="probability of each class (softmax)",
        axes=[v0_5.BatchAxis(), v0_5.ChannelAxis(channel_names=list(run["classes"]))],
        data=v0_5.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
        test_tensor=FileDescr(source=folder / TEST_OUTPUT),
    )
    return tile, probabilities


def weights_description(folder, onnx):
    """Keras 3 weights (the TensorFlow backend) and, if converted, ONNX weights made from them."""
    import keras
    import tensorflow as tf
    from bioimageio.spec.model import v0_5

    weights = {
        "keras_v3": v0_5.KerasV3WeightsDescr(
            source=folder / package.WEIGHTS, keras_version=keras.__version__, backend=("tensorflow", tf.__version__)
        )
    }
    if onnx:
        import onnx as onnx_lib

        opset = max(
            o.version for o in onnx_lib.load(folder / package.ONNX_WEIGHTS).opset_import if o.domain in ("", "ai.onnx")
        )
        weights["onnx"] = v0_5.OnnxWeightsDescr(
            source=folder / package.ONNX_WEIGHTS, opset_version=opset, parent="keras_v3"
        )
    return v0_5.WeightsDescr(**weights)


def write_files(
    folder, network, members, run_dirs, test, *, summary, per_class, raw, quality, title, description, onnx
):
    """Every file of the package into `folder`: the weights (Keras, and ONNX if asked), the test tensors and
    cover, the README, the runs' record and novelty references, the evaluation tables and the training images'
    quality table. `test` holds the test tiles (ids, truth, tiles, raw_tiles) and the network's output on them."""
    run = members[0]
    network.save(folder / package.WEIGHTS)
    if onnx:
        logging.getLogger("tf2onnx").setLevel(logging.WARNING)  # its optimiser's INFO lines are noise here
        network.export(folder / package.ONNX_WEIGHTS, format="onnx", verbose=False)
    np.save(folder / TEST_INPUT, test["raw_tiles"] if raw else test["tiles"])
    np.save(folder / TEST_OUTPUT, test["output"])
    write_cover(test["tiles"], test["truth"], run["classes"], folder / COVER)
    text = readme(
        title=title,
        description=description,
        members=members,
        run=run,
        summary=summary,
        per_class=per_class,
        raw=raw,
        n_test=len(test["ids"]),
        onnx=onnx,
    )
    (folder / README).write_text(text)
    (folder / package.RECORD).write_text(json.dumps(record(members, package.WEIGHTS, raw, bool(quality)), indent=2))
    package.write_references(
        [novelty.Reference.load(Path(d) / novelty.FILE) for d in run_dirs],
        [member_name(m) for m in members],
        folder / package.NOVELTY,
    )
    if quality:
        shutil.copyfile(quality, folder / package.QUALITY)
    summary.to_csv(folder / "evaluation_summary.tsv", sep="\t", index=False)
    per_class.to_csv(folder / "evaluation_classes.tsv", sep="\t", index=False)
    pd.DataFrame({"tile": test["ids"], "class": test["truth"]}).to_csv(folder / "test_tiles.tsv", sep="\t", index=False)


def describe(folder, network, run, *, name, title, description, options, raw, input_dtype, quality):
    """The package's bioimage.io description (rdf.yaml) of the files in `folder`; an InputError naming the
    export when bioimage.io's spec rejects it."""
    from bioimageio.spec.common import FileDescr
    from bioimageio.spec.model import v0_5
    from pydantic import ValidationError

    attached = ["evaluation_summary.tsv", "evaluation_classes.tsv", "test_tiles.tsv"]
    attached = [package.RECORD, package.NOVELTY, *attached, *([package.QUALITY] if quality else [])]
    tile, probabilities = tensor_descriptions(run, folder, raw, input_dtype)
    try:
        return v0_5.ModelDescr(
            name=title,
            description=description,
            authors=[v0_5.Author(**a) for a in options["authors"]],
            cite=[v0_5.CiteEntry(**c) for c in options["cite"]],
            license=options["license"],
            tags=options["tags"],
            documentation=FileDescr(source=folder / README),
            covers=[FileDescr(source=folder / COVER)],
            attachments=[FileDescr(source=folder / f) for f in attached],
            inputs=[tile],
            outputs=[probabilities],
            weights=weights_description(folder, options["onnx"]),
            config=v0_5.Config(
                bioimageio=v0_5.BioimageioConfig(
                    task="classification",
                    modality="fluorescence microscopy",
                    model_parameter_count=int(network.count_params()),
                )
            ),
        )
    except ValidationError as error:
        raise InputError(f"export.{name}: not a valid bioimage.io description:\n{error}") from None


def export_package(*, name, run_dirs, tile_files, summary_tsv, classes_tsv, options, out_zip, threads=1, quality=None):
    """Write `out_zip`: the runs in `run_dirs` (model.keras, metrics.json, predictions.tsv) as one bioimage.io
    model package, with test tiles from `tile_files` (their dataset's shards), the evaluation tables and the
    training images' quality table (`quality`, the dataset's qc.parquet), against which new images are checked."""
    import keras
    from bioimageio.spec import save_bioimageio_package

    from cellclass.learn.runtime import configure_tensorflow

    configure_tensorflow(threads=threads, seed=0, deterministic=True)
    members = read_members(run_dirs)
    run = members[0]
    raw = raw_input(run)
    if options["authors"] == [{"name": DEFAULT_AUTHOR}]:
        log.warning(
            "export.%s.authors is not set: the package names '%s' as its author; set it before sharing",
            name,
            DEFAULT_AUTHOR,
        )
    models = [keras.models.load_model(Path(d) / "model.keras", compile=False) for d in run_dirs]
    network = ensemble(models, members)
    ids, truth, tiles, raw_tiles = pick_test_tiles(
        run, Path(run_dirs[0]) / "predictions.tsv", tile_files, options["test_tiles"]
    )
    gain = 1.0 / (2 ** run["prepare"]["bit_depths"][0] - 1) if raw else None
    network_input = np.clip(raw_tiles.astype(np.float32) * np.float32(gain), 0, 1) if raw else tiles
    output = inference.probabilities(network, network_input)
    summary, per_class = evaluation_tables(summary_tsv, classes_tsv, run["experiment"], run["model"])
    title = options["title"] or f"cellclass {run['experiment']} {run['model']}"
    description = options["description"] or (
        f"Calls {run['input_shape'][0]} px tiles of {run['input_shape'][2]}-channel microscopy images "
        f"{' or '.join(run['classes'])} (cellclass {run['model']} network, "
        f"{f'ensemble of {len(members)} runs' if len(members) > 1 else 'one run'})."
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        test = {"ids": ids, "truth": truth, "tiles": tiles, "raw_tiles": raw_tiles, "output": output}
        write_files(
            folder,
            network,
            members,
            run_dirs,
            test,
            summary=summary,
            per_class=per_class,
            raw=raw,
            quality=quality,
            title=title,
            description=description,
            onnx=options["onnx"],
        )
        descr = describe(
            folder,
            network,
            run,
            name=name,
            title=title,
            description=description,
            options=options,
            raw=raw,
            input_dtype=str(raw_tiles.dtype) if raw else "float32",
            quality=quality,
        )
        with atomic_path(out_zip) as tmp_zip:
            save_bioimageio_package(descr, output_path=tmp_zip)
    log.info(
        "%s: %d run(s) of %s/%s, %d test tiles, %s input%s",
        out_zip,
        len(members),
        run["experiment"],
        run["model"],
        len(ids),
        "raw" if raw else "normalised",
        ", ONNX weights too" if options["onnx"] else "",
    )
    return out_zip


def validate_package(zip_path, table_tsv):
    """bioimageio.core's test of the package; the checks as a tidy table; an error naming the package unless
    every check passed."""
    summary = package.validate(zip_path)
    table = package.validation_table(summary)
    with atomic_path(table_tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    # Passed checks are counted (the table lists them); anything else is logged in full.
    log.info(
        "%s: %d of %d bioimage.io checks passed (%s)",
        zip_path,
        (table["status"] == "passed").sum(),
        len(table),
        table_tsv,
    )
    for row in table[table["status"] != "passed"].itertuples():
        log.warning("%s: %s %s %s", row.status, row.check, row.location, row.message)
    if summary.status != "passed":
        failed = table[table["status"] == "failed"]
        first = failed.iloc[0] if len(failed) else None
        raise InputError(
            f"{zip_path}: bioimage.io validation {summary.status}"
            + (f": {first['check']} ({first['location']}): {first['message']}" if first is not None else "")
        )
    return table
