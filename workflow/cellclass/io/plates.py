"""Screening plates: fields from a folder of imager files named by a pattern, or from an OME-Zarr plate, joined
to a plate map that says what each well is.

A field is one site of one well; its channels are one file each (`..._w1.tif`,
`..._w2.tif`) or one file, and its z planes may be one file each too (`p01`,
`p02`): they stay one field, projected or picked by `prepare.plane` as a
stack in one file is. Imagers name wells as B03, B-03 or r02c03, or give row
and column apart; all become B03. Its group, the unit of the split and of
every per-well number, is plate + well. The plate map gives each well a class (what
a classifier learns), a role (negative_control, positive_control, sample), a
dose and unit, and a condition; `layout` keeps these per field for the assay
statistics downstream.
"""

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pandas as pd
import yaml

from cellclass.io.datasets import Sample, is_phantom
from cellclass.io.errors import InputError

log = logging.getLogger(__name__)
SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "platemap.schema.yaml"
LAYOUT_COLUMNS = ["sample", "plate", "well", "row", "column", "site", "role", "dose", "unit", "condition", "class"]


@dataclass(frozen=True)
class Field:
    plate: str
    well: str  # canonical: row letters and a two-digit column, e.g. B03
    site: str
    # One file per channel, in channel order (or one file of every channel); with planes > 1 each channel's
    # plane files in turn.
    files: tuple[str, ...]
    planes: int = 1  # files per channel: z planes an imager writes one file each


