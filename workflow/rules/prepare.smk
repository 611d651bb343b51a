"""Prepare: tile each shard of raw images, split by group; resample rotated/shifted copies of the training side."""


rule tile:
    input:
        lambda w: raw_files(shard_samples(w)),
    output:
        tiles="results/{dataset}/tiles/{shard}.npz",
        sheet="results/{dataset}/tiles/{shard}.png",
    log:
        "logs/tile/{dataset}/{shard}.log",
    benchmark:
        "benchmarks/tile/{dataset}/{shard}.tsv"
    conda:
        "../../envs/cellclass.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        samples=lambda w: as_params(shard_samples(w)),
        settings=lambda w: PLAN.datasets[w.dataset].entry["prepare"],
    script:
        "../scripts/tile.py"


rule split:
    input:
        lambda w: PLAN.tile_files(w.dataset),
    output:
        manifest="results/{dataset}/split.tsv",
        counts=report(
            "results/{dataset}/split_counts.tsv",
            caption="../report/split_counts.rst",
            category="Data",
        ),
        empty=report(
            "results/{dataset}/images_without_tiles.tsv",
            caption="../report/images_without_tiles.rst",
            category="Data",
        ),
    log:
        "logs/split/{dataset}.log",
    conda:
        "../../envs/cellclass.yaml"
    params:
        sides=lambda w: PLAN.datasets[w.dataset].sides,
        test_only=lambda w: PLAN.datasets[w.dataset].entry["test_only"],
        notes=lambda w: PLAN.datasets[w.dataset].split_notes,
    script:
        "../scripts/split.py"


rule augment:
    input:
        tiles="results/{dataset}/tiles/{shard}.npz",
        # Angles and shifts resample the raw fields of the shard's training images.
        raw=lambda w: raw_files(augmented_samples(w)),
    output:
        tiles="results/{dataset}/augmented/{shard}.npz",
        sheet="results/{dataset}/augmented/{shard}.png",
    log:
        "logs/augment/{dataset}/{shard}.log",
    benchmark:
        "benchmarks/augment/{dataset}/{shard}.tsv"
    conda:
        "../../envs/cellclass.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        samples=lambda w: as_params(augmented_samples(w)),
        augment=cc_config.resampling(CONFIG["augment"]),
    script:
        "../scripts/augment.py"


rule segmentation_check:
    input:
        raw=lambda w: raw_files(PLAN.datasets[w.dataset].samples.values()),
        truth=lambda w: [
            f for pair in PLAN.demo_truth(w.dataset).values() for f in pair
        ],
    output:
        report(
            "results/{dataset}/segmentation.tsv",
            caption="../report/segmentation.rst",
            category="Data",
        ),
    log:
        "logs/segmentation_check/{dataset}.log",
    conda:
        "../../envs/cellclass.yaml"
    params:
        samples=lambda w: as_params(PLAN.datasets[w.dataset].samples.values()),
        settings=lambda w: PLAN.datasets[w.dataset].entry["prepare"],
        truth=lambda w: PLAN.demo_truth(w.dataset),
    script:
        "../scripts/segmentation_check.py"


rule extra_tiles:
    input:
        # The filled label-next sheet, and the raw files of the images it names (read when the plan is made).
        sheet=lambda w: PLAN.datasets[w.dataset].entry["extra_labels"],
        raw=lambda w: PLAN.extra_raw_files(w.dataset),
    output:
        tiles="results/{dataset}/extra/tiles.npz",
        sheet="results/{dataset}/extra/tiles.png",
    log:
        "logs/extra_tiles/{dataset}.log",
    benchmark:
        "benchmarks/extra_tiles/{dataset}.tsv"
    conda:
        "../../envs/cellclass.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        classes=lambda w: PLAN.datasets[w.dataset].classes(),
        settings=lambda w: PLAN.datasets[w.dataset].entry["prepare"],
    script:
        "../scripts/extra_tiles.py"


rule quality:
    input:
        lambda w: PLAN.tile_files(w.dataset),
    output:
        # Per image: focus, intensity, saturation, background, objects (measured as each shard was tiled).
        table="results/{dataset}/qc.parquet",
        figure=report(
            "results/{dataset}/qc.png",
            caption="../report/quality.rst",
            category="Data",
        ),
        figure_svg="results/{dataset}/qc.svg",
    log:
        "logs/quality/{dataset}.log",
    conda:
        "../../envs/cellclass.yaml"
    script:
        "../scripts/quality.py"
