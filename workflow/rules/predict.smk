"""Predict: classify new images with trained runs or a model package; never retrains, never re-tiles the training data."""


rule predict:
    input:
        PLAN.predicted_outputs(),


rule predict_tile:
    input:
        raw=lambda w: raw_files(new_shard_samples(w)),
        # The run (or package) records how its training tiles were made; new tiles follow it.
        run=lambda w: PLAN.predictions[w.name].record,
    output:
        tiles="results/predict/{name}/tiles/{shard}.npz",
        sheet="results/predict/{name}/tiles/{shard}.png",
    log:
        "logs/predict_tile/{name}/{shard}.log",
    benchmark:
        "benchmarks/predict_tile/{name}/{shard}.tsv"
    conda:
        "../../envs/cellclass.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        samples=lambda w: as_params(new_shard_samples(w)),
    script:
        "../scripts/predict_tile.py"


rule predict_set:
    input:
        tiles=lambda w: PLAN.new_tile_files(w.name),
        models=lambda w: PLAN.predictions[w.name].models,
        # Where each run's training tiles lie in its features: the yardstick of "unlike training data".
        novelty=lambda w: PLAN.predictions[w.name].novelty,
        run=lambda w: PLAN.predictions[w.name].record,
        # Each run's metrics.json: its temperature calibrates its probabilities.
        calibrations=lambda w: PLAN.predictions[w.name].calibrations,
        # The runs' calibration parts: one ensemble temperature where their mean is under-confident.
        calibration_parts=lambda w: PLAN.predictions[w.name].calibration_parts,
        # Each image's quality against the training images': those unlike them get no call (abstain.image_shift).
        quality="results/predict/{name}/qc.parquet",
        # The overlays draw the calls over each image's field. Single-cell images get none: their raw files are
        # left out, as Snakemake hashes every small input once per output after the job (23 s at 10^5 images).
        raw=lambda w: (
            raw_files(PLAN.predictions[w.name].samples.values())
            if PLAN.predictions[w.name].draws_overlays
            else []
        ),
    output:
        # Per tile (cell): Parquet, as a plate may have millions; predict_tiles_tsv copies small sets' to TSV.
        tiles="results/predict/{name}/tiles.parquet",
        images=report(
            "results/predict/{name}/images.tsv",
            caption="../report/predict_images.rst",
            category="Predictions",
            subcategory="{name}",
        ),
        groups=report(
            "results/predict/{name}/groups.tsv",
            caption="../report/predict_groups.rst",
            category="Predictions",
            subcategory="{name}",
        ),
        calls=report(
            "results/predict/{name}/calls.png",
            caption="../report/predict_calls.rst",
            category="Predictions",
            subcategory="{name}",
        ),
        calls_svg="results/predict/{name}/calls.svg",
        findings=report(
            "results/predict/{name}/findings.html",
            caption="../report/predict_findings.rst",
            category="Predictions",
            subcategory="{name}",
        ),
        overlays=directory("results/predict/{name}/overlays"),
    log:
        "logs/predict/{name}.log",
    benchmark:
        "benchmarks/predict/{name}.tsv"
    conda:
        "../../envs/cellclass.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        tta=CONFIG["evaluation"]["tta"],
        abstain=lambda w: CONFIG["predict"][w.name]["abstain"],
        # Images the runs' training dataset also holds: the runs that never trained on each, which alone score it.
        scoring=lambda w: PLAN.predictions[w.name].scoring,
        overlays=lambda w: CONFIG["predict"][w.name]["overlays"],
    script:
        "../scripts/predict.py"


rule predict_tiles_tsv:
    input:
        "results/predict/{name}/tiles.parquet",
    output:
        "results/predict/{name}/tiles.tsv",
    log:
        "logs/predict_tiles_tsv/{name}.log",
    conda:
        "../../envs/cellclass.yaml"
    script:
        "../scripts/predict_tiles_tsv.py"


rule predict_quality:
    input:
        tiles=lambda w: PLAN.new_tile_files(w.name),
        # The training images' measures: the dataset's table, or the package, which carries it.
        reference=lambda w: PLAN.predictions[w.name].quality_reference,
    output:
        table="results/predict/{name}/qc.parquet",
        figure=report(
            "results/predict/{name}/qc.png",
            caption="../report/predict_quality.rst",
            category="Predictions",
            subcategory="{name}",
        ),
        figure_svg="results/predict/{name}/qc.svg",
    log:
        "logs/predict_quality/{name}.log",
    conda:
        "../../envs/cellclass.yaml"
    script:
        "../scripts/predict_quality.py"
