"""Snakemake adapter: augment the tiles of a shard's training images."""

from cellclass.io import logs
from cellclass.io.datasets import Sample
from cellclass.prepare import augment

logs.to_file(snakemake.log[0])
augment.write_augmented(
    snakemake.input.tiles,
    [Sample(**s) for s in snakemake.params.samples],
    snakemake.params.augment,
    out_tiles=snakemake.output.tiles,
    out_sheet=snakemake.output.sheet,
    dataset=snakemake.wildcards.dataset,
)
