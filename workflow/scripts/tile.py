"""Snakemake adapter: tile one raw image and draw its contact sheet."""

from cellclass import logs, tiling
from cellclass.datasets import Sample

logs.to_file(snakemake.log[0])
dataset = snakemake.wildcards.dataset
tileset = tiling.tile_sample(Sample(**snakemake.params.sample), snakemake.params.settings, dataset=dataset)
tiling.write_tiles(tileset, snakemake.output.tiles, snakemake.output.sheet, dataset=dataset)
