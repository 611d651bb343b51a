"""Snakemake adapter: attribution maps and enrichment scores of one trained run."""

from cellclass import explain, logs
from cellclass.training import configure_tensorflow

logs.to_file(snakemake.log[0])
seed = int(snakemake.wildcards.seed)
configure_tensorflow(threads=snakemake.threads, seed=seed, deterministic=True)
explain.explain_run(
    model_path=snakemake.input.model,
    predictions_path=snakemake.input.predictions,
    tile_files=list(snakemake.input.tiles),
    test_set=snakemake.params.test_set,
    classes=snakemake.params.classes,
    channels=snakemake.params.channels,
    seed=seed,
    settings=snakemake.params.settings,
    maps_path=snakemake.output.maps,
    scores_path=snakemake.output.scores,
)
