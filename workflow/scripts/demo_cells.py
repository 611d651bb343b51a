"""Snakemake adapter: render one block of a demo dataset's single cells (one class) as 16-bit TIFFs."""

from cellclass.demo import patterns
from cellclass.io import logs

logs.to_file(snakemake.log[0])
patterns.write_block(
    list(snakemake.output),
    cls=snakemake.wildcards.cls,
    block=int(snakemake.wildcards.block),
    **snakemake.params.demo,  # seed, size, channels
)
