"""The plan: a validated config in, every job's samples, shards, folds, runs and files out.

A pure function of the config (and of the image folders, sheets and plate maps it names): no Snakemake, no
globals. The rules' common.smk only turns a Plan into inputs and outputs, so everything that decides what
runs is unit-tested here (tests/test_plan.py).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from cellclass.assay import held_out
from cellclass.demo import patterns, synthetic
from cellclass.io import datasets, plates
from cellclass.predict import out_of_fold
from cellclass.prepare import extra_labels, shards, split
from cellclass.share import package

DEMO_ROOT = "results/demo"
TSV_IMAGES = 1000  # predict.<set>.tiles_tsv: auto writes tiles.tsv for sets of at most this many images


@dataclass
class ImageSet:
    """The images of a dataset or a prediction set: samples by id, their shards, and a plate's layout (one row
    per sample with its plate, well, role, dose; None when the images are no plate)."""

    name: str
    entry: dict
    samples: dict
    shards: dict
    layout: list | None = None

    def shard_samples(self, shard):
        return [self.samples[sid] for sid in self.shards[shard]]

    def classes(self):
        return datasets.class_names(self.samples.values())


@dataclass
class Dataset(ImageSet):
    """A training or test dataset: its images plus the split, one group -> side map per fold."""

    sides: list = field(default_factory=list)
    split_notes: list = field(default_factory=list)  # what the split had to force; the split job reports it
    # Images of a filled label-next sheet (datasets.<name>.extra_labels) whose cells every run trains on too.
    extra: list = field(default_factory=list)

    @property
    def folds(self):
        return len(self.sides)

    def side(self, sample_id, fold=0):
        """A sample's side in `fold`; an extra image (`extra:<image>`) is outside the split, on every fold's
        training side, since every run trains on its labelled cells."""
        if sample_id not in self.samples and sample_id.startswith(extra_labels.PREFIX):
            return "train"
        return self.sides[fold][self.samples[sample_id].group]

    def trains_in_some_fold(self, sample_id):
        group = self.samples[sample_id].group
        return any(sides[group] == "train" for sides in self.sides)


@dataclass
class PredictionSet(ImageSet):
    """New images and what classifies them: trained runs (run folders) or a model package, never both."""

    runs: list = field(default_factory=list)
    package: str | None = None
    # Images it shares with the runs' training dataset: sample id -> the runs that may score them (out_of_fold).
    scoring: dict = field(default_factory=dict)
    # The runs' training dataset's filled label-next sheet (datasets.<name>.extra_labels), if any: its cells are
    # labelled already, so label-next never asks for them again.
    labelled: list = field(default_factory=list)
    # How its images are tiled (the runs' or the package's prepare settings).
    settings: dict = field(default_factory=dict)
    # The runs' training dataset (None for a package): its images' quality measures are the yardstick of new ones.
    trained_on: str | None = None

    @property
    def quality_reference(self):
        """What holds the training images' quality table new images are compared with: the runs' dataset's
        qc.parquet, or the package, which carries its own."""
        return self.package or f"results/{self.trained_on}/qc.parquet"

    @property
    def draws_overlays(self):
        """Whether predict_set draws overlays, and so reads raw fields: single-cell images get none, nor does a set
        with predict.<set>.overlays 0."""
        return self.settings.get("kind") != "cells" and self.entry.get("overlays") != 0

    @property
    def tiles_tsv(self):
        """Whether the per-tile (cell) table is also written as TSV: predict.<set>.tiles_tsv, auto for small sets."""
        wanted = self.entry["tiles_tsv"]
        return len(self.samples) <= TSV_IMAGES if wanted == "auto" else wanted

    @property
    def record(self):
        """What says how its images are tiled: the package, or the first run's training record (not its scoring,
        so an evaluation setting does not tile new images again)."""
        return self.package or f"{self.runs[0]}/training.json"

    @property
    def models(self):
        """The networks that classify it: the package, or each run's model.keras."""
        return [self.package] if self.package else [f"{run}/model.keras" for run in self.runs]

    @property
    def novelty(self):
        """Each run's novelty reference (cellclass.learn.novelty); a package carries its members' inside."""
        return [] if self.package else [f"{run}/novelty.npz" for run in self.runs]

    @property
    def calibration_parts(self):
        """Each run's calibration part (calibration.tsv), on which the ensemble's own temperature is fitted."""
        return [] if self.package else [f"{run}/calibration.tsv" for run in self.runs]

    @property
    def calibrations(self):
        """Where each run's temperature is recorded: its metrics.json (a package carries its members' own)."""
        return [] if self.package else [f"{run}/metrics.json" for run in self.runs]


