"""Snakemake adapter: confidence, confusion and gallery figures of one (experiment, model)."""

from cellclass.evaluate import figures
from cellclass.io import logs

logs.to_file(snakemake.log[0])
figures.run_figures(
    prediction_files=list(snakemake.input.predictions),
    classes=snakemake.params.classes,
    tile_files=list(snakemake.input.tiles),
    outputs=snakemake.output,
    plots=snakemake.params.plots,
)
