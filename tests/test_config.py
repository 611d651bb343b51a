"""Config checking: defaults filled, wrong keys/types/folders named before any job runs."""

from pathlib import Path

import pytest
import yaml

from cellclass.config import validate
from cellclass.io.errors import InputError

REPO = Path(__file__).resolve().parents[1]
DEMO = {"demo": {"pattern": "aggregates"}}


def test_shipped_config_is_valid():
    with open(REPO / "config/config.yaml") as f:
        config = validate(yaml.safe_load(f))
    assert config["datasets"]["aggregates_holdout"]["test_only"] is True
    assert config["datasets"]["aggregates"]["prepare"]["tile_size"] == 64


def test_defaults_are_filled_and_dataset_overrides_merge():
    config = validate({"prepare": {"tile_size": 48}, "datasets": {"a": {**DEMO, "prepare": {"stride": 16}}}})
    prepare = config["datasets"]["a"]["prepare"]
    assert prepare["tile_size"] == 48 and prepare["stride"] == 16
    assert prepare["foreground"]["method"] == "li"
    assert config["split"]["test_fraction"] == 0.2
    assert prepare["axes"] is None
    assert (
        validate({"datasets": {"a": {**DEMO, "prepare": {"axes": "zcyx"}}}})["datasets"]["a"]["prepare"]["axes"]
        == "ZCYX"
    )


def test_a_dataset_overrides_the_split():
    config = validate({"split": {"seed": 3}, "datasets": {"a": {**DEMO, "split": {"folds": 2}}, "b": DEMO}})
    assert config["datasets"]["a"]["split"] == {"seed": 3, "folds": 2, "test_fraction": 0.2, "validation_fraction": 0.2}
    assert config["datasets"]["b"]["split"]["folds"] == 1
    with pytest.raises(InputError, match="datasets.a.split: Additional properties"):
        validate({"datasets": {"a": {**DEMO, "split": {"fold": 2}}}})


def test_augmentation_is_on_the_fly_unless_the_raw_field_must_be_resampled():
    """`train.augmented` leaves validation saying whether a run reads precomputed copies (the augment rule's);
    `train.augment` says what the input pipeline does to every training tile."""

    def train(augment, **experiment):
        config = validate(
            {"augment": augment, "datasets": {"a": DEMO}, "experiments": {"a": {"dataset": "a", **experiment}}}
        )
        return config["experiments"]["a"]["train"]

    default = train({})
    assert default["augmented"] is False  # rotations and flips only: no copies on disk
    assert default["augment"] == {"dihedral": True, "brightness": 0, "contrast": 0, "noise": 0, "scale": 0}
    jitter = train({"brightness": 0.1, "contrast": 0.2, "noise": 0.01, "scale": 0.05})
    assert jitter["augmented"] is False and jitter["augment"]["scale"] == 0.05
    assert train({"angles": [18, 36]})["augmented"] is True and train({"translations": 2})["augmented"] is True
    assert train({"angles": [0, 360]})["augmented"] is False  # no copy to make
    off = train({"angles": [18]}, train={"augmented": False})
    assert off["augmented"] is False and off["augment"] is None
    with pytest.raises(InputError, match="augment.brightness"):
        validate({"augment": {"brightness": -0.1}, "datasets": {"a": DEMO}})


@pytest.mark.parametrize(
    "config, named",
    [
        ({"datasets": {"a": DEMO}, "prepar": {}}, "'prepar' was unexpected"),
        ({"datasets": {"a": {**DEMO, "prepare": {"tile_sise": 8}}}}, "datasets.a.prepare: Additional properties"),
        ({"datasets": {"a": DEMO}, "prepare": {"tile_size": "big"}}, "prepare.tile_size: 'big' is not of type"),
        ({"datasets": {"a": DEMO}, "split": {"test_fraction": 1.5}}, "split.test_fraction"),
        ({"datasets": {"a": DEMO}, "split": {"folds": 0}}, "split.folds: 0 is less than the minimum of 1"),
        ({"datasets": {"a": {"demo": {"pattern": "blobs"}}}}, "datasets.a.demo.pattern"),
        ({"datasets": {}}, "datasets"),
        ({"datasets": {"demo": DEMO}}, "datasets"),
        ({"datasets": {"a": {**DEMO, "test_only": True}}}, "nothing to train on"),
        (
            {"datasets": {"a": {**DEMO, "prepare": {"axes": "CYXC"}}}},
            "datasets.a.prepare.axes: 'CYXC' is no axes order",
        ),
        ({"datasets": {"a": DEMO}, "prepare": {"axes": "C Y X"}}, "prepare.axes: 'C Y X' does not match"),
    ],
)
def test_bad_config_names_the_key(config, named):
    with pytest.raises(InputError, match=named):
        validate(config)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(InputError, match=r"datasets.mine.path: folder .*no_such_folder does not exist"):
        validate({"datasets": {"mine": {"path": str(tmp_path / "no_such_folder")}}})


def test_relative_paths_resolve_against_base_dir(tmp_path):
    (tmp_path / "images").mkdir()
    config = validate({"datasets": {"mine": {"path": "images"}}}, base_dir=tmp_path)
    assert config["datasets"]["mine"]["path"] == str((tmp_path / "images").resolve())
