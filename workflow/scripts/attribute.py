"""Snakemake adapter: attribution maps and enrichment scores of one trained run."""

from cellclass.explain import explainer
from cellclass.io import logs

logs.to_file(snakemake.log[0])
explainer.explain_run(
    record_path=snakemake.input.record,
    model_path=snakemake.input.model,
    manifest=snakemake.input.manifest,
    tile_files=list(snakemake.input.tiles),
    mask_names=snakemake.params.mask_names,
    mask_files=snakemake.params.masks,
    settings=snakemake.params.settings,
    maps_path=snakemake.output.maps,
    scores_path=snakemake.output.scores,
    threads=snakemake.threads,
)
