"""The plan of this config (cellclass.plan, unit-tested) turned into rule inputs and outputs."""

import sys

from cellclass import config as cc_config
from cellclass.learn import model_specs
from cellclass.plan import Plan, run_dir

PLAN = Plan(cc_config.validate(config))
CONFIG = PLAN.config
EXPERIMENTS = PLAN.experiments


wildcard_constraints:
    dataset="[A-Za-z0-9][A-Za-z0-9_-]*",
    image="[^@#]+",
    shard="[^@#]+",
    experiment="[A-Za-z0-9][A-Za-z0-9_-]*",
    model="[A-Za-z0-9_]+",
    fold="[0-9]+",
    seed="[0-9]+",
    name="[A-Za-z0-9][A-Za-z0-9_-]*",
    well="[A-Z]+[0-9]+",
    plate="[^/]+",
    where="[A-Za-z0-9][A-Za-z0-9_/-]*",
    test_set="[A-Za-z0-9][A-Za-z0-9_-]*",


def raw_files(samples):
    return [path for s in samples for path in s.inputs()]


def as_params(samples):
    return [vars(s) for s in samples]


def shard_samples(wildcards):
    return PLAN.datasets[wildcards.dataset].shard_samples(wildcards.shard)


def augmented_samples(wildcards):
    return PLAN.augmented_samples(wildcards.dataset, wildcards.shard)


def new_shard_samples(wildcards):
    return PLAN.predictions[wildcards.name].shard_samples(wildcards.shard)


def dataset_of(experiment):
    return EXPERIMENTS[experiment]["dataset"]


def run_of(wildcards):
    return run_dir(
        wildcards.experiment, wildcards.model, wildcards.fold, wildcards.seed
    )


def train_inputs(wildcards):
    dataset = dataset_of(wildcards.experiment)
    # Every shard: the run picks its fold's sides from split.tsv.
    return {
        "manifest": f"results/{dataset}/split.tsv",
        "shards": PLAN.tile_files(dataset),
        "train_shards": PLAN.train_files(wildcards.experiment),
        # Extra labelled cells (datasets.<name>.extra_labels): the training side only, in every fold.
        "extra": PLAN.extra_tile_files(dataset),
    }


def score_inputs(wildcards):
    dataset = dataset_of(wildcards.experiment)
    # The own test side and validation side are in the dataset's shards; other test sets are scored whole.
    inputs = {
        "manifest": f"results/{dataset}/split.tsv",
        "shards": PLAN.tile_files(dataset),
    }
    for name in EXPERIMENTS[wildcards.experiment]["test_sets"]:
        inputs[f"test_{name}"] = PLAN.tile_files(name)
        inputs[f"manifest_{name}"] = f"results/{name}/split.tsv"
    return inputs


def run_options(wildcards):
    """An experiment's train settings as one run uses them: how many seeds and which models the experiment has
    change no run already trained, so they are left out (a params change would retrain every run).
    """
    options = EXPERIMENTS[wildcards.experiment]["train"]
    return {
        key: value for key, value in options.items() if key not in ("runs", "models")
    }


def backbone_weights(wildcards):
    options = EXPERIMENTS[wildcards.experiment]["train"]["model_options"]
    return model_specs.weights_files(wildcards.model, options.get(wildcards.model))


def run_identity(wildcards):
    """What a run is, recorded in the files it writes so nothing downstream parses paths."""
    return {
        "experiment": wildcards.experiment,
        "dataset": dataset_of(wildcards.experiment),
        "model": wildcards.model,
        "fold": int(wildcards.fold),
        "seed": int(wildcards.seed),
    }


def test_masks(wildcards):
    """The demo's puncta masks of the run's test side (none for user data)."""
    return PLAN.ground_truth_masks(
        dataset_of(wildcards.experiment), "test", int(wildcards.fold)
    )


def export_raw_files(wildcards):
    return PLAN.export_raw_files(wildcards.name)


def assay_outputs(where, caption_name):
    """The outputs of an assay job under results/assay/<where>/, as report items."""

    def item(path, caption, category="Plates"):
        return report(
            f"results/assay/{where}/{path}",
            caption=f"../report/{caption}",
            category=category,
            subcategory=caption_name,
        )

    return {
        "wells": item("wells.tsv", "assay_wells.rst"),
        "statistics": item("plates.tsv", "assay_plates.rst"),
        "scorers": item("scorers.tsv", "assay_scorers.rst"),
        "findings": item("findings.html", "assay_findings.rst", "Findings"),
        "dose": item("dose_response.png", "assay_dose_response.rst"),
        "dose_svg": f"results/assay/{where}/dose_response.svg",
    }


def profile_outputs(folder, subcategory):
    """A profile job's outputs under `folder`, the map and its gallery as report items."""

    def item(path, caption):
        return report(
            f"{folder}/{path}",
            caption=f"../report/{caption}",
            category="Profiles",
            subcategory=subcategory,
        )

    return {
        "profiles": f"{folder}/profiles.parquet",
        "wells": f"{folder}/wells_profiles.parquet",
        "map_table": f"{folder}/map.tsv",
        "map": item("map.png", "profile_map.rst"),
        "map_svg": f"{folder}/map.svg",
        "gallery": item("map_gallery.png", "profile_gallery.rst"),
    }


# What training will cost, before any job runs (a dry run too); jobs re-reading the Snakefile stay quiet.
if workflow.is_main_process and PLAN.experiments:
    print(
        "Training plan (train.budget; docs/training.md, Training budget, says what each costs):",
        file=sys.stderr,
    )
    for line in PLAN.training_work():
        print(f"  {line}", file=sys.stderr)
