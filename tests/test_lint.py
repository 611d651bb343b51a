"""Static checks CI fails on: Snakemake's linter, snakefmt's and ruff's formatting, ruff's rules, and functions a
reader holds at once."""

import ast
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


# Python that ruff checks and formats (pyproject.toml's [tool.ruff] says which rules).
PYTHON = ["workflow", "tests", "bench"]
LONGEST = 80  # lines a function may have without saying why
REASON = "Long because"  # a docstring that starts a sentence so says why a function is longer


def test_ruff_check():
    result = run("ruff", "check", *PYTHON)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_check():
    result = run("ruff", "format", "--check", *PYTHON)
    assert result.returncode == 0, result.stdout + result.stderr


def long_functions(root):
    """(file:line name, lines) of every function under `root` over LONGEST lines whose docstring does not say why."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LONGEST and REASON not in (ast.get_docstring(node) or ""):
                    found.append((f"{path.relative_to(root)}:{node.lineno} {node.name}", lines))
    return found


def test_no_function_is_longer_than_a_reader_holds(tmp_path):
    assert long_functions(REPO / "workflow/cellclass") == []
    # The check itself finds a long function, and accepts one that says why.
    body = "".join(f"    x{i} = {i}\n" for i in range(LONGEST))
    (tmp_path / "m.py").write_text(
        f'def long():\n    """Doc."""\n{body}\n\ndef said():\n    """{REASON} it is a table."""\n{body}'
    )
    assert [name for name, _ in long_functions(tmp_path)] == ["m.py:1 long"]
