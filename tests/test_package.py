"""Model packages: bad packages and packages unlike the images are refused by name; export and package config."""

import json
import zipfile

import numpy as np
import pytest
import tifffile
import yaml
from test_predict import run_record
from test_tiling import blob_field

from cellclass.config import validate
from cellclass.io.datasets import Sample
from cellclass.io.errors import InputError
from cellclass.predict import ensemble_scoring, tiling_check
from cellclass.share import package


def description(format_version="0.5.12", size=64, channels=1):
    return {
        "type": "model",
        "format_version": format_version,
        "name": "some model",
        "inputs": [
            {
                "id": "tile",
                "axes": [
                    {"type": "batch"},
                    {"type": "space", "id": "y", "size": size},
                    {"type": "space", "id": "x", "size": size},
                    {"type": "channel", "channel_names": [f"c{i}" for i in range(channels)]},
                ],
            }
        ],
    }


def cellclass_record(**prepare):
    return {
        "format": package.FORMAT,
        "version": package.VERSION,
        **run_record(**prepare),
        "weights": package.WEIGHTS,
        "members": [{"fold": 0, "seed": 0, "layer": None}],
    }


def make_package(path, rdf=None, record=None):
    """A package with a description and (unless record is False) a cellclass.json; no weights are needed to
    check it or to tile images for it."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("rdf.yaml", yaml.safe_dump(rdf or description()))
        if record is not False:
            archive.writestr(package.RECORD, json.dumps(record or cellclass_record(tile_size=64)))
    return path


def test_a_cellclass_package_reads_as_a_run(tmp_path):
    run = tiling_check.read_run(make_package(tmp_path / "model.zip"))
    assert run["classes"] == ["aggregates", "control"] and run["prepare"]["settings"]["tile_size"] == 64
    assert run["source"] == f"package {tmp_path / 'model.zip'}"


def test_a_package_from_another_tool_is_refused(tmp_path):
    path = make_package(tmp_path / "stardist.zip", record=False)
    with pytest.raises(InputError, match=r"stardist.zip: no cellclass.json attachment, so not exported by cellclass"):
        package.open_package(path)


@pytest.mark.parametrize("version", ["0.4.10", "0.6.0", "0.3.2"])
def test_an_unsupported_spec_version_is_refused(tmp_path, version):
    path = make_package(tmp_path / "old.zip", rdf=description(format_version=version))
    with pytest.raises(InputError, match=rf"old.zip: bioimage.io format_version {version}; cellclass reads .*0.5.x"):
        package.open_package(path)


def test_a_description_of_something_else_is_refused(tmp_path):
    path = make_package(tmp_path / "data.zip", rdf={"type": "dataset", "format_version": "0.3.0"})
    with pytest.raises(InputError, match="data.zip: rdf.yaml does not describe a model"):
        package.open_package(path)


def test_a_corrupt_zip_is_named(tmp_path):
    good = make_package(tmp_path / "good.zip").read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match="truncated.zip: not a readable zip file"):
        package.open_package(truncated)
    # A flipped byte inside a stored member: the zip opens, its checksum does not match.
    flipped = tmp_path / "flipped.zip"
    with zipfile.ZipFile(flipped, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("rdf.yaml", yaml.safe_dump(description()))
    data = bytearray(flipped.read_bytes())
    data[data.index(b"format_version") + 2] ^= 0x20
    flipped.write_bytes(bytes(data))
    with pytest.raises(InputError, match="flipped.zip: corrupt zip"):
        package.open_package(flipped)
    text = tmp_path / "notes.zip"
    text.write_text("not a zip")
    with pytest.raises(InputError, match="notes.zip: not a readable zip file"):
        package.open_package(text)


def test_a_package_whose_tensor_disagrees_with_its_record_is_refused(tmp_path):
    path = make_package(tmp_path / "edited.zip", rdf=description(size=32))
    with pytest.raises(
        InputError,
        match=r"edited.zip: its input tensor is 32x32 px with 1 channel\(s\), but cellclass.json "
        r"records tiles of \(64, 64, 1\)",
    ):
        package.open_package(path)


def test_images_unlike_the_package_are_refused_naming_image_and_package(tmp_path):
    run = tiling_check.read_run(make_package(tmp_path / "model.zip"))
    image = tmp_path / "rgb.tif"
    tifffile.imwrite(image, np.stack([blob_field()] * 3), imagej=True, metadata={"axes": "CYX"})
    with pytest.raises(
        InputError,
        match=r"rgb.tif: 3 channel\(s\), 16-bit; the model \(package .*model.zip\) was "
        r"trained on 1-channel 16-bit images",
    ):
        tiling_check.tile_like_training(Sample("rgb", (str(image),), "", "rgb"), run)
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, blob_field()[:40, :40])
    with pytest.raises(
        InputError,
        match=r"small.tif: image is 40x40 px, smaller than one tile \(64 px\); tiled as "
        r"the model \(package .*model.zip\) was: fields, 64 px tiles",
    ):
        tiling_check.tile_like_training(Sample("small", (str(small),), "", "small"), run)


def test_a_prediction_set_with_a_package_needs_no_datasets(tmp_path):
    make_package(tmp_path / "model.zip")
    (tmp_path / "images").mkdir()
    config = validate({"predict": {"new": {"path": "images", "package": "model.zip"}}}, base_dir=tmp_path)
    assert config["predict"]["new"]["package"] == str(tmp_path / "model.zip") and config["datasets"] == {}
    with pytest.raises(InputError, match="predict.new.package: model package .*missing.zip does not exist"):
        validate({"predict": {"new": {"path": "images", "package": "missing.zip"}}}, base_dir=tmp_path)
    with pytest.raises(InputError, match="predict.new.seeds: a package holds its own runs"):
        validate({"predict": {"new": {"path": "images", "package": "model.zip", "seeds": [0]}}}, base_dir=tmp_path)
    with pytest.raises(InputError, match="datasets: none given"):
        validate({"predict": {}}, base_dir=tmp_path)


def export_config(**export):
    return {
        "datasets": {"d": {"demo": {"pattern": "aggregates"}, "split": {"folds": 3}}},
        "train": {"models": ["small", "deep"], "runs": 2},
        "export": {"pkg": {"experiment": "d", **export}},
    }


def test_export_defaults_to_every_run_of_the_first_model():
    config = validate(export_config())
    export = config["export"]["pkg"]
    assert (export["model"], export["seeds"], export["folds"]) == ("small", [0, 1], [0, 1, 2])
    assert export["authors"] == [{"name": "Anonymous"}] and export["license"] == "CC-BY-4.0"
    assert export["onnx"] is True and export["test_tiles"] == 8


@pytest.mark.parametrize(
    "export, problem",
    [
        ({"experiment": "nope"}, "export.pkg.experiment: no experiment 'nope'"),
        ({"model": "resnet"}, "export.pkg.model: experiment 'd' trains small, deep, not 'resnet'"),
        ({"seeds": [2]}, "export.pkg.seeds: .* no seed 2"),
        ({"folds": [3]}, "export.pkg.folds: experiment 'd' has folds 0..2; no fold 3"),
        ({"title": "my/model"}, "export.pkg.title: 'my/model': bioimage.io names"),
        ({"authors": [{"github_user": "x"}]}, "export.pkg.authors.0"),
        ({"cite": [{"text": "a paper", "url": "https://example.org"}]}, "export.pkg.cite.0"),
    ],
)
def test_bad_export_config_is_named(export, problem):
    with pytest.raises(InputError, match=problem):
        validate(export_config(**export))


def tiny_package(path):
    """A real bioimage.io package of a small untrained network, described as the export describes its own (one
    run, normalised 16 px tiles, Keras weights only), with its test tiles and their outputs."""
    import tempfile
    from pathlib import Path

    import keras
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.common import FileDescr
    from bioimageio.spec.model import v0_5

    from cellclass.learn import inference
    from cellclass.learn.models import build_model
    from cellclass.share import export

    run = {**run_record(tile_size=16), "input_shape": [16, 16, 1]}
    keras.utils.set_random_seed(0)
    model = build_model("small", (16, 16, 1), 2)
    tiles = np.random.default_rng(0).random((8, 16, 16, 1), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model.save(folder / package.WEIGHTS)
        np.save(folder / export.TEST_INPUT, tiles)
        np.save(folder / export.TEST_OUTPUT, inference.probabilities(model, tiles))
        (folder / export.README).write_text("# A tiny test package\n")
        tile, probabilities = export.tensor_descriptions(run, folder, False, "float32")
        description = v0_5.ModelDescr(
            name="tiny test package",
            description="an untrained small network",
            authors=[v0_5.Author(name="Ada")],
            cite=[],
            license="MIT",
            documentation=FileDescr(source=folder / export.README),
            inputs=[tile],
            outputs=[probabilities],
            weights=export.weights_description(folder, onnx=False),
        )
        save_bioimageio_package(description, output_path=path)
    return path


def test_validation_runs_the_weights_with_a_quiet_log(tmp_path, capfd, caplog):
    """bioimageio.core's test of a package passes and leaves no noise in the job's log: no TensorFlow retracing
    warning, no Keras progress bar (it runs model.predict on each test input)."""
    import logging

    path = tiny_package(tmp_path / "tiny.zip")
    capfd.readouterr()
    with caplog.at_level(logging.INFO):
        summary = package.validate(path)
    table = package.validation_table(summary)
    assert summary.status == "passed", table.to_string()
    assert table["check"].str.contains(r"Reproduce test outputs from test inputs \(keras_v3\)").any()
    out, err = capfd.readouterr()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in (out, err, logged):
        assert "retracing" not in text and "/step" not in text, text[-2000:]


def test_the_readme_says_whether_the_evaluation_averaged_dihedral_views():
    """bioimage.io cannot describe test-time augmentation, so the package's README must."""
    from cellclass.share import export

    used = export.test_time_augmentation_note([{"tta": "dihedral"}, {"tta": "dihedral"}])
    assert "`evaluation.tta: dihedral`" in used and "mean over its 8 dihedral views" in used
    assert "cannot express that" in used and "`bioimageio predict` score each tile once" in used
    for members in ([{"tta": "none"}], [{}]):  # runs from before evaluation.tta scored each tile once
        assert export.test_time_augmentation_note(members).startswith(
            "None: the evaluation above scored each test tile once"
        )


