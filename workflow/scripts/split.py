"""Snakemake adapter: the split manifest, counts and images without tiles of one dataset."""

from cellclass.io import logs
from cellclass.prepare import split

logs.to_file(snakemake.log[0])
split.write_split(
    list(snakemake.input),
    snakemake.params.sides,
    dataset=snakemake.wildcards.dataset,
    test_only=snakemake.params.test_only,
    notes=snakemake.params.notes,
    manifest_path=snakemake.output.manifest,
    counts_path=snakemake.output.counts,
    empty_path=snakemake.output.empty,
)