def demo_roots(config):
    """Each demo-field set's folder: the first set (datasets, then prediction sets) with the same `demo`
    settings writes the fields and later ones read them, so the demo's per-cell sets reuse the per-tile sets'
    fields instead of rendering them again."""
    roots, first = {}, {}
    for name, entry in [*config["datasets"].items(), *config["predict"].items()]:
        if "demo" in entry:
            roots[name] = f"{DEMO_ROOT}/{first.setdefault(json.dumps(entry['demo'], sort_keys=True), name)}"
    return roots


def images_of(name, entry, *, labelled, demo_root=None):
    """(samples, layout) of a dataset (`labelled`) or prediction set: the one dispatch over where images come
    from (a plate folder or OME-Zarr plate, the demo's plate, fields or single cells, a sample sheet, a class
    folder). `demo_root`: where demo fields are (demo_roots)."""
    if "demo_plate" in entry:
        spec = entry["demo_plate"]
        return plates.join(
            demo_plate_fields(name, spec),
            synthetic.plate_map(spec),
            f"the demo plate {name}",
            labelled_only=labelled and not entry.get("test_only"),
        )
    if "plate" in entry:
        return plates.from_plate(entry["plate"], labelled_only=labelled and not entry.get("test_only"))
    if "demo_cells" in entry:
        return patterns.samples(f"{DEMO_ROOT}/{name}", entry["demo_cells"]), None
    if "demo" in entry:
        names = synthetic.field_names(entry["demo"]["fields_per_class"])
        return datasets.from_demo(demo_root or f"{DEMO_ROOT}/{name}", names), None
    if labelled:
        if "sheet" in entry:
            return datasets.from_sheet(entry["sheet"], entry.get("path"), entry["test_only"]), None
        return datasets.from_folder(entry["path"], entry["test_only"]), None
    if "sheet" in entry:
        return datasets.unlabelled_from_sheet(entry["sheet"], entry.get("path")), None
    return datasets.unlabelled_from_folder(entry["path"]), None


def demo_plate_fields(name, spec):
    """The fields a demo plate's rule will write, known before any file exists so jobs can be planned."""
    return [
        plates.Field(spec["name"], well, "1", tuple(f"{DEMO_ROOT}/{name}/plate/{well}_s1_w{c}.tif" for c in (1, 2)))
        for well in synthetic.plate_map(spec)["well"]
    ]


def plan_dataset(name, entry, demo_root=None):
    samples, layout = images_of(name, entry, labelled=True, demo_root=demo_root)
    notes = []
    sides = split.fold_sides(
        samples,
        seed=entry["split"]["seed"],
        folds=entry["split"]["folds"],
        dataset=name,
        test_fraction=entry["split"]["test_fraction"],
        validation_fraction=entry["split"]["validation_fraction"],
        test_only=entry["test_only"],
        notes=notes,
    )
    by_id = {s.id: s for s in samples}
    return Dataset(
        name,
        entry,
        by_id,
        shards.assign(by_id, shards.images_per_job(entry["prepare"])),
        layout,
        sides=sides,
        split_notes=notes,
        extra=extra_images(name, entry, samples),
    )


def extra_images(name, entry, samples):
    """The labelled images of the dataset's extra_labels sheet (none without one), read now so its raw files
    are the extra_tiles job's inputs and a bad class stops the run before any job."""
    sheet = entry.get("extra_labels")
    if sheet is None:
        return []
    images = extra_labels.read_sheet(sheet, datasets.class_names(samples))
    extra_labels.refuse_dataset_images(images, samples, sheet, name)
    return images


