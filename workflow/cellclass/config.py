"""Load and check the workflow configuration against its JSON schema.

Checking happens before any job runs, so a typo in a key or a missing folder
stops the run at once with a message that names it.
"""

import copy
import re
from pathlib import Path

import jsonschema
import yaml

from cellclass.io import imageio
from cellclass.io.errors import InputError

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


def load_schema(path=SCHEMA_PATH):
    with open(path) as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: 10x faster, every start


def _with_defaults(validator_class):
    """A validator that fills in schema defaults as it walks the config."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _check(instance, schema, where):
    errors = sorted(_Validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for error in errors:
            key = ".".join(str(p) for p in [where, *error.absolute_path] if p != "")
            lines.append(f"  {key or 'config'}: {error.message}")
        raise InputError("invalid configuration:\n" + "\n".join(lines))


def deep_merge(base, override):
    """`override` on top of `base`, recursing into nested dicts."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def validate(config, base_dir="."):
    """Return a checked copy of `config` with defaults filled in.

    Each dataset gets its effective `prepare` and `split` settings (the
    top-level ones with its own overrides on top), checked against the same schema. Relative paths
    are resolved against `base_dir` (the directory Snakemake runs in).
    """
    config = copy.deepcopy(dict(config))
    schema = load_schema()
    _check(config, schema, "")
    base_dir = Path(base_dir)
    for name, dataset in config["datasets"].items():
        where = f"datasets.{name}"
        for section in ("prepare", "split"):
            merged = deep_merge(config[section], dataset[section])
            _check(merged, {"$defs": schema["$defs"], **schema["$defs"][section]}, f"{where}.{section}")
            dataset[section] = merged
        if dataset["prepare"]["axes"] is not None:
            try:
                dataset["prepare"]["axes"] = imageio.check_axes(dataset["prepare"]["axes"], f"{where}.prepare.axes")
            except InputError as error:
                raise InputError(f"invalid configuration:\n  {error}") from None
        _resolve_paths(dataset, base_dir, where)
        if dataset["extra_labels"]:
            _check_extra_labels(dataset, base_dir, where)
        if "demo_cells" in dataset and dataset["prepare"]["kind"] != "cells":
            raise InputError(
                f"invalid configuration:\n  {where}.prepare.kind: demo_cells writes one cell per image; "
                f"set kind: cells, not {dataset['prepare']['kind']}"
            )
    if not config["datasets"]:
        if not config["predict"] or any("package" not in p for p in config["predict"].values()):
            raise InputError(
                "invalid configuration:\n  datasets: none given; only a config whose prediction sets all "
                "use a model package (predict.<set>.package) can do without"
            )
    elif all(d["test_only"] for d in config["datasets"].values()):
        raise InputError("invalid configuration:\n  datasets: every dataset is test_only; nothing to train on")
    _check_experiments(config, schema, base_dir)
    _check_predictions(config, base_dir)
    _check_exports(config)
    _check_attribution(config)
    _check_profiles(config)
    return config


def _check_profiles(config):
    """Profiles name experiments and prediction sets of this config."""
    for key, known in (("experiments", config["experiments"]), ("predictions", config["predict"])):
        missing = [name for name in config["profiles"][key] if name not in known]
        if missing:
            kind = "experiment" if key == "experiments" else "prediction set"
            raise InputError(f"invalid configuration:\n  profiles.{key}: no {kind} '{missing[0]}'")


def _check_attribution(config):
    """Attribution explains named experiments (default: all) with options the methods accept."""
    attribution = config["attribution"]
    if attribution["experiments"] is None:
        attribution["experiments"] = list(config["experiments"])
    for name in attribution["experiments"]:
        if name not in config["experiments"]:
            raise InputError(f"invalid configuration:\n  attribution.experiments: no experiment '{name}'")
    attribution["masks"] = {name: _masks_of(config, name) for name in attribution["experiments"]}
    trained = {m for e in attribution["experiments"] for m in config["experiments"][e]["train"]["models"]}
    for model in attribution["models"] or []:
        if model not in trained:
            raise InputError(
                f"invalid configuration:\n  attribution.models: no explained experiment trains '{model}' "
                f"(they train {', '.join(sorted(trained))})"
            )


