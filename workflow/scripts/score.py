"""Snakemake adapter: score one saved run on its calibration part and every test set."""

from cellclass.io import logs
from cellclass.learn import scoring, training

logs.to_file(snakemake.log[0])
inputs = training.run_inputs(
    dataset=snakemake.params.identity["dataset"],
    fold=snakemake.params.identity["fold"],
    shards=list(snakemake.input.shards),
    manifest=snakemake.input.manifest,
    other_test_sets={name: list(snakemake.input[f"test_{name}"]) for name in snakemake.params.other_test_sets},
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
