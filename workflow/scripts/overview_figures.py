"""Snakemake adapter: the figures across all runs."""

import pandas as pd

from cellclass.evaluate import figures
from cellclass.io import logs

logs.to_file(snakemake.log[0])
runs = pd.read_csv(snakemake.input.runs, sep="\t", dtype={"test_set": str, "dataset": str})
history = pd.read_csv(snakemake.input.history, sep="\t")
plots = snakemake.params.plots
figures.accuracy_boxplot(runs, list(snakemake.output.accuracy), human=snakemake.params.human)
figures.training_curves(history, list(snakemake.output.curves), window=plots["smoothing_window"])
figures.overfitting_scatter(runs, list(snakemake.output.overfitting))
