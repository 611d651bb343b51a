"""Export: trained runs as bioimage.io model packages, each checked by bioimageio.core."""


rule export:
    input:
        PLAN.exported_outputs(),


rule export_package:
    input:
        runs=lambda w: [
            f"{run}/{name}"
            for run in PLAN.export_runs(w.name)
            for name in (
                "model.keras",
                "metrics.json",
                "predictions.tsv",
                "novelty.npz",
            )
        ],
        # The test tensors are real test tiles of the first run.
        tiles=lambda w: PLAN.tile_files(
            dataset_of(CONFIG["export"][w.name]["experiment"])
        ),
        # A package of raw tiles takes its test tensors from these images' pixels.
        raw=export_raw_files,
        # The training images' quality measures: new images are checked against them (predict_quality).
        quality=lambda w: f"results/{dataset_of(CONFIG['export'][w.name]['experiment'])}/qc.parquet",
        # The package's accuracy tables. ancient(): they are rewritten whenever any evaluation setting changes,
        # but the package's rows change only with its runs' predictions (inputs above), so only those re-export.
        summary=ancient("results/evaluation/summary.tsv"),
        classes=ancient("results/evaluation/classes.tsv"),
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
        runs=lambda w: PLAN.export_runs(w.name),
        options=lambda w: CONFIG["export"][w.name],
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
