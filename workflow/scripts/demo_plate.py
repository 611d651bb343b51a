"""Snakemake adapter: render every well of a demo screening plate, one TIFF per channel."""

from cellclass.demo import synthetic
from cellclass.io import logs

logs.to_file(snakemake.log[0])
synthetic.write_plate(snakemake.output, spec=snakemake.params.spec)
