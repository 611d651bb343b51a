"""Snakemake adapter: enrichment across runs, its figure and the findings in words."""

from cellclass.explain import explainer
from cellclass.io import logs

logs.to_file(snakemake.log[0])
explainer.write_summary(
    score_files=list(snakemake.input.scores),
    runs_table=snakemake.input.runs,
    table_path=snakemake.output.table,
    findings_path=snakemake.output.findings,
    figure_paths=[snakemake.output.figure, snakemake.output.svg],
)
