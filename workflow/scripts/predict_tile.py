"""Snakemake adapter: tile one new image exactly as the run's training images were tiled."""

import logging

from cellclass import contact_sheet, logs, predict, tilestore
from cellclass.datasets import Sample

logs.to_file(snakemake.log[0])
sample = Sample(**snakemake.params.sample)
tileset = predict.tile_like_training(sample, predict.read_run(snakemake.input.run))
tilestore.save(snakemake.output.tiles, tileset)
message = tileset.meta["skipped"] and f"skipped: {tileset.meta['skipped']}" or predict.NO_CELLS
contact_sheet.render(tileset.tiles, snakemake.output.sheet, message=message)
logging.info("%s: %d tiles", sample.id, len(tileset))
