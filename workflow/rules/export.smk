"""Export: trained runs as bioimage.io model packages, each checked by bioimageio.core."""


rule export:
    input:
        exported_outputs(),


rule export_package:
    input:
        runs=lambda w: [
            f"{run}/{name}"
            for run in export_runs(w.name)
            for name in ("model.keras", "metrics.json", "predictions.tsv")
        ],
        # The test tensors are real test tiles of the first run.
        tiles=lambda w: tile_files(
            EXPERIMENTS[EXPORTS[w.name]["experiment"]]["dataset"]
        ),
        summary="results/evaluation/summary.tsv",
        classes="results/evaluation/classes.tsv",
    output:
        "results/export/{name}.zip",
    log:
        "logs/export/{name}.log",
    benchmark:
        "benchmarks/export/{name}.tsv"
    conda:
        "../../envs/cellclass.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        runs=lambda w: export_runs(w.name),
        options=lambda w: EXPORTS[w.name],
    script:
        "../scripts/export_package.py"


rule validate_package:
    input:
        "results/export/{name}.zip",
    output:
        "results/export/{name}.validation.tsv",
    log:
        "logs/validate_package/{name}.log",
    benchmark:
        "benchmarks/validate_package/{name}.tsv"
    conda:
        "../../envs/cellclass.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/validate_package.py"
