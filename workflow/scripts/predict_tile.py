"""Snakemake adapter: tile one shard of new images exactly as the run's training images were tiled."""

from cellclass.io import logs
from cellclass.predict import calls
from cellclass.prepare import tiling
from cellclass.io.datasets import Sample

logs.to_file(snakemake.log[0])
samples = [Sample(**s) for s in snakemake.params.samples]
tilesets = calls.tile_shard_like_training(samples, calls.read_run(snakemake.input.run))
tiling.write_shard(tilesets, snakemake.output.tiles, snakemake.output.sheet, dataset=snakemake.wildcards.name)
