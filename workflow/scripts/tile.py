"""Snakemake adapter: tile one raw image and draw its contact sheet."""

import logging

from cellclass import contact_sheet, logs, tiling, tilestore
from cellclass.datasets import Sample

logs.to_file(snakemake.log[0])
sample = Sample(**snakemake.params.sample)
tileset = tiling.tile_sample(sample, snakemake.params.settings, dataset=snakemake.wildcards.dataset)
tilestore.save(snakemake.output.tiles, tileset)
message = tileset.meta["skipped"] and f"skipped: {tileset.meta['skipped']}" or "no cells found"
contact_sheet.render(tileset.tiles, snakemake.output.sheet, message=message)
logging.info("dataset %s: %s: %d tiles", snakemake.wildcards.dataset, sample.id, len(tileset))
