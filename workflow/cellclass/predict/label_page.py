"""The labelling page: label_next.html, one self-contained file (images embedded as data URIs; no server, no
network) showing each chosen cell with a little of its field around it, its probabilities and its well.
Number keys or buttons assign a class; Save downloads the sheet with the class column filled, its other columns
exactly as label_next.tsv has them.
"""

import base64
import html
import io
import json

import numpy as np
from PIL import Image, ImageDraw

from cellclass.io.contact_sheet import OUTLINE, to_rgb

SHOWN_SIDE = 192  # display pixels of a crop's longer side


def display_field(field):
    """The field stretched per channel between its 1st and 99.8th percentiles, for eyes only: a field scaled by
    its bit depth (as a plate's) is otherwise near black."""
    low, high = np.percentile(field, [1, 99.8], axis=(0, 1))
    return np.clip((field - low) / np.maximum(high - low, 1e-6), 0, 1)


def field_crop(field, row, col, size, margin, whole=False):
    """uint8 RGB of the field around the tile at (row, col) of side `size`, `margin` pixels beyond it on every
    side (black beyond the field's edge), with the tile outlined; the `whole` image for a single-cell image."""
    if whole:
        return _outlined(to_rgb(field[None])[0], None)
    pad = margin + size
    padded = np.pad(field, ((pad, pad), (pad, pad), (0, 0)))
    top, left = row + pad - margin, col + pad - margin
    crop = padded[top : top + size + 2 * margin, left : left + size + 2 * margin]
    return _outlined(to_rgb(crop[None])[0], (margin, margin, margin + size - 1, margin + size - 1))


def _outlined(rgb, box):
    image = Image.fromarray(rgb)
    scale = max(1, SHOWN_SIDE // max(image.size))
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    if box is not None:
        ImageDraw.Draw(image).rectangle([v * scale for v in box], outline=OUTLINE, width=max(1, scale // 2))
    return np.asarray(image)


def data_uri(rgb):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


STYLE = """
body { font-family: sans-serif; margin: 1em; }
#bar { position: sticky; top: 0; background: #fff; padding: .5em 0; border-bottom: 1px solid #ccc; }
#cells { display: flex; flex-wrap: wrap; gap: .6em; margin-top: .6em; }
.cell { border: 2px solid #ccc; padding: .4em; width: 220px; font-size: 12px; cursor: pointer; }
.cell.current { border-color: #06c; }
.cell.done { background: #eef7ee; }
.cell img { display: block; width: 192px; image-rendering: pixelated; }
.cell button { font-size: 11px; margin: 2px 2px 0 0; }
.chosen { font-weight: bold; margin-top: .3em; }
"""

SCRIPT = """
const data = JSON.parse(document.getElementById("sheet").textContent);
const classColumn = data.columns.indexOf("class");
const labels = data.rows.map(row => row[classColumn]);
const cells = Array.from(document.querySelectorAll(".cell"));
let current = 0;
function show(i) {
  cells[i].querySelector(".chosen span").textContent = labels[i] || "(none)";
  cells[i].classList.toggle("done", labels[i] !== "");
  document.getElementById("count").textContent = labels.filter(l => l !== "").length + " of " + labels.length + " labelled";
}
function select(i) {
  current = Math.max(0, Math.min(cells.length - 1, i));
  cells.forEach(c => c.classList.remove("current"));
  cells[current].classList.add("current");
  cells[current].scrollIntoView({block: "nearest"});
}
function assign(i, name) {
  labels[i] = name;
  show(i);
  if (name !== "") select(i + 1);
}
cells.forEach((cell, i) => {
  cell.addEventListener("click", () => select(i));
  cell.querySelectorAll("button.assign").forEach(button => button.addEventListener("click", event => {
    event.stopPropagation();
    select(i);
    assign(i, button.dataset.class);
  }));
  show(i);
});
document.addEventListener("keydown", event => {
  if (event.key >= "1" && event.key <= "9" && Number(event.key) <= data.classes.length) {
    assign(current, data.classes[Number(event.key) - 1]);
  } else if (event.key === "0" || event.key === "Backspace") {
    assign(current, "");
  } else if (event.key === "ArrowRight" || event.key === "ArrowDown") {
    select(current + 1);
  } else if (event.key === "ArrowLeft" || event.key === "ArrowUp") {
    select(current - 1);
  } else {
    return;
  }
  event.preventDefault();
});
function sheet() {
  const lines = [data.columns.join("\\t")];
  data.rows.forEach((row, i) => {
    const filled = row.slice();
    filled[classColumn] = labels[i];
    lines.push(filled.join("\\t"));
  });
  return lines.join("\\n") + "\\n";
}
document.getElementById("save").addEventListener("click", () => {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([sheet()], {type: "text/tab-separated-values"}));
  link.download = data.filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
});
if (cells.length) select(0);
"""


def page(rows, crops, classes, *, title, filename="label_next.tsv"):
    """The page's HTML. `rows`: the sheet as strings (a DataFrame read with dtype=str), `crops`: a data URI
    per row, `classes`: the experiment's classes, in the order of the number keys."""
    e = html.escape
    cards = []
    for i, (row, crop) in enumerate(zip(rows.to_dict("records"), crops)):
        where = f"well {row['plate']} {row['well']}" if row.get("well") else f"group {row['group']}"
        probabilities = ", ".join(f"{c} {float(row[f'p_{c}']):.2f}" for c in classes)
        buttons = "".join(f'<button class="assign" data-class="{e(c)}">{k + 1 if k < 9 else ""} {e(c)}</button>'
                          for k, c in enumerate(classes))
        cards.append(
            f'<div class="cell" id="cell-{i}" data-tile="{e(row["tile"])}">'
            f'<img src="{crop}" alt="{e(row["tile"])}">'
            f'<div>#{row["rank"]} {e(row["tile"])}</div><div>{e(where)}, image {e(row["image"])}</div>'
            f"<div>p: {e(probabilities)}; call {e(row['call'])}</div><div><i>{e(row['reason'])}</i></div>"
            f'<div>{buttons}<button class="assign" data-class="">clear</button></div>'
            f'<div class="chosen">class: <span></span></div></div>'
        )
    keys = ", ".join(f"{k + 1} {c}" for k, c in enumerate(classes[:9]))
    sheet = json.dumps({"columns": list(rows.columns), "rows": rows.to_numpy().tolist(), "classes": list(classes),
                        "filename": filename}).replace("</", "<\\/")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n"
        f'<div id="bar"><b>{e(title)}</b> &mdash; click a cell, then a class button or a key ({e(keys)}; '
        f"0 clears; arrows move). The yellow box is the tile the network saw; contrast is stretched per field. "
        f'<button id="save">Save</button> <span id="count"></span></div>\n'
        f'<div id="cells">\n' + "\n".join(cards) + "\n</div>\n"
        f'<script id="sheet" type="application/json">{sheet}</script>\n<script>{SCRIPT}</script>\n</body></html>\n'
    )
