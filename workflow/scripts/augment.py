"""Snakemake adapter: augment the tiles of one training image."""

import logging

import numpy as np

from cellclass import augment, contact_sheet, logs, tiling, tilestore
from cellclass.datasets import Sample

logs.to_file(snakemake.log[0])
options = snakemake.params.augment
tileset = tilestore.load(snakemake.input.tiles)
settings = tileset.meta["settings"]
needs_field = (options["angles"] or options["translations"]) and settings["kind"] == "fields" and len(tileset)
field = tiling.load_field(Sample(**snakemake.params.sample), settings)[0] if needs_field else None
augmented = augment.augment(
    tileset,
    field=field,
    angles=options["angles"],
    dihedral_group=options["dihedral"],
    translations=options["translations"],
    max_shift=options["max_shift"],
    seed=options["seed"],
)
tilestore.save(snakemake.output.tiles, augmented)
parent = augmented.extra["parent"]
first_three = np.flatnonzero(parent < 3)
first_three = first_three[np.argsort(parent[first_three], kind="stable")]  # each tile's copies side by side
contact_sheet.render(augmented.tiles[first_three], snakemake.output.sheet, message="no tiles")
logging.info("dataset %s: %s: %d tiles -> %d", snakemake.wildcards.dataset, tileset.meta["sample"], len(tileset), len(augmented))
