"""Snakemake adapter: per-well scores, assay quality and dose-response of a plate test set, from a model's runs."""

from cellclass.assay import wells
from cellclass.io import logs

logs.to_file(snakemake.log[0])
w = snakemake.wildcards
tiles = wells.ensemble_tiles(snakemake.input.predictions, w.test_set)
wells.write_assay(
    tiles=tiles,
    run_path=snakemake.input.runs[0],
    layout=wells.tested(snakemake.params.layout, tiles),
    positive=snakemake.params.positive,
    resamples=snakemake.params.resamples,
    fdr=snakemake.params.fdr,
    min_excess=snakemake.params.min_excess,
    outputs=snakemake.output,
    source=f"the test calls of {w.experiment}/{w.model} on {w.test_set}, averaged over its runs",
)
