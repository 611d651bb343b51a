"""Snakemake adapter: per-cell profiles and the map of an experiment's test sides (one model)."""

from cellclass.io import logs
from cellclass.predict import profile_jobs

logs.to_file(snakemake.log[0])
profile_jobs.profile_experiment(
    tile_files=list(snakemake.input.tiles),
    run_dirs=list(snakemake.params.test_images),
    test_images=snakemake.params.test_images,
    layout=snakemake.params.layout,
    outputs={**dict(snakemake.output.items()), "map": [snakemake.output.map, snakemake.output.map_svg]},
    title=f"{snakemake.wildcards.experiment} {snakemake.wildcards.model}: test tiles (cells)",
    method=snakemake.params.map,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
)
