"""Config checking, dataset discovery and the split: everything the rules need to plan jobs."""

from cellclass import config as cc_config
from cellclass.io import datasets as cc_datasets
from cellclass.demo import synthetic
from cellclass.io import plates as cc_plates
from cellclass.share import package as cc_package
from cellclass.prepare import shards as cc_shards
from cellclass.prepare import split as cc_split

CONFIG = cc_config.validate(config)
DATASETS = CONFIG["datasets"]


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


# Per plate dataset or prediction set: one row per sample with its plate, well, role, dose, ... (the assay reads it).
LAYOUTS = {}


def demo_plate_fields(name, spec):
    """The fields a demo plate's rule will write, known before any file exists so jobs can be planned."""
    return [
        cc_plates.Field(
            spec["name"],
            well,
            "1",
            tuple(f"results/demo/{name}/plate/{well}_s1_w{c}.tif" for c in (1, 2)),
        )
        for well in synthetic.plate_map(spec)["well"]
    ]


def discover_plate(name, entry, labelled_only):
    """Samples of a plate (files + plate map, OME-Zarr, or the demo's), keeping its layout in LAYOUTS."""
    if "demo_plate" in entry:
        spec = entry["demo_plate"]
        samples, layout = cc_plates.join(
            demo_plate_fields(name, spec),
            synthetic.plate_map(spec),
            f"the demo plate {name}",
            labelled_only=labelled_only,
        )
    else:
        samples, layout = cc_plates.from_plate(
            entry["plate"], labelled_only=labelled_only
        )
    LAYOUTS[name] = layout
    return samples


def discover(name, dataset):
    if "plate" in dataset or "demo_plate" in dataset:
        return discover_plate(name, dataset, labelled_only=not dataset["test_only"])
    if "demo" in dataset:
        names = synthetic.field_names(dataset["demo"]["fields_per_class"])
        return cc_datasets.from_demo(f"results/demo/{name}", names)
    if "sheet" in dataset:
        return cc_datasets.from_sheet(
            dataset["sheet"], dataset.get("path"), dataset["test_only"]
        )
    return cc_datasets.from_folder(dataset["path"], dataset["test_only"])


SAMPLES = {name: {s.id: s for s in discover(name, ds)} for name, ds in DATASETS.items()}
# What the split had to force (a class with no test group, say); the split job
# reports it once, rather than every Snakemake call that plans.
SPLIT_NOTES = {name: [] for name in DATASETS}
# Per dataset, one group -> side map per fold (a test-only dataset has one fold).
SIDES = {
    name: cc_split.fold_sides(
        SAMPLES[name].values(),
        seed=ds["split"]["seed"],
        folds=ds["split"]["folds"],
        test_fraction=ds["split"]["test_fraction"],
        validation_fraction=ds["split"]["validation_fraction"],
        test_only=ds["test_only"],
        notes=SPLIT_NOTES[name],
    )
    for name, ds in DATASETS.items()
}


# Per dataset, shard name -> the sample ids one tile (augment) job handles.
SHARDS = {
    name: cc_shards.assign(SAMPLES[name], cc_shards.images_per_job(ds["prepare"]))
    for name, ds in DATASETS.items()
}


def folds_of(dataset):
    return len(SIDES[dataset])


def shard_samples(wildcards):
    return [
        SAMPLES[wildcards.dataset][sid]
        for sid in SHARDS[wildcards.dataset][wildcards.shard]
    ]


def raw_files(samples):
    return [path for s in samples for path in s.inputs()]


def sample_side(dataset, sample_id, fold=0):
    return SIDES[dataset][fold][SAMPLES[dataset][sample_id].group]


def tile_files(dataset):
    return [f"results/{dataset}/tiles/{shard}.npz" for shard in SHARDS[dataset]]


def augmented_datasets():
    """Datasets some experiment trains on augmented copies of (no augmentation is made for the others)."""
    return {
        e["dataset"] for e in CONFIG["experiments"].values() if e["train"]["augmented"]
    }


def demo_truth(dataset):
    """Sample id -> the demo's (nuclei, cells) ground-truth label files."""
    return {
        sid: (
            f"results/demo/{dataset}/nuclei/{sid}.tif",
            f"results/demo/{dataset}/cells/{sid}.tif",
        )
        for sid in SAMPLES[dataset]
    }


def prepared_outputs():
    outputs = []
    for name, dataset in DATASETS.items():
        outputs += tile_files(name)
        if name in augmented_datasets():
            outputs += augmented_files(name)
        outputs.append(f"results/{name}/split.tsv")
        if "demo" in dataset and dataset["prepare"]["kind"] == "nuclei":
            outputs.append(f"results/{name}/segmentation.tsv")
    return outputs


EXPERIMENTS = CONFIG["experiments"]


def classes_of(dataset):
    return cc_datasets.class_names(SAMPLES[dataset].values())