def _masks_of(config, experiment):
    """The masks an explained experiment's maps are scored in, checked against what its dataset can give."""
    masks = config["attribution"]["masks"]
    dataset = config["datasets"][config["experiments"][experiment]["dataset"]]
    if isinstance(masks, dict):
        masks = masks.get(experiment)
    if masks is None:
        return ["ground_truth"] if "demo" in dataset else ["puncta"]
    where = f"invalid configuration:\n  attribution.masks: experiment '{experiment}'"
    prepare = dataset["prepare"]
    if "ground_truth" in masks and "demo" not in dataset:
        raise InputError(f"{where}: ground_truth needs the demo's puncta masks; its dataset is not a demo")
    compartments = [m for m in masks if m in ("nucleus", "cytoplasm", "cell")]
    if compartments and prepare["kind"] != "nuclei":
        raise InputError(f"{where}: the {compartments[0]} mask needs single-cell crops (prepare.kind: nuclei)")
    grown = prepare["nuclei"]["cell_channel"] is not None or "sheet" in dataset  # a sheet may give cell_labels
    if {"cytoplasm", "cell"} & set(masks) and not grown:
        raise InputError(f"{where}: the cytoplasm and cell masks need cells: set prepare.nuclei.cell_channel")
    return list(masks)


def _resolve_paths(entry, base_dir, where):
    """Make `path` and `sheet` (and a plate's path, zarr and map) absolute and check that they exist."""
    if "plate" in entry:
        _resolve_paths(entry["plate"], base_dir, f"{where}.plate")
    for key in ("path", "sheet", "zarr", "map", "extra_labels"):
        if entry.get(key) is not None:
            resolved = (base_dir / entry[key]).resolve()
            if not resolved.exists():
                kind = {
                    "path": "folder",
                    "sheet": "sample sheet",
                    "zarr": "OME-Zarr plate",
                    "map": "plate map",
                    "extra_labels": "label-next sheet",
                }[key]
                raise InputError(f"invalid configuration:\n  {where}.{key}: {kind} {resolved} does not exist")
            entry[key] = str(resolved)
    if "path" in entry and "sheet" not in entry and not Path(entry["path"]).is_dir():
        raise InputError(f"invalid configuration:\n  {where}.path: {entry['path']} is not a folder")
    sources = [k for k in ("demo", "demo_plate", "demo_cells", "plate", "sheet", "path") if k in entry]
    if len(sources) > 1 and set(sources) != {"sheet", "path"}:
        raise InputError(
            f"invalid configuration:\n  {where}: give one of demo, demo_plate, demo_cells, plate or "
            f"path/sheet, not {' and '.join(sources)}"
        )


def _check_extra_labels(dataset, base_dir, where):
    """A filled label-next sheet: of a dataset that trains, and a copy outside results/, which the next run
    rewrites (training on it makes the sheet anew, and its own output would be its input)."""
    if dataset["test_only"]:
        raise InputError(
            f"invalid configuration:\n  {where}.extra_labels: a test_only dataset trains nothing; "
            "name the sheet under the dataset an experiment trains on"
        )
    if Path(dataset["extra_labels"]).is_relative_to((base_dir / "results").resolve()):
        raise InputError(
            f"invalid configuration:\n  {where}.extra_labels: {dataset['extra_labels']} is in results/, "
            "which the next run rewrites; copy the filled sheet elsewhere (e.g. labels/) and name the copy"
        )


