"""Load and check the workflow configuration against its JSON schema.

Checking happens before any job runs, so a typo in a key or a missing folder
stops the run at once with a message that names it.
"""

import copy
from pathlib import Path

import jsonschema
import yaml

from cellclass.errors import InputError

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


def load_schema(path=SCHEMA_PATH):
    with open(path) as f:
        return yaml.safe_load(f)


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

    Each dataset gets its effective `prepare` settings (the top-level ones with
    its own overrides on top), checked against the same schema. Relative paths
    are resolved against `base_dir` (the directory Snakemake runs in).
    """
    config = copy.deepcopy(dict(config))
    schema = load_schema()
    _check(config, schema, "")
    prepare_schema = {"$defs": schema["$defs"], **schema["$defs"]["prepare"]}
    base_dir = Path(base_dir)
    for name, dataset in config["datasets"].items():
        where = f"datasets.{name}"
        if "demo" in dataset and ("path" in dataset or "sheet" in dataset):
            raise InputError(f"invalid configuration:\n  {where}: give either demo or path/sheet, not both")
        merged = deep_merge(config["prepare"], dataset["prepare"])
        _check(merged, prepare_schema, f"{where}.prepare")
        dataset["prepare"] = merged
        for key in ("path", "sheet"):
            if key in dataset:
                resolved = (base_dir / dataset[key]).resolve()
                if not resolved.exists():
                    kind = "folder" if key == "path" else "sample sheet"
                    raise InputError(f"invalid configuration:\n  {where}.{key}: {kind} {resolved} does not exist")
                dataset[key] = str(resolved)
        if "path" in dataset and "sheet" not in dataset and not Path(dataset["path"]).is_dir():
            raise InputError(f"invalid configuration:\n  {where}.path: {dataset['path']} is not a folder")
    if all(d["test_only"] for d in config["datasets"].values()):
        raise InputError("invalid configuration:\n  datasets: every dataset is test_only; nothing to train on")
    _check_experiments(config, schema)
    return config


def _check_experiments(config, schema):
    """Fill in experiments (default: one per trainable dataset) and their train settings."""
    from cellclass.models import MODELS

    datasets = config["datasets"]
    if "experiments" not in config:
        config["experiments"] = {name: {"dataset": name} for name, d in datasets.items() if not d["test_only"]}
        _check(config["experiments"], {"$defs": schema["$defs"], "additionalProperties": {"$ref": "#/$defs/experiment"}}, "experiments")
    train_schema = {"$defs": schema["$defs"], **schema["$defs"]["train"]}
    for name, experiment in config["experiments"].items():
        where = f"experiments.{name}"
        dataset = datasets.get(experiment["dataset"])
        if dataset is None or dataset["test_only"]:
            problem = "is test_only" if dataset else "is not in datasets"
            raise InputError(f"invalid configuration:\n  {where}.dataset: '{experiment['dataset']}' {problem}")
        for test_set in experiment["test_sets"]:
            if test_set not in datasets or not datasets[test_set]["test_only"]:
                raise InputError(f"invalid configuration:\n  {where}.test_sets: '{test_set}' is not a test_only dataset")
        merged = deep_merge(config["train"], experiment["train"])
        _check(merged, train_schema, f"{where}.train")
        experiment["train"] = merged
        side = dataset["prepare"]["resize_to"] or dataset["prepare"]["tile_size"]
        for model in merged["models"]:
            if model not in MODELS:
                raise InputError(f"invalid configuration:\n  {where}.train.models: unknown model '{model}'; known: {', '.join(MODELS)}")
            if side < MODELS[model].min_size:
                raise InputError(
                    f"invalid configuration:\n  {where}: model '{model}' needs tiles of at least "
                    f"{MODELS[model].min_size} px; dataset '{experiment['dataset']}' makes {side} px tiles"
                )