def trains_in_some_fold(dataset, sample_id):
    group = SAMPLES[dataset][sample_id].group
    return any(sides[group] == "train" for sides in SIDES[dataset])


def augmented_samples(wildcards):
    """The samples of a shard that augmentation copies: those that train in some fold."""
    return [
        s
        for s in shard_samples(wildcards)
        if trains_in_some_fold(wildcards.dataset, s.id)
    ]


def augmented_files(dataset):
    """Augmented shards: every shard with an image that trains in some fold."""
    return [
        f"results/{dataset}/augmented/{shard}.npz"
        for shard, ids in SHARDS[dataset].items()
        if any(trains_in_some_fold(dataset, sid) for sid in ids)
    ]


def test_set_names(experiment):
    """The dataset's own test side first, then its independent test sets."""
    return [EXPERIMENTS[experiment]["dataset"], *EXPERIMENTS[experiment]["test_sets"]]


def train_inputs(wildcards):
    dataset = EXPERIMENTS[wildcards.experiment]["dataset"]
    augmented = EXPERIMENTS[wildcards.experiment]["train"]["augmented"]
    # Every shard: the run picks its fold's sides from split.tsv.
    inputs = {
        "manifest": f"results/{dataset}/split.tsv",
        "shards": tile_files(dataset),
        "train_shards": augmented_files(dataset) if augmented else tile_files(dataset),
    }
    for name in EXPERIMENTS[wildcards.experiment]["test_sets"]:
        inputs[f"test_{name}"] = tile_files(name)
        inputs[f"manifest_{name}"] = f"results/{name}/split.tsv"
    return inputs


def scored_datasets():
    """Datasets some experiment trains or tests on, in config order."""
    used = {n for name in EXPERIMENTS for n in test_set_names(name)}
    return [name for name in DATASETS if name in used]


def run_dir(experiment, model, fold, seed):
    return f"results/train/{experiment}/{model}/fold{fold}/seed{seed}"


def run_dirs(only_experiment=None, only_model=None):
    """Every run: experiment x model x fold x seed."""
    return [
        run_dir(name, model, fold, seed)
        for name, experiment in EXPERIMENTS.items()
        if only_experiment in (None, name)
        for model in experiment["train"]["models"]
        if only_model in (None, model)
        for fold in range(folds_of(experiment["dataset"]))
        for seed in range(experiment["train"]["runs"])
    ]


def test_tile_files(experiment):
    """Shard files of every test set of an experiment (the gallery shows their tiles)."""
    return [f for name in test_set_names(experiment) for f in tile_files(name)]


def evaluated_outputs():
    if not EXPERIMENTS:  # a config that only predicts with model packages
        return []
    outputs = [
        "results/evaluation/summary.tsv",
        "results/figures/test_accuracy.png",
    ]
    for name, experiment in EXPERIMENTS.items():
        for model in experiment["train"]["models"]:
            outputs.append(f"results/figures/{name}/{model}/gallery.png")
    return outputs


PREDICTIONS = CONFIG["predict"]


def discover_new_images(name, prediction):
    if "plate" in prediction or "demo_plate" in prediction:
        return discover_plate(name, prediction, labelled_only=False)
    if "demo" in prediction:
        names = synthetic.field_names(prediction["demo"]["fields_per_class"])
        return cc_datasets.from_demo(f"results/demo/{name}", names)
    if "sheet" in prediction:
        return cc_datasets.unlabelled_from_sheet(
            prediction["sheet"], prediction.get("path")
        )
    return cc_datasets.unlabelled_from_folder(prediction["path"])


NEW_IMAGES = {
    name: {s.id: s for s in discover_new_images(name, prediction)}
    for name, prediction in PREDICTIONS.items()
}


def training_prepare(prediction):
    """The prepare settings of the images that trained a prediction set's runs (a package records them)."""
    if "package" in prediction:
        return cc_package.read_record(prediction["package"])["prepare"]["settings"]
    return DATASETS[EXPERIMENTS[prediction["experiment"]]["dataset"]]["prepare"]


# New images are sharded as the training dataset of their experiment is.
NEW_SHARDS = {
    name: cc_shards.assign(
        NEW_IMAGES[name], cc_shards.images_per_job(training_prepare(prediction))
    )
    for name, prediction in PREDICTIONS.items()
}


def demo_plate_spec(name):
    return (DATASETS.get(name) or PREDICTIONS[name])["demo_plate"]


def demo_settings(name):
    """How a demo field of dataset or prediction set `name` looks; the number of
    fields is left out, so adding fields never regenerates the existing ones."""
    demo = (DATASETS.get(name) or PREDICTIONS[name])["demo"]
    return {k: v for k, v in demo.items() if k != "fields_per_class"}


