"""Snakemake adapter: render one demo field with its ground-truth masks and labels."""

from cellclass.demo import synthetic
from cellclass.io import logs

logs.to_file(snakemake.log[0])
output = snakemake.output
synthetic.write_field(
    output.image,
    output.puncta,
    output.cells,
    output.nuclei,
    cls=snakemake.wildcards.cls,
    stem=snakemake.wildcards.stem,
    **snakemake.params.demo,  # pattern, seed, size, cells_per_field, channels
)
