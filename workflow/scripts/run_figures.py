"""Snakemake adapter: confidence, confusion and gallery figures of one (experiment, model)."""

from cellclass import figures, logs

logs.to_file(snakemake.log[0])
figures.run_figures(
    prediction_files=list(snakemake.input.predictions),
    classes=snakemake.params.classes,
    tile_files=list(snakemake.input.tiles),
    outputs=snakemake.output,
    plots=snakemake.params.plots,
)
