"""Snakemake adapter: the leakage check's control run, scored on its random split's test tiles."""

from cellclass.io import logs
from cellclass.learn import scoring, training

logs.to_file(snakemake.log[0])
inputs = training.random_tile_inputs(
    dataset=snakemake.params.identity["dataset"],
    shards=list(snakemake.input.shards),
    **snakemake.params.split,
)
scoring.score_run(
    run_dir=snakemake.params.run_dir,
    classes=snakemake.params.classes,
    validation=inputs["validation"],
    test_sets=inputs["test_sets"],
    options=snakemake.params.options,
    threads=snakemake.threads,
    tta=snakemake.params.tta,
)
