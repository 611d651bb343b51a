"""Snakemake adapter: a dataset's per-image quality table and figure."""

from cellclass.io import logs
from cellclass.prepare import qc_figures

logs.to_file(snakemake.log[0])
qc_figures.report_dataset(
    list(snakemake.input),
    snakemake.output.table,
    [snakemake.output.figure, snakemake.output.figure_svg],
    snakemake.wildcards.dataset,
)