def _check_predictions(config, base_dir):
    """Each prediction set names a trained experiment, one of its models and some of its seeds; or a package."""
    for name, prediction in config["predict"].items():
        where = f"predict.{name}"
        if name in config["datasets"]:
            raise InputError(f"invalid configuration:\n  {where}: a dataset has this name; pick another")
        _resolve_paths(prediction, base_dir, where)
        if "package" in prediction:
            _resolve_package(prediction, base_dir, where)
        else:
            _check_runs(config, prediction, where)


def _resolve_package(prediction, base_dir, where):
    """A package set: the zip exists; the package holds its ensemble, so model and seeds have no say."""
    given = [key for key in ("model", "seeds") if key in prediction]
    if given:
        raise InputError(
            f"invalid configuration:\n  {where}.{given[0]}: a package holds its own runs; "
            "give package alone, or an experiment with model and seeds"
        )
    path = (base_dir / prediction["package"]).resolve()
    if not path.is_file():
        raise InputError(f"invalid configuration:\n  {where}.package: model package {path} does not exist")
    prediction["package"] = str(path)


def _check_runs(config, entry, where):
    """An entry that names trained runs (a prediction set, an export): an experiment, one of its models (default
    its first) and some of its seeds (default all)."""
    experiment = config["experiments"].get(entry["experiment"])
    if experiment is None:
        raise InputError(f"invalid configuration:\n  {where}.experiment: no experiment '{entry['experiment']}'")
    models = experiment["train"]["models"]
    entry.setdefault("model", models[0])
    if entry["model"] not in models:
        raise InputError(
            f"invalid configuration:\n  {where}.model: experiment '{entry['experiment']}' trains {', '.join(models)}, not '{entry['model']}'"
        )
    runs = experiment["train"]["runs"]
    entry.setdefault("seeds", list(range(runs)))
    outside = [s for s in entry["seeds"] if s >= runs]
    if outside:
        raise InputError(
            f"invalid configuration:\n  {where}.seeds: experiment '{entry['experiment']}' trains seeds 0..{runs - 1}; no seed {outside[0]}"
        )


def _check_exports(config):
    """Each package exports trained runs: an experiment, a model, seeds and folds it has, and a name the
    bioimage.io spec accepts."""
    for name, export in config["export"].items():
        where = f"export.{name}"
        _check_runs(config, export, where)
        dataset = config["datasets"][config["experiments"][export["experiment"]]["dataset"]]
        folds = dataset["split"]["folds"]
        export.setdefault("folds", list(range(folds)))
        outside = [f for f in export["folds"] if f >= folds]
        if outside:
            raise InputError(
                f"invalid configuration:\n  {where}.folds: experiment '{export['experiment']}' has folds "
                f"0..{folds - 1}; no fold {outside[0]}"
            )
        title = export["title"] or f"cellclass {export['experiment']} {export['model']}"
        if not (5 <= len(title) <= 128) or re.search(r"[^A-Za-z0-9_+\- ()]", title):
            raise InputError(
                f"invalid configuration:\n  {where}.title: '{title}': bioimage.io names are 5-128 "
                "letters, digits, spaces and _+-()"
            )


# Options of `augment` done on the fly, by the input pipeline; the others resample the raw field once (augment rule).
ON_THE_FLY = ("dihedral", "brightness", "contrast", "noise", "scale")
RESAMPLED = ("angles", "translations", "max_shift", "seed")


def resampling(augment):
    """The `augment` options the augment rule's precomputed copies depend on."""
    return {key: augment[key] for key in RESAMPLED}


def augmentation(augment, wanted):
    """How a run with `train.augmented: wanted` gets its augmentation, as two train settings.

    `augment`: what the input pipeline does to each training tile on the fly
    (None: nothing). `augmented`: whether the run reads precomputed copies
    (results/<dataset>/augmented/), only made when `augment.angles` or
    `augment.translations` ask for copies resampled from the raw field; the
    lossless rotations, flips and jitter never need stored copies.
    """
    resampled = bool([a for a in augment["angles"] if a % 360]) or augment["translations"] > 0
    return {
        "augment": {key: augment[key] for key in ON_THE_FLY} if wanted else None,
        "augmented": bool(wanted and resampled),
    }


