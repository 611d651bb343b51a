"""What the tests share: the Snakemake command line on a tiny config in a temporary folder, the parser of
Snakemake's job table, and the rule lists read from the workflow itself.

Plain functions and constants: tests import them with `from conftest import ...` (pyproject puts tests/
on the path), and so does bench/scale.py.
"""

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

TINY = {
    # Two images a shard: the 6 fields of `tiny` go to 4 shard files, so every test crosses shards.
    "prepare": {"tile_size": 32, "foreground": {"min_fraction": 0.2}, "images_per_job": 2},
    "plots": {"gallery_size": 12},
    "split": {"seed": 0, "test_fraction": 0.25},
    "augment": {"dihedral": True, "angles": [30]},
    "train": {"models": ["small"], "runs": 1, "epochs": 4, "batch_size": 16, "threads": 1, "epoch_tiles": 800},
    "datasets": {
        "tiny": {
            "demo": {"pattern": "aggregates", "fields_per_class": 3, "seed": 1, "size": 256, "cells_per_field": 30}
        },
        "tiny_holdout": {
            "demo": {"pattern": "aggregates", "fields_per_class": 1, "seed": 2, "size": 256, "cells_per_field": 30},
            "test_only": True,
        },
    },
    "experiments": {"tiny": {"dataset": "tiny", "test_sets": ["tiny_holdout"]}},
}


def write_config(folder, config=TINY):
    path = Path(folder) / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake_command(folder, *args, cores=2):
    """The command line that runs our Snakefile in `folder` on its config.yaml (the one place it is built)."""
    return [
        SNAKEMAKE,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(folder),
        "--configfile",
        str(Path(folder) / "config.yaml"),
        "--cores",
        str(cores),
        *args,
    ]


def snakemake(folder, *args, check=True):
    """Run snakemake on our Snakefile in `folder`; returns the CompletedProcess."""
    result = subprocess.run(snakemake_command(folder, *args), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def nothing_to_do(result):
    """Whether a dry run scheduled no job (Snakemake words this two ways); `result` as for job_counts."""
    text = result if isinstance(result, str) else result.stdout + result.stderr
    return "Nothing to be done" in text or re.search(r"^total\s+0$", text, re.M) is not None


def job_counts(result):
    """Jobs per rule in a dry run's "Job stats:" table ({} when nothing is scheduled).

    `result` is a CompletedProcess or the text Snakemake printed; bench/scale.py uses it too.
    """
    text = result if isinstance(result, str) else result.stdout + result.stderr
    counts = {}
    for table in re.findall(r"^Job stats:\n(.*?)(?:\n\n|\Z)", text, re.MULTILINE | re.DOTALL):
        rows = dict(re.findall(r"^(\w+)\s+(\d+)$", table, re.MULTILINE))
        counts = {rule: int(n) for rule, n in rows.items() if rule != "total"}
    return counts


def report_results(report):
    """What a built report (report.html, or report.zip) lists: result path -> its record as Snakemake embeds it
    (name, caption as HTML, job_properties with rule and wildcards, ...)."""
    report = Path(report)
    if report.suffix == ".zip":
        with zipfile.ZipFile(report) as archive:
            [page] = [name for name in archive.namelist() if name.endswith("/report.html")]
            text = archive.read(page).decode()
    else:
        text = report.read_text()
    return json.loads(re.search(r'<script id="results">\s*var results = (.*?);\s*</script>', text, re.DOTALL).group(1))


def caption_problems(results):
    """Result path -> what is wrong with its rendered caption (absent when nothing is): none at all, a Jinja
    tag left over, or an empty placeholder. Our captions put wildcard values in **bold**, so an empty one
    leaves a bare `**` that docutils reports as a system message, or an empty <strong>."""
    problems = {}
    for path, result in results.items():
        caption = result["caption"]
        if not caption.strip():
            problems[path] = "no caption"
        elif re.search(r"\{\{|\}\}|\{%|%\}", caption):
            problems[path] = "a Jinja tag left over"
        elif "system-message" in caption or "problematic" in caption:
            problems[path] = "docutils reported a problem (an empty **{{ placeholder }}**, a stray | or *)"
        elif re.search(r"<(strong|em)>\s*</\1>", caption):
            problems[path] = "empty bold or italic text"
    return problems


def samples_in(folder):
    """Sample id -> the shard file holding it, over the shard files in `folder` (tiles, augmented, ...)."""
    from cellclass.io import tilestore

    return {
        t.meta["sample"]: path for path in sorted(Path(folder).glob("*.npz")) for t in tilestore.load(path, tiles=False)
    }


def local_rules(snakefile=REPO / "Snakefile"):
    """The rule names in the Snakefile's `localrules:` directive (on its line or the indented lines below)."""
    match = re.search(r"^localrules:(.*(?:\n[ \t]+.*)*)", Path(snakefile).read_text(), re.MULTILINE)
    if match is None:
        raise ValueError(f"no localrules: directive in {snakefile}")
    return {name for line in match.group(1).splitlines() for name in re.split(r"[\s,]+", line.split("#")[0]) if name}


def train_and_score(*, test_sets, tta="none", **train):
    """What the train job and then the score job do to one run, in this process: its metrics.json record."""
    from cellclass.learn import scoring, training

    training.train_run(**train)
    return scoring.score_run(
        run_dir=train["out_dir"],
        classes=train["classes"],
        validation=train["validation"],
        test_sets=test_sets,
        options=train["options"],
        threads=train.get("threads", 1),
        tta=tta,
    )
