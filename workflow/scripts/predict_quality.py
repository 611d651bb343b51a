"""Snakemake adapter: a prediction set's per-image quality, against its training images."""

from cellclass.io import logs
from cellclass.predict import image_shift

logs.to_file(snakemake.log[0])
image_shift.report(
    list(snakemake.input.tiles),
    snakemake.input.reference,
    snakemake.output.table,
    [snakemake.output.figure, snakemake.output.figure_svg],
    snakemake.wildcards.name,
)
