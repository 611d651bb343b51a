"""Find the raw images of a dataset: a folder per class, a sample sheet, or the demo.

Each raw field becomes a `Sample` with a stable, path-safe id that names its
outputs, so a dataset's job list is known before any image is read.
"""

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from cellclass.io.errors import InputError

log = logging.getLogger(__name__)
SHEET_SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "sheet.schema.yaml"

UNLABELLED = ""  # the class of an image nobody has labelled
IMAGE_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg"}
LABEL_SUFFIXES = {".tif", ".tiff", ".png"}  # lossless: JPEG would blur label ids
# Files that operating systems leave behind; never images, never classes.
PHANTOM_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini", "._.DS_Store"}


@dataclass(frozen=True)
class Sample:
    id: str  # path-safe, unique in its dataset, e.g. "control/field_000"
    files: tuple[str, ...]  # one file, or one file per channel of the same field
    cls: str
    group: str  # the unit of the train/test split: the image itself by default
    split: str = ""  # a side fixed by the sample sheet (train, validation, test); "" lets the hash decide
    labels: str = ""  # kind nuclei: a user label image of the field's nuclei ("": segment them)
    cell_labels: str = ""  # and of its cells ("": grow them, if configured)
    planes: int = 1  # files per channel: a plate field's z planes, one file each, in turn per channel

    def inputs(self):
        """Every file the sample is made from: its channel files and any label images."""
        return [*self.files, *(f for f in (self.labels, self.cell_labels) if f)]


def is_phantom(path):
    name = os.path.basename(path)
    return name in PHANTOM_NAMES or name.startswith("._")


def sample_id(relative_path):
    """A path-safe id from a path relative to the dataset root, without suffix.

    Characters outside [A-Za-z0-9._-] become '_' and a short hash of the original
    keeps ids of e.g. 'a b.tif' and 'a_b.tif' distinct.
    """
    stem = os.path.splitext(Path(relative_path).as_posix())[0]
    safe = re.sub(r"[^A-Za-z0-9._/-]", "_", stem)
    safe = "/".join(part.lstrip(".") or "_" for part in safe.split("/"))
    if safe != stem:
        safe += "-" + hashlib.sha1(stem.encode()).hexdigest()[:8]
    return safe


def _check_classes(samples, where, test_only):
    classes = sorted({s.cls for s in samples})
    if not samples:
        raise InputError(f"{where}: no images found")
    if len(classes) < 2 and not test_only:
        raise InputError(f"{where}: only one class ({classes[0]}); a classifier needs at least two")
    return samples


def from_folder(root, test_only=False):
    """Samples from `root/<class>/<image>`; phantom and non-image files are skipped with a log line.

    Plain strings and os.scandir, not a Path per file: at 13,600 images pathlib took a second of every
    Snakemake start (planning a million images, over a minute).
    """
    root = Path(root)
    samples = []
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not is_phantom(p) and not p.name.startswith("."))
    for class_dir in class_dirs:
        with os.scandir(class_dir) as entries:
            listing = sorted((entry.name, entry.is_file()) for entry in entries)
        images = []
        for name, is_file in listing:
            path = f"{class_dir}/{name}"
            if is_phantom(name):
                log.warning("skipping phantom file %s", path)
            elif is_file and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                images.append(name)
            else:
                log.warning("skipping %s: not an image file (%s)", path, ", ".join(sorted(IMAGE_SUFFIXES)))
        if not images:
            raise InputError(f"class folder {class_dir} has no images")
        for name in images:
            sid = sample_id(f"{class_dir.name}/{name}")
            samples.append(Sample(sid, (f"{class_dir}/{name}",), class_dir.name, sid))
    return _check_classes(samples, f"dataset folder {root}", test_only)


def _resolve_inside(root, text, where):
    path = (root / text.strip()).resolve()
    if not path.is_relative_to(root.resolve()):
        raise InputError(f"{where}: path '{text}' escapes the dataset folder {root}")
    if not path.is_file():
        raise InputError(f"{where}: file {path} does not exist")
    return path


