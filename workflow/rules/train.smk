"""Train: one job per (experiment, model, fold, seed), evaluated on every test set right after."""


rule train:
    input:
        unpack(train_inputs),
        # A backbone's ImageNet weights file, when train.model_options.<model>.weights names one.
        backbone_weights=backbone_weights,
    output:
        model="results/train/{experiment}/{model}/fold{fold}/seed{seed}/model.keras",
        history="results/train/{experiment}/{model}/fold{fold}/seed{seed}/history.csv",
        predictions="results/train/{experiment}/{model}/fold{fold}/seed{seed}/predictions.tsv",
        metrics="results/train/{experiment}/{model}/fold{fold}/seed{seed}/metrics.json",
        # Where the training tiles lie in the network's features: prediction's yardstick of the unfamiliar.
        novelty="results/train/{experiment}/{model}/fold{fold}/seed{seed}/novelty.npz",
        # The validation side's calibration part, calibrated: the ensemble's temperature is fitted on it.
        calibration="results/train/{experiment}/{model}/fold{fold}/seed{seed}/calibration.tsv",
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
        options=lambda w: EXPERIMENTS[w.experiment]["train"],
        other_test_sets=lambda w: EXPERIMENTS[w.experiment]["test_sets"],
        identity=lambda w: run_identity(w),
        run_dir=lambda w: run_of(w),
        tta=CONFIG["evaluation"]["tta"],
    script:
        "../scripts/train.py"
