"""Snakemake adapter: the article's overlay grid of one method's maps on test tiles of both classes."""

from cellclass.explain import explainer
from cellclass.io import logs

logs.to_file(snakemake.log[0])
explainer.overlay(
    maps_path=snakemake.input.maps,
    method=snakemake.wildcards.method,
    classes=snakemake.params.classes,
    per_class=snakemake.params.per_class,
    title=f"{snakemake.wildcards.experiment}/{snakemake.wildcards.model}: {snakemake.wildcards.method}",
    path_stem=snakemake.output.png[: -len(".png")],
)