def test_each_members_temperature_travels_in_the_package_record(tmp_path):
    record = cellclass_record(tile_size=64)
    record["members"] = [
        {"fold": 0, "seed": s, "layer": f"fold0_seed{s}", "temperature": t} for s, t in ((0, 1.5), (1, 0.8))
    ]
    assert ensemble_scoring.member_temperatures([make_package(tmp_path / "new.zip", record=record)]) == [1.5, 0.8]
    older = {**cellclass_record(tile_size=64), "version": 1}  # from before calibration: uncalibrated
    assert package.temperatures(make_package(tmp_path / "old.zip", record=older)) == [1.0]


def test_the_readme_says_the_output_lacks_the_temperatures():
    from cellclass.share import export

    runs = [{"fold": 0, "seed": s, "calibration": {"temperature": t}} for s, t in ((0, 1.5), (1, 0.8))]
    note = export.calibration_note(runs)
    assert "`fold0_seed0` 1.5, `fold0_seed1` 0.8" in note and "**uncalibrated**" in note
    assert "apply its temperature, then average" in note
    assert "apply the temperature to the output" in export.calibration_note(runs[:1])
    for members in ([{"calibration": {"temperature": 1.0}}], [{}]):  # no validation side; before calibration
        assert export.calibration_note(members).startswith("None:")
