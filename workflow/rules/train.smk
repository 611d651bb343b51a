"""Train: one job per (experiment, model, fold, seed), saved; then a score job per run on every test set.

Training writes nothing an evaluation setting changes, so `evaluation.tta` reruns the score jobs, never a training.
"""


rule train:
    input:
        unpack(train_inputs),
        # A backbone's ImageNet weights file, when train.model_options.<model>.weights names one.
        backbone_weights=backbone_weights,
    output:
        model="results/train/{experiment}/{model}/fold{fold}/seed{seed}/model.keras",
        history="results/train/{experiment}/{model}/fold{fold}/seed{seed}/history.csv",
        # Where the training tiles lie in the network's features: prediction's yardstick of the unfamiliar.
        novelty="results/train/{experiment}/{model}/fold{fold}/seed{seed}/novelty.npz",
        # What was trained, on what and how (metrics.json is this plus the scoring).
        record="results/train/{experiment}/{model}/fold{fold}/seed{seed}/training.json",
    log:
        "logs/train/{experiment}/{model}/fold{fold}/seed{seed}.log",
    benchmark:
        "benchmarks/train/{experiment}/{model}/fold{fold}/seed{seed}.tsv"
    conda:
        "../../envs/cellclass.yaml"
    threads: lambda w: EXPERIMENTS[w.experiment]["train"]["threads"]
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        classes=lambda w: PLAN.datasets[dataset_of(w.experiment)].classes(),
        options=run_options,
        identity=lambda w: run_identity(w),
        run_dir=lambda w: run_of(w),
    script:
        "../scripts/train.py"


rule score:
    input:
        unpack(score_inputs),
        model="results/train/{experiment}/{model}/fold{fold}/seed{seed}/model.keras",
        record="results/train/{experiment}/{model}/fold{fold}/seed{seed}/training.json",
    output:
        predictions="results/train/{experiment}/{model}/fold{fold}/seed{seed}/predictions.tsv",
        metrics="results/train/{experiment}/{model}/fold{fold}/seed{seed}/metrics.json",
        # The validation side's calibration part, calibrated: the ensemble's temperature is fitted on it.
        calibration="results/train/{experiment}/{model}/fold{fold}/seed{seed}/calibration.tsv",
    log:
        "logs/score/{experiment}/{model}/fold{fold}/seed{seed}.log",
    benchmark:
        "benchmarks/score/{experiment}/{model}/fold{fold}/seed{seed}.tsv"
    conda:
        "../../envs/cellclass.yaml"
    threads: lambda w: EXPERIMENTS[w.experiment]["train"]["threads"]
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        classes=lambda w: PLAN.datasets[dataset_of(w.experiment)].classes(),
        options=run_options,
        other_test_sets=lambda w: EXPERIMENTS[w.experiment]["test_sets"],
        identity=lambda w: run_identity(w),
        run_dir=lambda w: run_of(w),
        tta=CONFIG["evaluation"]["tta"],
    script:
        "../scripts/score.py"
