"""Snakemake adapter: tile one shard of new images exactly as the run's training images were tiled."""

from cellclass.io import logs
from cellclass.io.datasets import Sample
from cellclass.predict import tiling_check
from cellclass.prepare import tiling

logs.to_file(snakemake.log[0])
samples = [Sample(**s) for s in snakemake.params.samples]
tilesets = tiling_check.tile_shard_like_training(samples, tiling_check.read_run(snakemake.input.run))
tiling.write_shard(tilesets, snakemake.output.tiles, snakemake.output.sheet, dataset=snakemake.wildcards.name)
