"""Prepare: tile each raw image, split by group, augment the training side."""


rule tile:
    input:
        lambda w: sample(w).files,
    output:
        tiles="results/{dataset}/tiles/{image}.npz",
        sheet="results/{dataset}/tiles/{image}.png",
    log:
        "logs/tile/{dataset}/{image}.log",
    benchmark:
        "benchmarks/tile/{dataset}/{image}.tsv"
    conda:
        "../../envs/cellclass.yaml"
    params:
        sample=lambda w: vars(sample(w)),
        settings=lambda w: DATASETS[w.dataset]["prepare"],
    script:
        "../scripts/tile.py"


rule split:
    input:
        lambda w: tile_files(w.dataset),
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
        sides=lambda w: SIDES[w.dataset],
        test_only=lambda w: DATASETS[w.dataset]["test_only"],
        notes=lambda w: SPLIT_NOTES[w.dataset],
    script:
        "../scripts/split.py"


rule augment:
    input:
        tiles="results/{dataset}/tiles/{image}.npz",
        raw=lambda w: sample(w).files,
    output:
        tiles="results/{dataset}/augmented/{image}.npz",
        sheet="results/{dataset}/augmented/{image}.png",
    log:
        "logs/augment/{dataset}/{image}.log",
    benchmark:
        "benchmarks/augment/{dataset}/{image}.tsv"
    conda:
        "../../envs/cellclass.yaml"
    params:
        sample=lambda w: vars(sample(w)),
        augment=CONFIG["augment"],
    script:
        "../scripts/augment.py"
