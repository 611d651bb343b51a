"""Snakemake adapter: per-cell profiles and the map of one prediction set."""

from cellclass.io import logs
from cellclass.predict import profile_jobs

logs.to_file(snakemake.log[0])
profile_jobs.profile_prediction_set(
    tile_files=list(snakemake.input.tiles),
    model_paths=list(snakemake.input.models),
    run_path=snakemake.input.run,
    run_dirs=snakemake.params.runs,
    scoring=snakemake.params.scoring,
    layout=snakemake.params.layout,
    outputs={**dict(snakemake.output.items()), "map": [snakemake.output.map, snakemake.output.map_svg]},
    title=f"{snakemake.wildcards.name}: tiles (cells)",
    method=snakemake.params.map,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
)
