"""Snakemake adapter: the ensemble's calls per tile (cell), image and group of one prediction set."""

from cellclass.io import logs
from cellclass.predict import prediction_set

logs.to_file(snakemake.log[0])
prediction_set.predict_set(
    tile_files=list(snakemake.input.tiles),
    model_paths=list(snakemake.input.models),
    run_path=snakemake.input.run,
    tiles_table=snakemake.output.tiles,
    images_tsv=snakemake.output.images,
    groups_tsv=snakemake.output.groups,
    calls_figures=[snakemake.output.calls, snakemake.output.calls_svg],
    overlay_dir=snakemake.output.overlays,
    findings=snakemake.output.findings,
    novelty_paths=list(snakemake.input.novelty),
    abstain=snakemake.params.abstain,
    threads=snakemake.threads,
    tta=snakemake.params.tta,
    scoring=snakemake.params.scoring,
    overlays=snakemake.params.overlays,
    quality=snakemake.input.quality,
    calibration_parts=list(snakemake.input.calibration_parts),
)
