"""Snakemake adapter: per-well scores, assay quality and dose-response of one plate prediction set."""

import pandas as pd

from cellclass.assay import wells
from cellclass.io import logs

logs.to_file(snakemake.log[0])
wells.write_assay(
    tiles=pd.read_parquet(snakemake.input.tiles),
    run_path=snakemake.input.run,
    layout=snakemake.params.layout,
    positive=snakemake.params.positive,
    resamples=snakemake.params.resamples,
    max_share=snakemake.params.max_share,
    fdr=snakemake.params.fdr,
    min_excess=snakemake.params.min_excess,
    outputs=snakemake.output,
    source=f"the ensemble's calls on prediction set {snakemake.wildcards.name}",
)
