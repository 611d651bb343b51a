"""Snakemake adapter: one package's runs as a bioimage.io model zip."""

from cellclass.io import logs
from cellclass.share import export

logs.to_file(snakemake.log[0])
export.export_package(
    name=snakemake.wildcards.name,
    run_dirs=snakemake.params.runs,
    tile_files=list(snakemake.input.tiles),
    summary_tsv=snakemake.input.summary,
    classes_tsv=snakemake.input.classes,
    options=snakemake.params.options,
    out_zip=snakemake.output[0],
    threads=snakemake.threads,
    quality=snakemake.input.quality,
)
