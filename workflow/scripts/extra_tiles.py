"""Snakemake adapter: the labelled cells of a filled label-next sheet, tiled as the dataset's own images."""

from cellclass.io import logs
from cellclass.prepare import extra_labels, tiling

logs.to_file(snakemake.log[0])
dataset = snakemake.wildcards.dataset
sheet = snakemake.input.sheet
images = extra_labels.read_sheet(sheet, snakemake.params.classes)
tilesets = extra_labels.tile_extra(images, snakemake.params.settings, sheet=sheet, dataset=dataset)
tiling.write_shard(tilesets, snakemake.output.tiles, snakemake.output.sheet, dataset=dataset)
