"""Snakemake adapter: the ensemble's calls per tile (cell), image and group of one prediction set."""

from cellclass import logs, predict

logs.to_file(snakemake.log[0])
predict.predict_set(
    tile_files=list(snakemake.input.tiles),
    model_paths=list(snakemake.input.models),
    run_path=snakemake.input.run,
    tiles_tsv=snakemake.output.tiles,
    images_tsv=snakemake.output.images,
    groups_tsv=snakemake.output.groups,
    calls_figures=[snakemake.output.calls, snakemake.output.calls_svg],
    overlay_dir=snakemake.output.overlays,
    threads=snakemake.threads,
)
