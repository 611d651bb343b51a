"""Snakemake adapter: train one (experiment, model, fold, seed) run and save it."""

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
)
training.train_run(
    identity=snakemake.params.identity,
    classes=snakemake.params.classes,
    train=inputs["train"],
    train_eval=inputs["train_eval"],
    validation=inputs["validation"],
    extra=inputs["extra"],
    out_dir=snakemake.params.run_dir,
    options=snakemake.params.options,
    threads=snakemake.threads,
)
