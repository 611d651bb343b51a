"""Snakemake adapter: tables across all runs, and the findings in words."""

from cellclass.evaluate import tables
from cellclass.io import logs

logs.to_file(snakemake.log[0])
tables.evaluate(
    snakemake.params.runs,
    human=snakemake.params.human,
    thresholds=snakemake.params.thresholds,
    resamples=snakemake.params.resamples,
    images_without_tiles=list(snakemake.input.images_without_tiles),
    quality=list(snakemake.input.quality),
    outputs=snakemake.output,
    leakage_runs=snakemake.params.leakage_runs,
)