def safe_name(plate):
    """A plate name as it may appear in file names and ids: characters outside [A-Za-z0-9._-] become '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(plate)) or "plate"


def canonical_well(text):
    """'b3', 'B03', 'B003', 'B-03', 'B_3' and 'r02c03' (row and column numbers) -> 'B03'; None when `text` is
    no well name."""
    text = str(text).strip()
    numbered = re.fullmatch(r"[Rr](\d+)[Cc](\d+)", text)
    if numbered:
        return well_name(*numbered.groups())
    match = re.fullmatch(r"([A-Za-z]{1,2})[-_ ]?0*([1-9][0-9]?)", text)
    return f"{match[1].upper()}{int(match[2]):02d}" if match else None


def well_name(row, column):
    """The canonical well of a row (letters, or a number from 1: '02' is B) and a column number: ('02', '3') and
    ('b', '03') -> 'B03'; None when either is none."""
    row, column = str(row).strip(), str(column).strip()
    if row.isdigit():
        number, row = int(row), ""
        while number > 0:  # 1 -> A, 26 -> Z, 27 -> AA
            number, rest = divmod(number - 1, 26)
            row = chr(ord("A") + rest) + row
    if not re.fullmatch(r"[A-Za-z]{1,2}", row) or not column.isdigit():
        return None
    return canonical_well(f"{row}{column}")


def well_position(well):
    """(row index, column index) from 0 of a canonical well name: A01 -> (0, 0), AA02 -> (26, 1)."""
    letters, number = re.fullmatch(r"([A-Z]+)(\d+)", well).groups()
    row = 0
    for letter in letters:
        row = row * 26 + ord(letter) - ord("A") + 1
    return row - 1, int(number) - 1


def read_plate_map(path):
    """The plate map as a table (plate, well canonical, condition, class, dose float, unit, role), each row checked
    against schemas/platemap.schema.yaml. Errors name the file, the line (the header is line 1) and the field."""
    path = Path(path)
    separator = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        table = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise InputError(
            f"plate map {path}: cannot be read as a {'CSV' if separator == ',' else 'TSV'} table ({error})"
        ) from None
    table.columns = [c.strip().lower() for c in table.columns]
    if "well" not in table.columns:
        raise InputError(f"plate map {path}: no 'well' column (columns: {', '.join(table.columns)})")
    if "plate" not in table.columns:
        table.insert(0, "plate", "")
    table = table.map(str.strip)
    validator = jsonschema.Draft202012Validator(yaml.safe_load(SCHEMA.read_text()))
    seen = {}
    for line, row in enumerate(table.to_dict("records"), start=2):
        for error in validator.iter_errors(row):
            field = ".".join(map(str, error.absolute_path)) or "row"
            raise InputError(f"plate map {path}, line {line}, field {field}: {error.message}")
        key = (row["plate"], canonical_well(row["well"]))
        if key in seen:
            raise InputError(
                f"plate map {path}, line {line}, field well: plate {key[0] or '(unnamed)'} well {key[1]} is listed "
                f"twice (first on line {seen[key]})"
            )
        seen[key] = line
    table["well"] = table["well"].map(canonical_well)
    table["line"] = range(2, len(table) + 2)
    for column in ("condition", "class", "unit", "role"):
        if column not in table.columns:
            table[column] = ""
    table["dose"] = pd.to_numeric(table["dose"], errors="coerce") if "dose" in table.columns else float("nan")
    return table


def fields_from_folder(folder, pattern, plate_name):
    """Fields of a folder of imager files whose paths (relative, '/'-separated) match `pattern`, a regular
    expression with named groups for the well, `well` (B03, B-03, r02c03) or `row` (letters, or numbers from 1)
    and `column`, and optionally `site` (or `field`), `channel`, `plane` and `plate` (else `plate_name`).

    Files of one (plate, well, site) are its channels, in channel order, each of its planes in turn; a site
    without a channel or plane that other sites have is an error naming it. Files that do not match are logged
    and left out.
    """
    folder = Path(folder)
    regex = re.compile(pattern)
    check_pattern(regex)
    sites = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        match = regex.fullmatch(relative)
        if is_phantom(path) or not match:
            log.info("plate folder %s: %s does not match the file-name pattern; left out", folder, relative)
            continue
        groups = match.groupdict()
        well = _well(path, groups)
        site = groups.get("site") or groups.get("field") or "1"
        key = (safe_name(groups.get("plate") or plate_name), well, str(int(site)) if site.isdigit() else site)
        image = (groups.get("channel") or "", groups.get("plane") or "")
        if image in sites.setdefault(key, {}):
            raise InputError(
                f"{path} and {sites[key][image]}: both are plate {key[0]} well {well} site {key[2]} "
                f"channel {image[0] or '(all)'}" + (f" plane {image[1]}" if image[1] else "")
            )
        sites[key][image] = str(path)
    if not sites:
        raise InputError(f"plate folder {folder}: no file matches the file-name pattern {pattern!r}")
    channels = sorted({c for files in sites.values() for c, _ in files}, key=lambda c: (len(c), c))
    planes = sorted({p for files in sites.values() for _, p in files}, key=lambda p: (len(p), p))
    fields = []
    for (plate, well, site), files in sorted(sites.items()):
        for kind, wanted, index in (("channel", channels, 0), ("plane", planes, 1)):
            missing = [w for w in wanted if w not in {image[index] for image in files}]
            if missing:
                raise InputError(
                    f"plate folder {folder}: plate {plate} well {well} site {site} has no file for {kind} "
                    f"{', '.join(missing)} (other sites have {kind}s {', '.join(wanted)})"
                )
        missing = [(c, p) for c in channels for p in planes if (c, p) not in files]
        if missing:
            raise InputError(
                f"plate folder {folder}: plate {plate} well {well} site {site} has no file for "
                f"channel {missing[0][0]} plane {missing[0][1]}"
            )
        fields.append(Field(plate, well, site, tuple(files[c, p] for c in channels for p in planes), len(planes)))
    return fields


def check_pattern(regex):
    """A file-name pattern names the well once: as `well`, or as `row` and `column`; and the site once."""
    groups = set(regex.groupindex)
    example = "e.g. (?P<well>[A-P]\\d{2}) or r(?P<row>\\d{2})c(?P<column>\\d{2})"
    if "well" in groups and groups & {"row", "column"}:
        raise InputError(
            f"file-name pattern {regex.pattern!r}: name the well either as 'well' or as 'row' and 'column', not both"
        )
    if "well" not in groups and not {"row", "column"} <= groups:
        raise InputError(
            f"file-name pattern {regex.pattern!r}: needs a named group 'well', or 'row' and 'column', {example}"
        )
    if {"site", "field"} <= groups:
        raise InputError(f"file-name pattern {regex.pattern!r}: 'site' and 'field' are the same; name one")


def _well(path, groups):
    """The canonical well a matched file name gives, or an error naming the file."""
    if "well" in groups:
        well = canonical_well(groups["well"])
        if well is None:
            raise InputError(
                f"{path}: '{groups['well']}' matched as the well, but it is no well name (e.g. B03, B-03, b3 or r02c03)"
            )
        return well
    well = well_name(groups["row"], groups["column"])
    if well is None:
        raise InputError(
            f"{path}: row '{groups['row']}' and column '{groups['column']}' matched, but they name no "
            "well (rows: letters, or numbers from 1; columns: numbers from 1)"
        )
    return well


def fields_from_zarr(store):
    """Fields of an OME-Zarr (NGFF) HCS plate: its wells and each well's images from the plate's own metadata,
    read by ome-zarr; each field's path is that image inside the store."""
    from ome_zarr.io import parse_url

    store = Path(store)
    location = parse_url(str(store)) if store.is_dir() else None
    plate = location.root_attrs.get("plate") if location is not None else None
    if not plate:
        raise InputError(f"OME-Zarr plate {store}: no plate metadata (is it an NGFF HCS plate?)")
    name = safe_name(plate.get("name") or store.stem)
    fields = []
    for well in plate.get("wells", []):
        row, column = well["path"].split("/")
        well_location = parse_url(str(store / row / column))
        images = (well_location.root_attrs.get("well") or {}).get("images", []) if well_location else []
        if not images:
            raise InputError(f"OME-Zarr plate {store}: well {well['path']} lists no images")
        for index, image in enumerate(images):
            fields.append(
                Field(
                    name, canonical_well(f"{row}{column}"), str(index + 1), (str(store / row / column / image["path"]),)
                )
            )
    return fields


