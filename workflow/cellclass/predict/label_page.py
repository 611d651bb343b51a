"""The labelling page: label_next.html, one self-contained file (images embedded as data URIs; no server, no
network) showing each chosen cell with a little of its field around it, its probabilities and its well.
Number keys or buttons assign a class; Save downloads the sheet with the class column filled, its other columns
exactly as label_next.tsv has them.
"""

import base64
import io

import numpy as np
from PIL import Image, ImageDraw

from cellclass.io.contact_sheet import OUTLINE, to_rgb
from cellclass.templates import render

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


def page(rows, crops, classes, *, title, filename="label_next.tsv"):
    """The page's HTML. `rows`: the sheet as strings (a DataFrame read with dtype=str), `crops`: a data URI
    per row, `classes`: the experiment's classes, in the order of the number keys."""
    cards = []
    for row, crop in zip(rows.to_dict("records"), crops):
        where = f"well {row['plate']} {row['well']}" if row.get("well") else f"group {row['group']}"
        probabilities = ", ".join(f"{c} {float(row[f'p_{c}']):.2f}" for c in classes)
        cards.append(
            {
                "tile": row["tile"],
                "crop": crop,
                "rank": row["rank"],
                "where": where,
                "image": row["image"],
                "probabilities": probabilities,
                "call": row["call"],
                "reason": row["reason"],
            }
        )
    keys = ", ".join(f"{k + 1} {c}" for k, c in enumerate(classes[:9]))
    sheet = {
        "columns": list(rows.columns),
        "rows": rows.to_numpy().tolist(),
        "classes": list(classes),
        "filename": filename,
    }
    return render("label_next.html", title=title, cards=cards, classes=list(classes), keys=keys, sheet=sheet)