def run_dir(experiment, model, fold, seed):
    return f"results/train/{experiment}/{model}/fold{fold}/seed{seed}"


class Plan:
    """Everything the workflow will do for one validated config."""

    def __init__(self, config):
        self.config = config
        self.experiments = config["experiments"]
        self.attribution = config["attribution"]
        self.exports = config["export"]
        self.demo_roots = demo_roots(config)
        self.datasets = {
            name: plan_dataset(name, entry, self.demo_roots.get(name)) for name, entry in config["datasets"].items()
        }
        self.predictions = {name: self._plan_prediction(name, entry) for name, entry in config["predict"].items()}

    # --- prediction sets -------------------------------------------------------------------------------------

    def _plan_prediction(self, name, entry):
        samples, layout = images_of(name, entry, labelled=False, demo_root=self.demo_roots.get(name))
        by_id = {s.id: s for s in samples}
        if "package" in entry:
            # New images are sharded as the training images were: the package records their settings.
            prepare = package.read_record(entry["package"])["prepare"]["settings"]
            runs, scoring, labelled = [], {}, []
        else:
            experiment = self.experiments[entry["experiment"]]
            prepare = self.config["datasets"][experiment["dataset"]]["prepare"]
            trained_on = self.datasets[experiment["dataset"]]
            folds = [fold for fold in range(trained_on.folds) for _ in entry["seeds"]]
            runs = [
                run_dir(entry["experiment"], entry["model"], fold, seed)
                for fold in range(trained_on.folds)
                for seed in entry["seeds"]
            ]
            scoring = out_of_fold.scorers(out_of_fold.shared_images(by_id, layout, trained_on), trained_on, folds)
            if self.config["assay"]["scoring"] == "out_of_fold_all":  # a plate's samples scored as its controls
                scoring = held_out.score_every_well(
                    scoring, layout, folds, folds=trained_on.folds, seed=trained_on.entry["split"]["seed"]
                )
            labelled = [trained_on.entry["extra_labels"]] if trained_on.entry.get("extra_labels") else []
        return PredictionSet(
            name,
            entry,
            by_id,
            shards.assign(by_id, shards.images_per_job(prepare)),
            layout,
            runs=runs,
            package=entry.get("package"),
            scoring=scoring,
            labelled=labelled,
            settings=prepare,
            trained_on=None if "package" in entry else experiment["dataset"],
        )

    def image_set(self, name):
        """A dataset or a prediction set by name (their names never clash: config.validate checks)."""
        return self.datasets.get(name) or self.predictions[name]

    def demo_plates(self):
        """Datasets and prediction sets that are generated demo plates (one demo_plate job each)."""
        sets = {**self.config["datasets"], **self.config["predict"]}
        return [name for name, entry in sets.items() if "demo_plate" in entry]

    def demo_plate_files(self, name):
        """Every file a demo plate's job writes: each well's channel files, in plate-map order."""
        return [path for f in demo_plate_fields(name, self.image_set(name).entry["demo_plate"]) for path in f.files]

    def demo_settings(self, name):
        """How a demo field of `name` looks; the number of fields is left out, so adding fields never
        regenerates the existing ones."""
        return {k: v for k, v in self.image_set(name).entry["demo"].items() if k != "fields_per_class"}

    def demo_truth(self, dataset):
        """Sample id -> the demo's (nuclei, cells) ground-truth label files."""
        root = self.demo_roots[dataset]
        return {sid: (f"{root}/nuclei/{sid}.tif", f"{root}/cells/{sid}.tif") for sid in self.datasets[dataset].samples}

    def ground_truth_masks(self, dataset, side, fold=0):
        """Sample id -> the demo's puncta mask, for one side of a dataset in one fold (none for user data)."""
        data = self.datasets[dataset]
        if "demo" not in data.entry:
            return {}
        root = self.demo_roots[dataset]
        return {sid: f"{root}/masks/{sid}.tif" for sid in data.samples if data.side(sid, fold) == side}

    # --- files -----------------------------------------------------------------------------------------------

    def tile_files(self, dataset):
        return [f"results/{dataset}/tiles/{shard}.npz" for shard in self.datasets[dataset].shards]

    def new_tile_files(self, name):
        return [f"results/predict/{name}/tiles/{shard}.npz" for shard in self.predictions[name].shards]

    def augmented_datasets(self):
        """Datasets some experiment trains on augmented copies of (no augmentation is made for the others)."""
        return {e["dataset"] for e in self.experiments.values() if e["train"]["augmented"]}

    def augmented_samples(self, dataset, shard):
        """The samples of a shard that augmentation copies: those that train in some fold."""
        data = self.datasets[dataset]
        return [s for s in data.shard_samples(shard) if data.trains_in_some_fold(s.id)]

    def augmented_files(self, dataset):
        """Augmented shards: every shard with an image that trains in some fold."""
        data = self.datasets[dataset]
        return [
            f"results/{dataset}/augmented/{shard}.npz"
            for shard, ids in data.shards.items()
            if any(data.trains_in_some_fold(sid) for sid in ids)
        ]

    def extra_tile_files(self, dataset):
        """The extra labelled cells every run of `dataset` trains on (none without datasets.<name>.extra_labels)."""
        return [f"results/{dataset}/extra/tiles.npz"] if self.datasets[dataset].extra else []

    def extra_raw_files(self, dataset):
        return [f for image in self.datasets[dataset].extra for f in image.files]

    def train_files(self, experiment):
        """The shard files a run trains from: the augmented copies where its experiment reads them, else the tiles."""
        dataset = self.experiments[experiment]["dataset"]
        augmented = self.experiments[experiment]["train"]["augmented"]
        return self.augmented_files(dataset) if augmented else self.tile_files(dataset)

    def export_raw_files(self, name):
        """Raw images of the first run's test side: a package of raw tiles takes its test tensors from them."""
        export = self.exports[name]
        data = self.datasets[self.experiments[export["experiment"]]["dataset"]]
        return [f for s in data.samples.values() if data.side(s.id, export["folds"][0]) == "test" for f in s.inputs()]

    def test_set_names(self, experiment):
        """The dataset's own test side first, then its independent test sets."""
        return [self.experiments[experiment]["dataset"], *self.experiments[experiment]["test_sets"]]

    def scored_datasets(self):
        """Datasets some experiment trains or tests on, in config order."""
        used = {n for name in self.experiments for n in self.test_set_names(name)}
        return [name for name in self.datasets if name in used]

    def run_dirs(self, experiment=None, model=None):
        """Every run: experiment x model x fold x seed."""
        return [
            run_dir(name, m, fold, seed)
            for name, e in self.experiments.items()
            if experiment in (None, name)
            for m in e["train"]["models"]
            if model in (None, m)
            for fold in range(self.datasets[e["dataset"]].folds)
            for seed in range(e["train"]["runs"])
        ]

    def test_tile_files(self, experiment):
        """Shard files of every test set of an experiment (the gallery shows their tiles)."""
        return [f for name in self.test_set_names(experiment) for f in self.tile_files(name)]

    def attributed_models(self, experiment):
        """The models of an experiment that attribution explains (attribution.models; default all)."""
        chosen = self.attribution["models"]
        return [m for m in self.experiments[experiment]["train"]["models"] if not chosen or m in chosen]

    def attributed_runs(self):
        """Attribution folders, one per explained run: results/attribution/<experiment>/<model>/fold<f>/seed<k>."""
        return [
            run.replace("results/train/", "results/attribution/", 1)
            for name in self.attribution["experiments"]
            for model in self.attributed_models(name)
            for run in self.run_dirs(name, model)
        ]

    def export_runs(self, name):
        """Run folders of the ensemble that package `name` holds: its folds x seeds."""
        e = self.exports[name]
        return [run_dir(e["experiment"], e["model"], fold, seed) for fold in e["folds"] for seed in e["seeds"]]

    def assay_files(self, where, plate_set):
        """An assay job's wells table and the heatmap of each plate of `plate_set` (a dataset or prediction set)."""
        names = sorted({row["plate"] for row in self.image_set(plate_set).layout})
        return [f"results/assay/{where}/wells.tsv"] + [f"results/assay/{where}/heatmap_{p}.png" for p in names]

    # --- profiles, maps and label-next (profiles) --------------------------------------------------------------

    def profiled_runs(self, experiment, model):
        """Run folder -> the sample ids of its fold's test side, which alone it profiles."""
        data = self.datasets[self.experiments[experiment]["dataset"]]
        return {
            run_dir(experiment, model, fold, seed): [sid for sid in data.samples if data.side(sid, fold) == "test"]
            for fold in range(data.folds)
            for seed in range(self.experiments[experiment]["train"]["runs"])
        }

    def profiled_outputs(self):
        """Profiles and maps of the experiments (each model) and prediction sets that profiles names; a
        prediction set's label-next sheet and page."""
        chosen = self.config["profiles"]
        outputs = [
            f"results/profiles/{name}/{model}/{file}"
            for name in chosen["experiments"]
            for model in self.experiments[name]["train"]["models"]
            for file in ("profiles.parquet", "map.png")
        ]
        return outputs + [
            f"results/predict/{name}/{file}"
            for name in chosen["predictions"]
            for file in ("profiles.parquet", "map.png", "label_next.tsv", "label_next.html")
        ]

    # --- the leakage check (evaluation.leakage_check) ---------------------------------------------------------

    def leakage_runs(self):
        """Control run folders, one per experiment (its first model, seed 0) trained and tested on a random split
        of tiles: results/leakage/<experiment>/<model>. None unless evaluation.leakage_check."""
        if not self.config["evaluation"]["leakage_check"]:
            return []
        return [f"results/leakage/{name}/{e['train']['models'][0]}" for name, e in self.experiments.items()]

    def leakage_run_files(self):
        """What the leakage check reads of its control runs."""
        return [f"{run}/{name}" for run in self.leakage_runs() for name in ("metrics.json", "predictions.tsv")]

    def leakage_split(self, experiment):
        """The control's random tile split: the dataset's split seed, the share of tiles a fold tests
        (split.test_fraction, or 1/folds under cross-validation) and split.validation_fraction."""
        data = self.datasets[self.experiments[experiment]["dataset"]]
        settings = data.entry["split"]
        test = settings["test_fraction"] if data.folds == 1 else 1 / data.folds
        return {"seed": settings["seed"], "test_fraction": test, "validation_fraction": settings["validation_fraction"]}

    def leakage_augmented_samples(self, dataset, shard):
        """The samples of a shard whose augmented copies only the control needs: those no real run trains on."""
        data = self.datasets[dataset]
        return [s for s in data.shard_samples(shard) if not data.trains_in_some_fold(s.id)]

    def leakage_augmented_files(self, dataset):
        data = self.datasets[dataset]
        return [
            f"results/leakage/{dataset}/augmented/{shard}.npz"
            for shard in data.shards
            if self.leakage_augmented_samples(dataset, shard)
        ]

    def leakage_train_files(self, experiment):
        """What the control trains from: every image's augmented copies where its experiment reads copies (the real
        runs' and the control's own), else the tiles."""
        dataset = self.experiments[experiment]["dataset"]
        if not self.experiments[experiment]["train"]["augmented"]:
            return self.tile_files(dataset)
        return self.augmented_files(dataset) + self.leakage_augmented_files(dataset)

    def leakage_outputs(self):
        if not self.leakage_runs():
            return []
        return ["results/leakage/leakage.tsv", "results/figures/leakage.png"]

    # --- targets ---------------------------------------------------------------------------------------------

    def prepared_outputs(self):
        outputs = []
        for name, data in self.datasets.items():
            outputs += self.tile_files(name)
            if name in self.augmented_datasets():
                outputs += self.augmented_files(name)
            outputs += [f"results/{name}/split.tsv", f"results/{name}/qc.parquet"]
            if "demo" in data.entry and data.entry["prepare"]["kind"] == "nuclei":
                outputs.append(f"results/{name}/segmentation.tsv")
        return outputs

    def evaluated_outputs(self):
        if not self.experiments:  # a config that only predicts with model packages
            return []
        return (
            ["results/evaluation/summary.tsv", "results/figures/test_accuracy.png"]
            + [
                f"results/figures/{name}/{model}/gallery.png"
                for name, e in self.experiments.items()
                for model in e["train"]["models"]
            ]
            + self.leakage_outputs()
        )

    def attributed_outputs(self):
        outputs = ["results/attribution/enrichment.tsv"] if self.attribution["experiments"] else []
        return outputs + [
            f"results/figures/{name}/{model}/attribution_{method}.png"
            for name in self.attribution["experiments"]
            for model in self.attributed_models(name)
            for method in self.attribution["methods"]
        ]

    def predicted_outputs(self):
        outputs = [f"results/predict/{name}/images.tsv" for name in self.predictions]
        outputs += [f"results/predict/{name}/tiles.tsv" for name, p in self.predictions.items() if p.tiles_tsv]
        outputs += [f for name, p in self.predictions.items() if p.layout for f in self.assay_files(name, name)]
        return outputs + [f for f in self.profiled_outputs() if f.startswith("results/predict/")]

    def assayed_outputs(self):
        """Plate assays of every plate test set (a plate dataset's own test side, or a plate test_only dataset)."""
        return [
            path
            for name, e in self.experiments.items()
            for test_set in self.test_set_names(name)
            if self.datasets[test_set].layout
            for model in e["train"]["models"]
            for path in self.assay_files(f"test/{name}/{model}/{test_set}", test_set)
        ]

    def exported_outputs(self):
        """Every package and its bioimage.io validation (nothing without an export section)."""
        return [f"results/export/{name}.{suffix}" for name in self.exports for suffix in ("zip", "validation.tsv")]

    def training_work(self):
        """Per experiment, a sentence of what its training will cost, stated before any job runs (the Snakefile
        prints it): runs, training images per run, and each run's work (budget or epochs)."""
        from cellclass.learn import budget, recipe

        lines = []
        for name, experiment in self.experiments.items():
            train, dataset = experiment["train"], self.datasets[experiment["dataset"]]
            trained = [sum(dataset.side(s, fold) == "train" for s in dataset.samples) for fold in range(dataset.folds)]
            images = f"{min(trained)}" if min(trained) == max(trained) else f"{min(trained)}-{max(trained)}"
            runs = len(train["models"]) * dataset.folds * train["runs"]
            if train["epochs"] and budget.epoch_length(train):
                length = (
                    f"{train['epoch_tiles']:,} tiles"
                    if train["epoch_tiles"]
                    else f"{train['epoch_passes']} pass(es) over its training tiles"
                )
                work = f"{train['epochs']} epochs of {length}"
            elif train["budget"]:
                work = recipe.budget_words(train["budget"])
                work += f" in {train['epochs']} epochs" if train["epochs"] else ", cut into 10-30 epochs"
            else:
                work = f"{train['epochs']} epochs of {recipe.epoch_passes(train)} pass(es)"
            lines.append(
                f"{name}: {runs} run(s) ({', '.join(train['models'])} x {dataset.folds} fold(s) x "
                f"{train['runs']} seed(s)), each on {images} training image(s); each run trains {work}"
            )
        return lines

    def all_outputs(self):
        return (
            self.prepared_outputs()
            + self.evaluated_outputs()
            + self.attributed_outputs()
            + self.predicted_outputs()
            + self.assayed_outputs()
            + self.exported_outputs()
            + [f for f in self.profiled_outputs() if f.startswith("results/profiles/")]
        )


def make_plan(config, base_dir="."):
    """The plan of a raw config: validated (defaults filled, paths resolved against `base_dir`), then planned."""
    from cellclass import config as cc_config

    return Plan(cc_config.validate(config, Path(base_dir)))
