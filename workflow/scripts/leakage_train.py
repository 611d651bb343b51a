"""Snakemake adapter: the leakage check's control run, trained and tested on a random split of tiles."""

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
    **inputs,
    out_dir=snakemake.params.run_dir,
    options=snakemake.params.options,
    threads=snakemake.threads,
    tta=snakemake.params.tta,
)