def read_sheet(sheet, required=("path",)):
    """The rows of a TSV sample sheet as dicts of text, each checked against schemas/sheet.schema.yaml.

    Errors name the sheet and the line (the header is line 1).
    """
    import pandas as pd  # here: a tile job imports this module for Sample and reads no sheet

    try:
        table = pd.read_csv(sheet, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise InputError(f"sample sheet {sheet}: cannot be read as a tab-separated table ({error})") from None
    table.columns = [c.strip() for c in table.columns]
    missing = sorted(set(required) - set(table.columns))
    if missing:
        raise InputError(f"sample sheet {sheet}: missing column(s) {', '.join(missing)}")
    rows = [{k: v.strip() for k, v in row.items()} for row in table.to_dict("records")]
    for row in rows:
        if "split" in row:
            row["split"] = row["split"].lower()
    validator = jsonschema.Draft202012Validator(yaml.safe_load(SHEET_SCHEMA.read_text()))
    for line, row in enumerate(rows, start=2):
        for error in validator.iter_errors(row):
            column = ".".join(map(str, error.absolute_path)) or "row"
            message = "empty" if error.validator == "pattern" and not error.instance else error.message
            raise InputError(f"sample sheet {sheet}, line {line}, column {column}: {message}")
    return rows


def _files_of(root, row, where):
    files = tuple(str(_resolve_inside(root, p, where)) for p in row["path"].split(";") if p.strip())
    if not files:
        raise InputError(f"{where}: empty path")
    for file in files:
        if Path(file).suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(f"{where}: {file} is not an image file ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def _label_files(root, row, where):
    """The row's label images (labels, cell_labels), resolved inside the dataset folder; "" where not given."""
    found = {}
    for column in ("labels", "cell_labels"):
        text = row.get(column, "")
        if not text:
            found[column] = ""
            continue
        path = _resolve_inside(root, text, f"{where}, column {column}")
        if path.suffix.lower() not in LABEL_SUFFIXES:
            raise InputError(
                f"{where}, column {column}: {path} is not a label image ({', '.join(sorted(LABEL_SUFFIXES))})"
            )
        found[column] = str(path)
    if found["cell_labels"] and not found["labels"]:
        raise InputError(f"{where}: cell_labels without labels; cells are matched to the nuclei of the labels column")
    return found


def from_sheet(sheet, root=None, test_only=False):
    """Samples from a TSV sample sheet with columns path, class and optional group and split.

    Paths are relative to `root` (default: the sheet's folder) and may not leave
    it. 'a.tif;b.tif' in the path column names one file per channel of a field.
    """
    sheet = Path(sheet)
    root = Path(root) if root else sheet.parent
    samples, seen, sides = [], {}, {}
    for line, row in enumerate(read_sheet(sheet, required=("path", "class")), start=2):
        where = f"sample sheet {sheet}, line {line}"
        if not row["class"]:
            raise InputError(f"{where}: empty path or class")
        files = _files_of(root, row, where)
        sid = sample_id(Path(files[0]).relative_to(root.resolve()))
        if sid in seen:
            raise InputError(f"{where}: {files[0]} is listed twice (first on line {seen[sid]})")
        seen[sid] = line
        group = row.get("group") or sid
        side = row.get("split", "")
        if sides.setdefault(group, (side, line))[0] != side:
            raise InputError(
                f"{where}: group {group} is on split '{side or '(empty)'}' here but "
                f"'{sides[group][0] or '(empty)'}' on line {sides[group][1]}; a group stays on one side"
            )
        samples.append(Sample(sid, files, row["class"], group, side, **_label_files(root, row, where)))
    return _check_classes(samples, f"sample sheet {sheet}", test_only)


def from_demo(root, field_names, images="images"):
    """Samples of a demo dataset, planned from its field names before the files exist:
    root/<images>/<class>/<stem>.tif."""
    root = Path(root)
    return [
        Sample(f"{cls}/{stem}", (str(root / images / cls / f"{stem}.tif"),), cls, f"{cls}/{stem}")
        for cls, stem in field_names
    ]


def unlabelled_from_folder(root):
    """Every image under `root` (any depth; phantom files skipped). An image in a sub-folder
    is taken to be known as that sub-folder's class, which is reported beside the call."""
    root = Path(root)
    samples = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        if is_phantom(path) or any(part.startswith(".") for part in relative.parts):
            log.warning("skipping %s", path)
        elif path.suffix.lower() not in IMAGE_SUFFIXES:
            log.warning("skipping %s: not an image file (%s)", path, ", ".join(sorted(IMAGE_SUFFIXES)))
        else:
            sid = sample_id(relative)
            known = relative.parts[0] if len(relative.parts) > 1 else UNLABELLED
            samples.append(Sample(sid, (str(path),), known, sid))
    if not samples:
        raise InputError(f"image folder {root}: no images found ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return samples


def unlabelled_from_sheet(sheet, root=None):
    """Images listed in a TSV with a `path` column ('a.tif;b.tif' for one file per channel) and optional `class`,
    `group` (a well: calls roll up to it) and label images (`labels`, `cell_labels`)."""
    sheet = Path(sheet)
    root = Path(root) if root else sheet.parent
    rows = read_sheet(sheet)
    if not rows:
        raise InputError(f"sample sheet {sheet}: needs a 'path' column and at least one row")
    samples = []
    for line, row in enumerate(rows, start=2):
        where = f"sample sheet {sheet}, line {line}"
        files = _files_of(root, row, where)
        sid = sample_id(Path(files[0]).relative_to(root.resolve()))
        samples.append(
            Sample(sid, files, row.get("class", ""), row.get("group") or sid, **_label_files(root, row, where))
        )
    return samples


def class_names(samples):
    return sorted({s.cls for s in samples})
