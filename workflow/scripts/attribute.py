"""Snakemake adapter: attribution maps and enrichment scores of one trained run."""

from cellclass import explain, logs
from cellclass.runtime import configure_tensorflow

logs.to_file(snakemake.log[0])
configure_tensorflow(threads=snakemake.threads, seed=snakemake.params.identity["seed"], deterministic=True)
explain.explain_run(
    identity=snakemake.params.identity,
    model_path=snakemake.input.model,
    predictions_path=snakemake.input.predictions,
    tile_files=list(snakemake.input.tiles),
    mask_files=snakemake.params.masks,
    test_set=snakemake.params.test_set,
    classes=snakemake.params.classes,
    channels=snakemake.params.channels,
    settings=snakemake.params.settings,
    maps_path=snakemake.output.maps,
    scores_path=snakemake.output.scores,
)
