"""Pages come from the Jinja2 templates in cellclass/templates: no module builds HTML in f-strings, and data
(a file or class name) shows as text, escaped, never as markup."""

import ast
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cellclass.evaluate import findings
from cellclass.predict import label_page
from cellclass.templates import environment, render

PACKAGE = Path(findings.__file__).resolve().parents[1]
TAG = re.compile(r"<(p|table|tr|td|th|div|html|body|head|ul|ol|li|h[1-6]|img|span|b|i|a|br|button|script|style)[\s>/]")
HOSTILE = "<script>alert(1)</script>&.tif"


def html_in_f_strings(source):
    """The line numbers of the f-strings in Python `source` whose literal parts hold an HTML tag."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):
            literal = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
            if TAG.search(literal):
                lines.append(node.lineno)
    return lines


def test_no_module_builds_html_in_f_strings():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if lines := html_in_f_strings(path.read_text(encoding="utf-8")):
            found[name] = lines
    assert not found, f"HTML built in f-strings (move it to cellclass/templates): {found}"
    # The check itself sees a tag in an f-string, and not a config key in angle brackets.
    assert html_in_f_strings('x = f"<li>{y}</li>"') == [1] and not html_in_f_strings('x = f"predict.<set>: {y}"')


@pytest.mark.parametrize("name", sorted(environment().list_templates()))
def test_every_template_compiles(name):
    environment().get_template(name)


def test_a_file_name_with_markup_shows_escaped_on_the_findings_page(tmp_path):
    empty = pd.DataFrame(
        {"dataset": ["d"], "sample": [HOSTILE], "split": ["test"], "fold": [0], "reason": ["no foreground"]}
    )
    page = tmp_path / "findings.html"
    findings.write_html(page, {"Warnings": findings.images_without_tiles(empty), "Results": []})
    text = page.read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;.tif" in text and "<script" not in text
    assert "<h3>Warnings</h3>" in text and "Results" not in text  # a section without lines is left out


def test_a_tile_name_with_markup_shows_escaped_on_the_label_page():
    """The page's own two scripts are the only ones: the name is escaped in the markup and in the JSON sheet."""
    rows = pd.DataFrame(
        {
            "tile": [HOSTILE],
            "image": ["a&b"],
            "group": ["g"],
            "p_x": ["0.7"],
            "p_y": ["0.3"],
            "call": ["x"],
            "rank": ["1"],
            "reason": ["</script>"],
            "class": [""],
        }
    )
    crop = label_page.data_uri(np.zeros((4, 4, 3), np.uint8))
    page = label_page.page(rows, [crop], ["x", "y"], title="Label <next>")
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert 'data-tile="&lt;script&gt;alert(1)&lt;/script&gt;&amp;.tif"' in page and "image a&amp;b" in page
    assert "<title>Label &lt;next&gt;</title>" in page


def test_markdown_is_not_escaped():
    assert render("package_readme.md", **readme_context(title="A & <b>")).startswith("# A & <b>\n")


def readme_context(**given):
    context = {
        "title": "t",
        "description": "d",
        "experiment": "e",
        "model": "m",
        "ensemble_note": "one run",
        "classes": ["a"],
        "shape": [8, 8, 1],
        "channels": ["c0"],
        "input_note": "n",
        "tiling": "- t",
        "dataset": "d",
        "member_table": "|",
        "n_members": 1,
        "accuracy": "|",
        "recall": "|",
        "tta_note": "n",
        "calibration_note": "n",
        "n_test": 2,
        "test_run": "fold0_seed0",
        "onnx": False,
    }
    return {**context, **given}
