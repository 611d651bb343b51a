"""Static checks CI fails on: Snakemake's linter and snakefmt's formatting."""

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def run(*args):
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, cwd=REPO)


def test_snakefmt_check():
    result = run("snakefmt", "--check", "Snakefile", "workflow/rules")
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakemake_lint_has_no_findings():
    result = run("snakemake", "--lint", "--cores", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_local_rules_as_the_tests_read_them_are_rules_of_the_workflow():
    """conftest.local_rules() parses the Snakefile's block; a misparse or a renamed rule shows up here."""
    from conftest import local_rules

    result = run("snakemake", "--list-rules", "--cores", "1")
    assert result.returncode == 0, result.stderr
    rules = set(result.stdout.split())
    local = local_rules()
    assert local <= rules and {"all", "split", "evaluate"} <= local, local - rules
    assert not {"train", "tile", "augment"} & local  # heavy jobs go to the cluster
