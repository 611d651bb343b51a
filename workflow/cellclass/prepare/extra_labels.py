"""Extra labelled cells: a label-next sheet the user filled in (datasets.<name>.extra_labels), its cells cut from
their images exactly as the dataset's own are, to join the training side of every run.

The sheet (results/predict/<set>/label_next.tsv, its `class` column filled) names cells of a prediction set's
images by tile id. Those images are no sample of the dataset: each gets a group of its own (`extra:<image>`),
outside the split, so the dataset's split never moves and no extra cell is ever validated or tested on.
"""

import dataclasses
import logging
import os
from dataclasses import dataclass

import pandas as pd

from cellclass.io.datasets import Sample
from cellclass.io.errors import InputError
from cellclass.prepare import tiling

# The columns the round trip reads; the sheet's others (probabilities, rank, reason) only inform the user.
COLUMNS = ("tile", "image", "files", "class")
log = logging.getLogger(__name__)
PREFIX = "extra:"  # of an extra image's sample id and group: never a dataset's, so no side of its split


@dataclass(frozen=True)
class ExtraImage:
    """One image of the sheet with labelled cells: its id in the prediction set, raw files, tile id -> class."""

    image: str
    files: tuple[str, ...]
    labels: dict

    def sample(self):
        return Sample(self.image, self.files, "", PREFIX + self.image)


def read_sheet(path, classes):
    """The images of a filled label-next sheet with their labelled cells; rows with an empty `class` are
    skipped. A class the experiment lacks, a tile named twice, or an image with two sets of files is an
    InputError naming the sheet and line."""
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputError(f"{path}: not a readable label-next sheet ({error})") from None
    missing = [c for c in COLUMNS if c not in table]
    if missing:
        raise InputError(
            f"{path}: no column {', '.join(missing)}; a label-next sheet (results/predict/<set>/"
            f"label_next.tsv) has {', '.join(COLUMNS)} among its columns"
        )
    images, seen = {}, {}
    for index, row in table.iterrows():
        line = index + 2  # the header is line 1
        cls = row["class"].strip()
        if not cls:
            continue
        where = f"{path}, line {line}"
        if cls not in classes:
            raise InputError(
                f"{where}: class '{cls}' is not a class of the experiment ({', '.join(classes)}); "
                "write one of them, or leave it empty to skip the cell"
            )
        tile, image = row["tile"].strip(), row["image"].strip()
        if tile in seen:
            raise InputError(f"{where}: tile {tile} is labelled again (first on line {seen[tile]})")
        seen[tile] = line
        files = tuple(f for f in row["files"].split(";") if f)
        if not files:
            raise InputError(f"{where}: no files for image {image}")
        known = images.setdefault(image, ExtraImage(image, files, {}))
        if known.files != files:
            raise InputError(
                f"{where}: image {image} has files {';'.join(files)}, an earlier row {';'.join(known.files)}"
            )
        known.labels[tile] = cls
    log.info(
        "%s: %d labelled cell(s) in %d image(s); %d row(s) left empty, skipped",
        path,
        len(seen),
        len(images),
        len(table) - len(seen),
    )
    return list(images.values())


def _same_file(path):
    return os.path.normpath(os.path.abspath(path))


def refuse_dataset_images(images, samples, sheet, dataset):
    """An InputError if an extra image is also an image of the dataset (the same files): its cells are labelled
    there already and may be on a test side, so training on them again would leak."""
    own = {tuple(map(_same_file, s.files)): s.id for s in samples}
    for image in images:
        sample_id = own.get(tuple(map(_same_file, image.files)))
        if sample_id is not None:
            raise InputError(
                f"{sheet}: image {image.image} ({';'.join(image.files)}) is image {sample_id} of "
                f"dataset {dataset}, whose split decides its side; label cells of other images only"
            )


def tile_extra(images, settings, *, sheet, dataset=""):
    """The labelled cells of `images` (read_sheet), tiled with the dataset's prepare `settings` as its own
    images are: one TileSet per image and class, its meta's class the one filled in, sample and group
    `extra:<image>`. A tile id the image does not give (tiled otherwise, or another image) is an InputError."""
    tilesets = []
    for image in images:
        tileset = tiling.tile_sample(image.sample(), settings, dataset=dataset)
        source = f"{sheet}: image {image.image} ({';'.join(image.files)})"
        if tileset.meta["skipped"]:
            raise InputError(f"{source} could not be tiled: {tileset.meta['skipped']}")
        position = {tile: i for i, tile in enumerate(tileset.tile_ids())}
        if len(tileset) == 1 and tileset.rows[0] == -1:
            position[image.image] = 0  # a single-cell image: its one tile may go by the image's id
        unknown = [tile for tile in image.labels if tile not in position]
        if unknown:
            raise InputError(
                f"{source}: no tile {unknown[0]} among its {len(tileset)} tiles as dataset {dataset} "
                f"tiles it ({settings['kind']}, {settings['tile_size']} px); was the sheet made for "
                "another experiment?"
            )
        meta = {**tileset.meta, "sample": PREFIX + image.image, "extra_labels": str(sheet)}
        for cls in sorted(set(image.labels.values())):
            rows = sorted(position[tile] for tile, c in image.labels.items() if c == cls)
            tilesets.append(dataclasses.replace(tileset.subset(rows), meta={**meta, "class": cls}))
    return tilesets


def counts(tilesets, classes):
    """Extra tiles per class (every class, 0 where none), for metrics.json."""
    per_class = dict.fromkeys(classes, 0)
    for tileset in tilesets:
        per_class[tileset.meta["class"]] += len(tileset)
    return per_class