def join(fields, plate_map, map_path, *, labelled_only):
    """Samples of the fields of wells the plate map describes, and their layout (one row per sample).

    A field's well must be in the map, and every well in the map must have fields: either is an error
    naming the file, the line and the well. With `labelled_only` (a training dataset) wells without a class
    are left out with a log line: they are there to be predicted.
    """
    names = {f.plate for f in fields}
    by_well = {}
    for row in plate_map.to_dict("records"):
        plate = safe_name(row["plate"]) if row["plate"] else (next(iter(names)) if len(names) == 1 else "")
        by_well[(plate, row["well"])] = row
    for field in fields:
        if (field.plate, field.well) not in by_well:
            raise InputError(
                f"plate map {map_path}: no row for plate {field.plate} well {field.well} ({', '.join(field.files)})"
            )
    imaged = {(f.plate, f.well) for f in fields}
    for (plate, well), row in by_well.items():
        if (plate, well) not in imaged:
            raise InputError(
                f"plate map {map_path}, line {row['line']}, field well: plate {plate or '(unnamed)'} "
                f"well {well} has no images"
            )
    samples, layout = [], []
    for field in fields:
        row = by_well[(field.plate, field.well)]
        if labelled_only and not row["class"]:
            log.info("plate %s well %s: no class in the plate map; not trained on", field.plate, field.well)
            continue
        sid = f"{field.plate}/{field.well}/s{field.site}"
        group = f"{field.plate}/{field.well}"
        samples.append(Sample(sid, field.files, row["class"], group, planes=field.planes))
        position = well_position(field.well)
        layout.append(
            {
                "sample": sid,
                "plate": field.plate,
                "well": field.well,
                "row": position[0],
                "column": position[1],
                "site": field.site,
                "role": row["role"],
                "dose": row["dose"],
                "unit": row["unit"],
                "condition": row["condition"],
                "class": row["class"],
            }
        )
    if not samples:
        raise InputError(f"plate map {map_path}: no well has a class to train on")
    return samples, layout


def from_plate(spec, *, labelled_only):
    """(samples, layout) of a plate dataset or prediction set: `spec` has `map` and either `path` + `pattern` (a
    folder of imager files) or `zarr` (an OME-Zarr plate)."""
    if "zarr" in spec:
        fields = fields_from_zarr(spec["zarr"])
    else:
        fields = fields_from_folder(spec["path"], spec["pattern"], spec.get("name") or Path(spec["path"]).name)
    return join(fields, read_plate_map(spec["map"]), spec["map"], labelled_only=labelled_only)
