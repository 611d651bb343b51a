"""The documentation: the MkDocs site builds with no broken link, the README stays a front door, and
config/README.md names exactly the config's top-level keys."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MKDOCS = Path(sys.executable).parent / "mkdocs"


def test_the_site_builds_strictly(tmp_path):
    """--strict fails on any warning: a page missing from the nav, a link to a page or anchor that is not there."""
    result = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site/clusters/index.html").is_file()


def test_the_readme_is_a_front_door_not_the_manual():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; the manual belongs in docs/"


def test_the_rerun_table_has_a_row_for_every_edit_the_rerun_test_makes():
    """docs/clusters.md's table says in words what tests/test_workflow_train.py asserts: each edit it makes has a
    row naming that key, and each rule the test sees rerun is named in its row."""
    from test_workflow_train import RERUNS

    text = (REPO / "docs/clusters.md").read_text()
    match = re.search(r"<!-- rerun-matrix:start -->\n(.*?)<!-- rerun-matrix:end -->", text, re.DOTALL)
    assert match, "docs/clusters.md: rerun-matrix markers missing"
    rows = [line for line in match.group(1).splitlines() if line.startswith("| `")]
    for key, _, jobs in RERUNS:
        last = key.split(".")[-1]
        [row] = [
            r
            for r in rows
            if any(f"`{k}" in r.split("|")[1] for k in (key, f"{key.split('.')[0]}.<")) and last in r.split("|")[1]
        ]
        named = set(re.findall(r"`(\w+)`", row.split("|")[2]))
        assert set(jobs) - {"all"} <= named, (key, set(jobs) - {"all"} - named)


def table_keys(markdown, heading):
    """The first column of the table under `heading`, backticks stripped (header and separator rows skipped)."""
    section = markdown.split(heading, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append(line.split("|")[1].strip())
    return [cell.strip("`") for cell in rows[2:]]


def test_config_readme_lists_every_top_level_key_and_no_other():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    listed = table_keys((REPO / "config/README.md").read_text(), "## Top-level keys")
    assert len(listed) == len(set(listed)), f"config/README.md lists a key twice: {listed}"
    assert set(listed) == set(schema["properties"]), (
        f"config/README.md misses {sorted(set(schema['properties']) - set(listed))}, "
        f"lists keys the schema lacks {sorted(set(listed) - set(schema['properties']))}"
    )
