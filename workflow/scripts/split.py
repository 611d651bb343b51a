"""Snakemake adapter: write the split manifest of one dataset and log its counts."""

import logging

import pandas as pd

from cellclass import logs, split, tilestore
from cellclass.atomic import atomic_path

logs.to_file(snakemake.log[0])
sides = snakemake.params.sides
parts = []
for path in snakemake.input:
    tileset = tilestore.load(path, tiles=False)
    parts.append(split.manifest_rows(tileset, sides[tileset.meta["group"]]))
manifest = pd.concat(parts, ignore_index=True)
split.check(manifest, snakemake.wildcards.dataset, test_only=snakemake.params.test_only)
counts = split.counts(manifest)
logging.info("tiles per class and split in %s:\n%s", snakemake.wildcards.dataset, counts.to_string())
with atomic_path(snakemake.output.manifest) as tmp:
    manifest.to_csv(tmp, sep="\t", index=False)
with atomic_path(snakemake.output.counts) as tmp:
    counts.reset_index().to_csv(tmp, sep="\t", index=False)
