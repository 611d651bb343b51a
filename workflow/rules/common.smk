"""Config checking, dataset discovery and the split: everything the rules need to plan jobs."""

import logging

from cellclass import config as cc_config
from cellclass import datasets as cc_datasets
from cellclass import demo as cc_demo
from cellclass import split as cc_split

logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")

CONFIG = cc_config.validate(config)
DATASETS = CONFIG["datasets"]


wildcard_constraints:
    dataset="[A-Za-z0-9][A-Za-z0-9_-]*",
    image="[^@#]+",


def discover(name, dataset):
    if "demo" in dataset:
        names = cc_demo.field_names(dataset["demo"]["fields_per_class"])
        return cc_datasets.from_demo(f"results/demo/{name}", names)
    if "sheet" in dataset:
        return cc_datasets.from_sheet(dataset["sheet"], dataset.get("path"), dataset["test_only"])
    return cc_datasets.from_folder(dataset["path"], dataset["test_only"])


SAMPLES = {name: {s.id: s for s in discover(name, ds)} for name, ds in DATASETS.items()}
SIDES = {
    name: cc_split.assign(
        SAMPLES[name].values(),
        seed=CONFIG["split"]["seed"],
        test_fraction=CONFIG["split"]["test_fraction"],
        validation_fraction=CONFIG["split"]["validation_fraction"],
        test_only=ds["test_only"],
    )
    for name, ds in DATASETS.items()
}


def sample(wildcards):
    return SAMPLES[wildcards.dataset][wildcards.image]


def sample_side(dataset, sample_id):
    return SIDES[dataset][SAMPLES[dataset][sample_id].group]


def tile_files(dataset):
    return [f"results/{dataset}/tiles/{sid}.npz" for sid in SAMPLES[dataset]]


def augmented_files(dataset):
    return [
        f"results/{dataset}/augmented/{sid}.npz"
        for sid in SAMPLES[dataset]
        if sample_side(dataset, sid) == "train"
    ]


def prepared_outputs():
    outputs = []
    for name in DATASETS:
        outputs += tile_files(name) + augmented_files(name)
        outputs.append(f"results/{name}/split.tsv")
    return outputs
