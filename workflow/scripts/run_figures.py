"""Snakemake adapter: confidence, confusion and gallery figures of one (experiment, model)."""

import json

import pandas as pd

from cellclass import figures, logs, metrics

logs.to_file(snakemake.log[0])
plots = snakemake.params.plots
classes = json.loads(open(snakemake.input.metrics[0]).read())["classes"]
tables = [pd.read_csv(p, sep="\t", dtype={"test_set": str, "true": str, "predicted": str}) for p in snakemake.input.predictions]
# Confidence and confusion pool every seed on the dataset's own test side; the
# gallery shows one run, as the article did.
own = [t[t["test_set"] == snakemake.params.dataset] for t in tables]
pooled = pd.concat(own, ignore_index=True)
figures.confidence_plots(pooled, classes, list(snakemake.output.confidence), bins=plots["calibration_bins"])
figures.confusion_plot(metrics.confusion(pooled, classes), list(snakemake.output.confusion))
figures.gallery(
    own[0],
    figures.tile_loader_from_files("results"),
    list(snakemake.output.gallery),
    n=plots["gallery_size"],
    order=plots["gallery_order"],
)
