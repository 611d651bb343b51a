"""Snakemake adapter: bioimageio.core's test of one exported package, as a table of its checks."""

from cellclass.io import logs
from cellclass.share import export

logs.to_file(snakemake.log[0])
export.validate_package(snakemake.input[0], snakemake.output[0])
