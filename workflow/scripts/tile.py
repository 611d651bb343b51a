"""Snakemake adapter: tile one shard of raw images and draw its contact sheet."""

from cellclass.io import logs
from cellclass.io.datasets import Sample
from cellclass.prepare import tiling

logs.to_file(snakemake.log[0])
dataset = snakemake.wildcards.dataset
samples = [Sample(**s) for s in snakemake.params.samples]
tilesets = tiling.tile_shard(samples, snakemake.params.settings, dataset=dataset)
tiling.write_shard(tilesets, snakemake.output.tiles, snakemake.output.sheet, dataset=dataset)
