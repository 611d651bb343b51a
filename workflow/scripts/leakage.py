"""Snakemake adapter: the leakage check's table and figure."""

from cellclass.evaluate import leakage
from cellclass.io import logs

logs.to_file(snakemake.log[0])
leakage.write_leakage(
    snakemake.params.runs,
    summary_path=snakemake.input.summary,
    runs_path=snakemake.input.runs,
    table_path=snakemake.output.table,
    figure_paths=list(snakemake.output.figure),
)
