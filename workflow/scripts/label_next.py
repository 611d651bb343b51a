"""Snakemake adapter: the cells of a prediction set to label next, their contact sheet and the labelling page."""

from cellclass.io import logs
from cellclass.predict import profile_jobs

logs.to_file(snakemake.log[0])
profile_jobs.write_label_next(
    tiles_table=snakemake.input.tiles,
    profiles_path=snakemake.input.profiles,
    tile_files=list(snakemake.input.shards),
    run_path=snakemake.input.run,
    labelled_sheets=list(snakemake.input.labelled),
    layout=snakemake.params.layout,
    outputs=dict(snakemake.output.items()),
    title=f"Label next: {snakemake.wildcards.name}",
    wanted=snakemake.params.wanted,
    seed=snakemake.params.seed,
)
