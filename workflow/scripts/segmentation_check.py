"""Snakemake adapter: score a demo dataset's nuclei and cell segmentation against its ground-truth labels."""

from cellclass.demo import segment_check
from cellclass.io import logs
from cellclass.io.datasets import Sample

logs.to_file(snakemake.log[0])
segment_check.write_check(
    [Sample(**s) for s in snakemake.params.samples],
    snakemake.params.settings,
    snakemake.params.truth,
    snakemake.output[0],
)
