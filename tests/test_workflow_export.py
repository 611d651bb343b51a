"""Export on a tiny demo: packages of trained runs, bioimage.io's own test of them (offline), and prediction
from a package in a folder without the runs that reproduces the runs' predictions."""

import copy
import json
import shutil
import socket
import zipfile

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import TINY, snakemake, write_config

pytestmark = pytest.mark.slow

# Two seeds, so the default package is an ensemble; no rotated copies, to keep it quick.
CONFIG = copy.deepcopy(TINY)
CONFIG["train"]["runs"] = 2
CONFIG["augment"] = {"dihedral": True, "angles": []}
CONFIG["export"] = {
    "tiny_ensemble": {"experiment": "tiny", "authors": [{"name": "Ada Lovelace", "affiliation": "Test lab"}]},
    "tiny_seed1": {"experiment": "tiny", "seeds": [1], "onnx": False},  # one named run
}
RUN = "results/train/tiny/small/fold0/seed{}"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    write_config(folder, CONFIG)
    snakemake(folder, "export")  # only what export needs: no figures, no attribution
    return folder


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to reach the network fails the test (bioimageio must not download during validation)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def check_standardised(*, archive_path, folder, seeds):
    """Each member of the package's Keras weights standardises its input as its run did (train.standardise)."""
    import keras

    with zipfile.ZipFile(archive_path) as archive, archive.open("weights.keras") as handle:
        weights = folder / "package_weights.keras"
        weights.write_bytes(handle.read())
    network = keras.saving.load_model(weights)
    members = [layer for layer in network.layers if isinstance(layer, keras.Model)] or [network]
    assert len(members) == len(seeds)
    for member, seed in zip(members, seeds):
        run = json.loads((folder / RUN.format(seed) / "metrics.json").read_text())
        layer = member.get_layer("standardise")
        np.testing.assert_allclose(np.asarray(layer.scale), 1 / np.asarray(run["standardise"]["sd"]), rtol=1e-6)
        np.testing.assert_allclose(
            np.asarray(layer.offset), -np.asarray(run["standardise"]["mean"]) / run["standardise"]["sd"], rtol=1e-6
        )


def test_packages_are_written_and_pass_bioimageio_validation(exported):
    for name, members in (("tiny_ensemble", [0, 1]), ("tiny_seed1", [1])):
        checks = pd.read_csv(exported / f"results/export/{name}.validation.tsv", sep="\t")
        assert set(checks["status"]) == {"passed"}, checks
        assert checks["check"].str.contains("Reproduce test outputs from test inputs").any()
        with zipfile.ZipFile(exported / f"results/export/{name}.zip") as archive:
            rdf = yaml.safe_load(archive.read("rdf.yaml"))
            record = json.loads(archive.read("cellclass.json"))
            readme = archive.read("README.md").decode()
            test_input = np.load(archive.open("test_input.npy"))
        assert [m["seed"] for m in record["members"]] == members
        check_standardised(archive_path=exported / f"results/export/{name}.zip", folder=exported, seeds=members)
        for member in record["members"]:
            run = json.loads((exported / RUN.format(member["seed"]) / "metrics.json").read_text())
            assert member["temperature"] == run["calibration"]["temperature"] > 0
        assert rdf["format_version"].startswith("0.5.") and "keras_v3" in rdf["weights"]
        assert ("onnx" in rdf["weights"]) == (name == "tiny_ensemble")
        [tile], [probabilities] = rdf["inputs"], rdf["outputs"]
        assert [a.get("id", a["type"]) for a in tile["axes"]] == ["batch", "y", "x", "channel"]
        assert tile["axes"][1]["size"] == 32 and len(tile["axes"][3]["channel_names"]) == 2
        assert probabilities["axes"][1]["channel_names"] == ["aggregates", "control"]
        assert test_input.shape == (8, 32, 32, 2) and test_input.dtype == np.float32
        assert record["prepare"]["settings"]["normalise"]["method"] == "percentile"
        for words in (
            "## Evaluation",
            "balanced accuracy",
            "| tiny_holdout | image (headline) |",
            "## Tiling",
            "tile size: 32 px",
            "## Validation",
            "aggregates",
            "## Test-time augmentation",
            "None: the evaluation above scored each test tile once",
            "## Calibration",
            "**uncalibrated**",
        ):
            assert words in readme, words
    ensemble = yaml.safe_load(zipfile.ZipFile(exported / "results/export/tiny_ensemble.zip").read("rdf.yaml"))
    assert ensemble["authors"] == [{"name": "Ada Lovelace", "affiliation": "Test lab"}]
    assert ensemble["license"] == "CC-BY-4.0" and ensemble["covers"][0]["source"] == "cover.png"


