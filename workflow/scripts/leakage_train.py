"""Snakemake adapter: the leakage check's control run, trained on a random split of tiles."""

from cellclass.io import logs
from cellclass.learn import training

logs.to_file(snakemake.log[0])
inputs = training.random_tile_inputs(
    dataset=snakemake.params.identity["dataset"],
    shards=list(snakemake.input.shards),
    train_shards=list(snakemake.input.train_shards),
    **snakemake.params.split,
)
training.train_run(
    identity=snakemake.params.identity,
    classes=snakemake.params.classes,
    train=inputs["train"],
    train_eval=inputs["train_eval"],
    validation=inputs["validation"],
    out_dir=snakemake.params.run_dir,
    options=snakemake.params.options,
    threads=snakemake.threads,
)
