"""Snakemake adapter: render one demo field with its ground-truth masks."""

from cellclass import demo, logs

logs.to_file(snakemake.log[0])
settings = snakemake.params.demo
demo.write_field(
    snakemake.output.image,
    snakemake.output.puncta,
    snakemake.output.cells,
    pattern=settings["pattern"],
    cls=snakemake.wildcards.cls,
    stem=snakemake.wildcards.stem,
    seed=settings["seed"],
    size=settings["size"],
    cells_per_field=settings["cells_per_field"],
    channels=settings["channels"],
)
