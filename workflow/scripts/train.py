"""Snakemake adapter: train and evaluate one (experiment, model, fold, seed) run."""

from cellclass import logs, training

logs.to_file(snakemake.log[0])
training.train_run(
    identity=snakemake.params.identity,
    classes=snakemake.params.classes,
    train_files=list(snakemake.input.train),
    train_eval_files=list(snakemake.input.train_eval),
    validation_files=list(snakemake.input.validation),
    test_sets={name: list(snakemake.input[f"test_{name}"]) for name in snakemake.params.test_sets},
    out_dir=snakemake.params.run_dir,
    options=snakemake.params.options,
    threads=snakemake.threads,
)
