"""Snakemake adapter: train and evaluate one (experiment, model, fold, seed) run."""

from cellclass.io import logs
from cellclass.learn import training

logs.to_file(snakemake.log[0])
inputs = training.run_inputs(
    dataset=snakemake.params.identity["dataset"],
    fold=snakemake.params.identity["fold"],
    shards=list(snakemake.input.shards),
    train_shards=list(snakemake.input.train_shards),
    extra=list(snakemake.input.extra),
    manifest=snakemake.input.manifest,
    other_test_sets={name: list(snakemake.input[f"test_{name}"]) for name in snakemake.params.other_test_sets},
)
training.train_run(
    identity=snakemake.params.identity,
    classes=snakemake.params.classes,
    **inputs,
    out_dir=snakemake.params.run_dir,
    options=snakemake.params.options,
    threads=snakemake.threads,
    tta=snakemake.params.tta,
)