def _check_backbone(options, model, base_dir, where):
    """A backbone's weights file exists before any job runs; its path is made absolute (the train rule reads it)."""
    from cellclass.learn.model_specs import MODELS, weights_files

    for path in weights_files(model, options):
        resolved = (base_dir / Path(path).expanduser()).resolve()
        if not resolved.is_file():
            raise InputError(
                f"invalid configuration:\n  {where}.weights: {resolved} is not a file; give Keras' "
                f"ImageNet weights file ({MODELS[model].weights_file}), imagenet (download; online "
                "only) or null"
            )
        options["weights"] = str(resolved)


def _check_work(train, where):
    """A run's work is defined: a budget, or epochs; and a budget in tile-steps holds at least one batch."""
    budget = train["budget"] or {}
    if not budget and not train["epochs"]:
        raise InputError(
            f"invalid configuration:\n  {where}.budget: null with no epochs; give a budget "
            "(e.g. {passes: 30}) or epochs"
        )
    if budget.get("tile_steps", train["batch_size"]) < train["batch_size"]:
        raise InputError(
            f"invalid configuration:\n  {where}.budget.tile_steps: {budget['tile_steps']} is less than "
            f"one batch (batch_size {train['batch_size']})"
        )


def _check_experiments(config, schema, base_dir):
    """Fill in experiments (default: one per trainable dataset) and their train settings, the recipe's keys
    that the config leaves out taken from its preset (train.recipe)."""
    from cellclass.learn import recipe
    from cellclass.learn.model_specs import MODELS

    datasets = config["datasets"]
    if "experiments" not in config:
        config["experiments"] = {name: {"dataset": name} for name, d in datasets.items() if not d["test_only"]}
        _check(
            config["experiments"],
            {"$defs": schema["$defs"], "additionalProperties": {"$ref": "#/$defs/experiment"}},
            "experiments",
        )
    train_schema = {"$defs": schema["$defs"], **schema["$defs"]["train"]}
    augment = config["augment"]
    for name, experiment in config["experiments"].items():
        where = f"experiments.{name}"
        dataset = datasets.get(experiment["dataset"])
        if dataset is None or dataset["test_only"]:
            problem = "is test_only" if dataset else "is not in datasets"
            raise InputError(f"invalid configuration:\n  {where}.dataset: '{experiment['dataset']}' {problem}")
        for test_set in experiment["test_sets"]:
            if test_set not in datasets or not datasets[test_set]["test_only"]:
                raise InputError(
                    f"invalid configuration:\n  {where}.test_sets: '{test_set}' is not a test_only dataset"
                )
        merged = deep_merge(config["train"], experiment["train"])
        if "budget" in experiment["train"]:  # an experiment's budget replaces the top level's, limit by limit too
            merged["budget"] = copy.deepcopy(experiment["train"]["budget"])
        _check(merged, train_schema, f"{where}.train")
        merged.update(augmentation(augment, merged["augmented"]))
        # After both levels merge, so a key set at either level overrides the recipe chosen at either.
        experiment["train"] = recipe.resolve(merged)
        _check_work(experiment["train"], f"{where}.train")
        side = dataset["prepare"]["resize_to"] or dataset["prepare"]["tile_size"]
        for model in merged["models"]:
            if model not in MODELS:
                raise InputError(
                    f"invalid configuration:\n  {where}.train.models: unknown model '{model}'; known: {', '.join(MODELS)}"
                )
            if side < MODELS[model].min_size:
                raise InputError(
                    f"invalid configuration:\n  {where}: model '{model}' needs tiles of at least "
                    f"{MODELS[model].min_size} px; dataset '{experiment['dataset']}' makes {side} px tiles"
                )
            _check_backbone(merged["model_options"].get(model), model, base_dir, f"{where}.train.model_options.{model}")
