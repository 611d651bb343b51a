"""Snakemake adapter: train and evaluate one (experiment, model, seed) run."""

from pathlib import Path

from cellclass import logs, training

logs.to_file(snakemake.log[0])
tests = {name: list(snakemake.input[f"test_{name}"]) for name in snakemake.params.test_sets}
training.train_run(
    model_name=snakemake.wildcards.model,
    classes=snakemake.params.classes,
    train_files=list(snakemake.input.train),
    heldout_files=list(snakemake.input.validation) or tests[snakemake.params.test_sets[0]],
    test_sets=tests,
    out_dir=Path(snakemake.output.model).parent,
    seed=int(snakemake.wildcards.seed),
    options=snakemake.params.options,
    threads=snakemake.threads,
)
