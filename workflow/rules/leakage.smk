"""The leakage check (evaluation.leakage_check): a control run per experiment on a random split of tiles that
ignores images and groups, held against the grouped split."""


rule leakage_augment:
    input:
        tiles="results/{dataset}/tiles/{shard}.npz",
        # The shard's images no real run trains on: the control trains on some of their tiles.
        raw=lambda w: raw_files(PLAN.leakage_augmented_samples(w.dataset, w.shard)),
    output:
        tiles="results/leakage/{dataset}/augmented/{shard}.npz",
        sheet="results/leakage/{dataset}/augmented/{shard}.png",
    log:
        "logs/leakage_augment/{dataset}/{shard}.log",
    benchmark:
        "benchmarks/leakage_augment/{dataset}/{shard}.tsv"
    conda:
        "../../envs/cellclass.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        samples=lambda w: as_params(PLAN.leakage_augmented_samples(w.dataset, w.shard)),
        augment=cc_config.resampling(CONFIG["augment"]),
    script:
        "../scripts/augment.py"


rule leakage_train:
    input:
        shards=lambda w: PLAN.tile_files(dataset_of(w.experiment)),
        train_shards=lambda w: PLAN.leakage_train_files(w.experiment),
        backbone_weights=backbone_weights,
    output:
        model="results/leakage/{experiment}/{model}/model.keras",
        history="results/leakage/{experiment}/{model}/history.csv",
        # Every run writes its novelty reference; the control's is not used.
        novelty="results/leakage/{experiment}/{model}/novelty.npz",
        record="results/leakage/{experiment}/{model}/training.json",
    log:
        "logs/leakage_train/{experiment}/{model}.log",
    benchmark:
        "benchmarks/leakage_train/{experiment}/{model}.tsv"
    conda:
        "../../envs/cellclass.yaml"
    threads: lambda w: EXPERIMENTS[w.experiment]["train"]["threads"]
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        classes=lambda w: PLAN.datasets[dataset_of(w.experiment)].classes(),
        options=run_options,
        identity=lambda w: {
            "experiment": w.experiment,
            "dataset": dataset_of(w.experiment),
            "model": w.model,
            "fold": 0,
            "seed": 0,
        },
        split=lambda w: PLAN.leakage_split(w.experiment),
        run_dir=lambda w: f"results/leakage/{w.experiment}/{w.model}",
    script:
        "../scripts/leakage_train.py"


rule leakage_score:
    input:
        shards=lambda w: PLAN.tile_files(dataset_of(w.experiment)),
        model="results/leakage/{experiment}/{model}/model.keras",
        record="results/leakage/{experiment}/{model}/training.json",
    output:
        predictions="results/leakage/{experiment}/{model}/predictions.tsv",
        metrics="results/leakage/{experiment}/{model}/metrics.json",
        calibration="results/leakage/{experiment}/{model}/calibration.tsv",
    log:
        "logs/leakage_score/{experiment}/{model}.log",
    benchmark:
        "benchmarks/leakage_score/{experiment}/{model}.tsv"
    conda:
        "../../envs/cellclass.yaml"
    threads: lambda w: EXPERIMENTS[w.experiment]["train"]["threads"]
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        classes=lambda w: PLAN.datasets[dataset_of(w.experiment)].classes(),
        options=run_options,
        identity=lambda w: {
            "experiment": w.experiment,
            "dataset": dataset_of(w.experiment),
            "model": w.model,
            "fold": 0,
            "seed": 0,
        },
        split=lambda w: PLAN.leakage_split(w.experiment),
        run_dir=lambda w: f"results/leakage/{w.experiment}/{w.model}",
        tta=CONFIG["evaluation"]["tta"],
    script:
        "../scripts/leakage_score.py"


rule leakage:
    input:
        runs="results/evaluation/runs.tsv",
        summary="results/evaluation/summary.tsv",
        controls=PLAN.leakage_run_files(),
    output:
        table=report(
            "results/leakage/leakage.tsv",
            caption="../report/leakage_table.rst",
            category="Tables",
        ),
        figure=report(
            multiext("results/figures/leakage", ".png", ".svg"),
            caption="../report/leakage.rst",
            category="Overview",
        ),
    log:
        "logs/leakage.log",
    conda:
        "../../envs/cellclass.yaml"
    params:
        runs=PLAN.leakage_runs(),
    script:
        "../scripts/leakage.py"
