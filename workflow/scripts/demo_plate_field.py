"""Snakemake adapter: render one well of a demo screening plate, one TIFF per channel."""

from cellclass.demo import synthetic
from cellclass.io import logs

logs.to_file(snakemake.log[0])
synthetic.write_plate_field(snakemake.output.channels, well=snakemake.wildcards.well, spec=snakemake.params.spec)
