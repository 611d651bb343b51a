"""Snakemake adapter: one plate's per-well scores laid out as on the plate."""

import pandas as pd

from cellclass.assay import plate_figures
from cellclass.io import logs

logs.to_file(snakemake.log[0])
wells = pd.read_csv(snakemake.input.wells, sep="\t", dtype={"plate": str})
plate_figures.plate_heatmap(wells, snakemake.wildcards.plate, [snakemake.output.png, snakemake.output.svg])