def test_prediction_from_packages_in_a_fresh_folder_reproduces_the_runs(exported, tmp_path):
    """No results/train here: the package alone tiles the run's own test images and calls them."""
    from cellclass.share import package

    split = pd.read_csv(exported / "results/tiny/split.tsv", sep="\t")
    for source in split.loc[split["split"] == "test", "source"].unique():
        relative = source.split("/images/", 1)[1]  # aggregates/field_001.tif: the image ids of the run
        (tmp_path / "images" / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(exported / source, tmp_path / "images" / relative)
    for name in CONFIG["export"]:
        shutil.copy(exported / f"results/export/{name}.zip", tmp_path)
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump({"predict": {name: {"path": "images", "package": f"{name}.zip"} for name in CONFIG["export"]}})
    )
    snakemake(tmp_path)
    assert not (tmp_path / "results/train").exists()
    runs = {
        seed: pd.read_csv(exported / RUN.format(seed) / "predictions.tsv", sep="\t")
        .query("test_set == 'tiny'")
        .set_index("tile")
        for seed in (0, 1)
    }
    p = ["p_aggregates", "p_control"]
    for name, seeds in (("tiny_ensemble", [0, 1]), ("tiny_seed1", [1])):
        tiles = pd.read_csv(tmp_path / f"results/predict/{name}/tiles.tsv", sep="\t").set_index("tile")
        assert set(tiles.index) == set(runs[0].index) and len(tiles) > 50
        members = np.stack([runs[s].loc[tiles.index, p].to_numpy() for s in seeds])
        assert np.abs(tiles[p].to_numpy() - members.mean(axis=0)).max() < 1e-5
        called = members.mean(axis=0).argmax(axis=1)
        spread = members[:, np.arange(len(called)), called].std(axis=0)
        assert np.abs(tiles["spread"].to_numpy() - spread).max() < 1e-5
        # The package carries each member's novelty reference: the test images are judged familiar.
        assert tiles["novelty"].notna().all() and (tiles["novelty"] > 1).mean() < 0.2
        page = (tmp_path / f"results/predict/{name}/findings.html").read_text()
        assert "no novelty reference" not in page
        # It carries its training images' quality too; 6 images are too few to fit ranges, and the page says so.
        assert len(package.read_quality(tmp_path / f"{name}.zip")) == 6
        assert "Image quality was not compared: the training set has 6 image(s), too few" in page
    images = pd.read_csv(tmp_path / "results/predict/tiny_ensemble/images.tsv", sep="\t")
    assert (images["call"] == images["known_class"]).all()


def test_raw_tiles_with_bit_depth_scaling_as_preprocessing(exported, tmp_path, monkeypatch, offline):
    """A run normalised by bit depth exports raw tiles with the scaling as bioimage.io preprocessing, and
    bioimageio.core reproduces the test outputs through it, without the network.

    The tiny runs were normalised by percentiles; a copy of one run records bit_depth instead, which is all the
    export reads (its network then sees other inputs, which does not matter to this check of the package)."""
    from cellclass.share import export, package

    run = tmp_path / "seed0"
    shutil.copytree(exported / RUN.format(0), run)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["prepare"]["settings"]["normalise"]["method"] = "bit_depth"
    (run / "metrics.json").write_text(json.dumps(metrics))
    monkeypatch.chdir(exported)  # the tile files name their images relative to the workflow folder
    options = {
        **CONFIG["export"]["tiny_seed1"],
        "title": None,
        "description": None,
        "license": "MIT",
        "authors": [{"name": "Ada Lovelace"}],
        "tags": ["cellclass"],
        "cite": [],
        "test_tiles": 4,
    }
    out = tmp_path / "raw.zip"
    export.export_package(
        name="raw",
        run_dirs=[str(run)],
        tile_files=sorted((exported / "results/tiny/tiles").glob("*.npz")),
        summary_tsv="results/evaluation/summary.tsv",
        classes_tsv="results/evaluation/classes.tsv",
        options=options,
        out_zip=out,
    )
    with zipfile.ZipFile(out) as archive:
        tile = yaml.safe_load(archive.read("rdf.yaml"))["inputs"][0]
        raw = np.load(archive.open("test_input.npy"))
    assert raw.dtype == np.uint16 and raw.max() > 255
    assert [p["id"] for p in tile["preprocessing"]] == ["ensure_dtype", "scale_linear", "clip", "ensure_dtype"]
    assert tile["preprocessing"][-1]["kwargs"]["dtype"] == "float32"
    assert tile["preprocessing"][1]["kwargs"]["gain"] == pytest.approx(1 / 65535)
    summary = package.validate(out)
    assert summary.status == "passed", package.validation_table(summary).to_string()
