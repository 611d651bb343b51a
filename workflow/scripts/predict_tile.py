"""Snakemake adapter: tile one new image exactly as the run's training images were tiled."""

from cellclass import logs, predict, tiling
from cellclass.datasets import Sample

logs.to_file(snakemake.log[0])
tileset = predict.tile_like_training(Sample(**snakemake.params.sample), predict.read_run(snakemake.input.run))
tiling.write_tiles(tileset, snakemake.output.tiles, snakemake.output.sheet, dataset=snakemake.wildcards.name)
