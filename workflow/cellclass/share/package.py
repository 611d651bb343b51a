"""A cellclass model package: a bioimage.io model zip (spec 0.5) that also carries cellclass.json.

The bioimage.io description says what the network takes and gives (a tile,
class probabilities); cellclass.json says what the spec cannot: how a field is
cut into tiles, how it was normalised before that, and which layers of the
weights are the ensemble's members. With both, a package classifies new images
exactly as the runs it came from, in a folder without those runs.
"""

import contextlib
import io
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import yaml

from cellclass.io.errors import InputError

RECORD = "cellclass.json"  # the attachment cellclass reads; a package without it is another tool's
QUALITY = "quality.parquet"  # the training images' quality measures (cellclass.prepare.qc), one row per image
NOVELTY = "novelty.npz"  # each member's novelty reference (cellclass.learn.novelty), its arrays prefixed by member
WEIGHTS = "weights.keras"
ONNX_WEIGHTS = "weights.onnx"
FORMAT = "cellclass-package"
VERSION = 2  # of cellclass.json (2: members' temperatures); a newer one is refused rather than misread
SPEC_VERSIONS = ("0.5",)  # bioimage.io model format versions (major.minor) cellclass writes and reads
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")


def is_package(path):
    """Whether `path` names a model package (a .zip) rather than a run's own file (metrics.json, model.keras)."""
    return Path(path).suffix == ".zip"


def open_package(path):
    """(description, record): the package's bioimage.io description and its cellclass.json, checked."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
            if broken is not None:
                raise InputError(f"{path}: corrupt zip (member {broken} fails its checksum)")
            names = set(archive.namelist())
            rdf_name = next((n for n in RDF_NAMES if n in names), None)
            if rdf_name is None:
                raise InputError(f"{path}: not a bioimage.io model package (no {' or '.join(RDF_NAMES)} inside)")
            description = yaml.safe_load(archive.read(rdf_name))
            record = json.loads(archive.read(RECORD)) if RECORD in names else None
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise InputError(f"{path}: not a readable zip file ({error})") from None
    if not isinstance(description, dict) or description.get("type") != "model":
        raise InputError(f"{path}: {rdf_name} does not describe a model")
    version = str(description.get("format_version", "?"))
    if ".".join(version.split(".")[:2]) not in SPEC_VERSIONS:
        raise InputError(
            f"{path}: bioimage.io format_version {version}; cellclass reads model packages of version "
            f"{', '.join(v + '.x' for v in SPEC_VERSIONS)}"
        )
    if record is None:
        raise InputError(
            f"{path}: no {RECORD} attachment, so not exported by cellclass: it does not say how to tile "
            "images for it. Run it with bioimageio.core, or export your runs with `snakemake export`"
        )
    if record.get("format") != FORMAT or record.get("version", 0) > VERSION:
        raise InputError(
            f"{path}: {RECORD} is of format {record.get('format')} version {record.get('version')}; "
            f"this cellclass reads {FORMAT} up to version {VERSION}"
        )
    _check_input(path, description, record)
    return description, record


def _check_input(path, description, record):
    """The described input tensor must be the tile cellclass.json records (a hand-edited package may differ)."""
    axes = {a.get("id", a.get("type")): a for a in description["inputs"][0]["axes"]}
    shape = (axes["y"]["size"], axes["x"]["size"], len(axes["channel"]["channel_names"]))
    if list(shape) != list(record["input_shape"]):
        raise InputError(
            f"{path}: its input tensor is {shape[0]}x{shape[1]} px with {shape[2]} channel(s), but "
            f"{RECORD} records tiles of {tuple(record['input_shape'])}"
        )


def read_record(path):
    """What the package's runs recorded about their inputs, in the shape of a run's metrics.json (classes,
    channels, input_shape, prepare), plus `source` naming the package for error messages."""
    _, record = open_package(path)
    return {**record, "source": f"package {path}"}


def load_members(path):
    """The ensemble's members as Keras models: layers of the package's weights, or the weights themselves."""
    import keras

    _, record = open_package(path)
    with tempfile.TemporaryDirectory() as folder, zipfile.ZipFile(path) as archive:
        weights = Path(archive.extract(record["weights"], folder))
        model = keras.models.load_model(weights, compile=False)
    return [model if m["layer"] is None else model.get_layer(m["layer"]) for m in record["members"]]


def write_references(references, names, path):
    """The members' novelty references as one .npz: arrays <name>/<array>."""
    arrays = {}
    for reference, name in zip(references, names):
        arrays |= {f"{name}/{key}": value for key, value in reference.arrays().items()}
    np.savez(path, **arrays)


def read_references(path):
    """The members' novelty.Reference, in member order; None for a package exported without them."""
    from cellclass.learn.novelty import Reference

    _, record = open_package(path)
    if not record.get("novelty"):
        return None
    with zipfile.ZipFile(path) as archive, np.load(io.BytesIO(archive.read(record["novelty"]))) as data:
        return [
            Reference.from_arrays(
                {key.split("/", 1)[1]: data[key] for key in data.files if key.startswith(f"{m['name']}/")}
            )
            for m in record["members"]
        ]


def read_quality(path):
    """The training images' quality table (cellclass.prepare.qc) a package carries; None for one exported without."""
    import pandas as pd

    _, record = open_package(path)
    if not record.get("quality"):
        return None
    with zipfile.ZipFile(path) as archive:
        return pd.read_parquet(io.BytesIO(archive.read(record["quality"])))


def temperatures(path):
    """Each member's temperature (cellclass.learn.calibration), in load_members' order; 1 for a version-1 package,
    from before calibration."""
    _, record = open_package(path)
    return [m.get("temperature", 1.0) for m in record["members"]]


def validate(path):
    """bioimage.io's own test of a model package: the description checked and the test input run through
    every weights format present, its outputs compared with the test output. Returns the ValidationSummary.

    Nothing is downloaded: the package is a local file, and cellclass writes no remote reference (URL, GitHub
    user) into one, which the spec would check online.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # bioimageio.core defaults to torch
    from bioimageio.core import test_model

    # It runs the Keras weights with model.predict, whose progress bars on stdout would fill the job's log;
    # what it finds is in the summary. TensorFlow's retracing notice counts the predict steps of every Keras
    # model in the process (each of its test inputs is one), a speed hint that means nothing for one check.
    tf_log = logging.getLogger("tensorflow")
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return test_model(Path(path))
    finally:
        tf_log.setLevel(level)


def validation_table(summary):
    """The checks of a ValidationSummary as a tidy table: check, status, location, message."""
    import pandas as pd

    rows = []
    for detail in summary.details:
        messages = [
            f"{'.'.join(map(str, m.loc))}: {m.msg}" if m.loc else m.msg for m in [*detail.errors, *detail.warnings]
        ]
        rows.append(
            {
                "check": detail.name,
                "status": detail.status,
                "location": ".".join(map(str, detail.loc)),
                "message": " | ".join(m.replace("\n", " ") for m in messages),
            }
        )
    return pd.DataFrame(rows, columns=["check", "status", "location", "message"])