def new_shard_samples(wildcards):
    return [
        NEW_IMAGES[wildcards.name][i]
        for i in NEW_SHARDS[wildcards.name][wildcards.shard]
    ]


def new_tile_files(name):
    return [f"results/predict/{name}/tiles/{shard}.npz" for shard in NEW_SHARDS[name]]


def prediction_runs(name):
    """Run folders of the ensemble that classifies prediction set `name`: its seeds, in every fold."""
    p = PREDICTIONS[name]
    return [
        run_dir(p["experiment"], p["model"], fold, seed)
        for fold in range(folds_of(EXPERIMENTS[p["experiment"]]["dataset"]))
        for seed in p["seeds"]
    ]


def prediction_record(name):
    """What says how prediction set `name`'s images are tiled: its first run's metrics.json, or its package."""
    if "package" in PREDICTIONS[name]:
        return PREDICTIONS[name]["package"]
    return f"{prediction_runs(name)[0]}/metrics.json"


def prediction_models(name):
    """The networks that classify prediction set `name`: its runs' models, or its package."""
    if "package" in PREDICTIONS[name]:
        return [PREDICTIONS[name]["package"]]
    return [f"{run}/model.keras" for run in prediction_runs(name)]


def predicted_outputs():
    outputs = [f"results/predict/{name}/images.tsv" for name in PREDICTIONS]
    for name in PREDICTIONS:
        if name in LAYOUTS:
            outputs += assay_files(name, name)
    return outputs


def assay_files(where, plate_set):
    """An assay job's wells table and the heatmap of each plate of `plate_set` (a dataset or prediction set)."""
    plates = sorted({row["plate"] for row in LAYOUTS[plate_set]})
    return [f"results/assay/{where}/wells.tsv"] + [
        f"results/assay/{where}/heatmap_{plate}.png" for plate in plates
    ]


def assayed_outputs():
    """Plate assays of every plate test set (a plate dataset's own test side, or a plate test_only dataset)."""
    return [
        path
        for name, experiment in EXPERIMENTS.items()
        for test_set in test_set_names(name)
        if test_set in LAYOUTS
        for model in experiment["train"]["models"]
        for path in assay_files(f"test/{name}/{model}/{test_set}", test_set)
    ]


ATTRIBUTION = CONFIG["attribution"]


def attributed_models(experiment):
    """The models of an experiment that attribution explains (attribution.models; default all)."""
    models = EXPERIMENTS[experiment]["train"]["models"]
    return [
        m
        for m in models
        if ATTRIBUTION["models"] in (None, []) or m in ATTRIBUTION["models"]
    ]


def attributed_runs():
    """Attribution folders, one per explained run: results/attribution/<experiment>/<model>/fold<f>/seed<k>."""
    return [
        run.replace("results/train/", "results/attribution/", 1)
        for name in ATTRIBUTION["experiments"]
        for model in attributed_models(name)
        for run in run_dirs(only_experiment=name, only_model=model)
    ]


def ground_truth_masks(dataset, side, fold=0):
    """Sample id -> the demo's puncta mask, for one side of a dataset in one fold (none for user data)."""
    if "demo" not in DATASETS[dataset]:
        return {}
    return {
        sid: f"results/demo/{dataset}/masks/{sid}.tif"
        for sid in SAMPLES[dataset]
        if sample_side(dataset, sid, fold) == side
    }


def run_identity(wildcards):
    """What a run is, recorded in the files it writes so nothing downstream parses paths."""
    return {
        "experiment": wildcards.experiment,
        "dataset": EXPERIMENTS[wildcards.experiment]["dataset"],
        "model": wildcards.model,
        "fold": int(wildcards.fold),
        "seed": int(wildcards.seed),
    }


def attributed_outputs():
    outputs = (
        ["results/attribution/enrichment.tsv"] if ATTRIBUTION["experiments"] else []
    )
    for name in ATTRIBUTION["experiments"]:
        for model in attributed_models(name):
            outputs += [
                f"results/figures/{name}/{model}/attribution_{method}.png"
                for method in ATTRIBUTION["methods"]
            ]
    return outputs


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
        "findings": item("findings.html", "assay_findings.rst", "Findings"),
        "dose": item("dose_response.png", "assay_dose_response.rst"),
        "dose_svg": f"results/assay/{where}/dose_response.svg",
    }


EXPORTS = CONFIG["export"]


def export_runs(name):
    """Run folders of the ensemble that package `name` holds: its folds x seeds."""
    e = EXPORTS[name]
    return [
        run_dir(e["experiment"], e["model"], fold, seed)
        for fold in e["folds"]
        for seed in e["seeds"]
    ]


def exported_outputs():
    """Every package and its bioimage.io validation (nothing without an export section)."""
    return [
        f"results/export/{name}.{suffix}"
        for name in EXPORTS
        for suffix in ("zip", "validation.tsv")
    ]
