"""The conda environment asks for the same packages and version ranges as pyproject.toml."""

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

# PyPI name -> conda-forge name where they differ.
CONDA_NAME = {"tensorflow-cpu": "tensorflow"}


def parse(requirement):
    name, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement).groups()
    return name.lower(), spec.replace(" ", "")


def test_conda_env_matches_pyproject():
    with open(REPO / "pyproject.toml", "rb") as f:
        pyproject = dict(parse(r) for r in tomllib.load(f)["project"]["dependencies"])
    with open(REPO / "envs/cellclass.yaml") as f:
        env = yaml.safe_load(f)
    conda = dict(parse(d) for d in env["dependencies"] if isinstance(d, str) and d not in ("pip",))
    conda.pop("python")
    expected = {CONDA_NAME.get(name, name): spec for name, spec in pyproject.items()}
    assert conda == expected
