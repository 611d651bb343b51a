"""The results in words: sentences and warnings for findings.html and the report."""

import html

import pandas as pd


def images_without_tiles(table):
    """One warning per dataset naming every image that gave no tiles (`table`: images_without_tiles.tsv rows)."""
    lines = []
    if table.empty:
        return lines
    for dataset, rows in table.groupby("dataset", sort=False):
        named = "; ".join(f"{r.sample} ({r.split} side): {r.reason}" for r in rows.itertuples())
        lines.append(f"dataset {dataset}: {len(rows)} image(s) gave no tiles and were left out — {named}")
    return lines


def read_tables(paths):
    """The rows of several tidy TSV tables, as text, in one frame."""
    frames = [pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_html(path, sections):
    """A findings page: `sections` maps a heading to its lines (warnings first, by convention)."""
    parts = ["<html><body><h2>Findings</h2>"]
    for heading, lines in sections.items():
        if not lines:
            continue
        items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
        parts.append(f"<h3>{html.escape(heading)}</h3><ul>{items}</ul>")
    parts.append("</body></html>\n")
    path.write_text("".join(parts), encoding="utf-8")
