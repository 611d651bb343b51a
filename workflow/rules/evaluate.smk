"""Evaluate: tables across all runs, then the figures; plotting options never retrain."""


rule evaluate:
    input:
        metrics=lambda w: [f"{run}/metrics.json" for run in PLAN.run_dirs()],
        history=lambda w: [f"{run}/history.csv" for run in PLAN.run_dirs()],
        predictions=lambda w: [f"{run}/predictions.tsv" for run in PLAN.run_dirs()],
        # Each run's validation calibration part: the ensemble's temperature is fitted on it.
        calibration=lambda w: [f"{run}/calibration.tsv" for run in PLAN.run_dirs()],
        images_without_tiles=[
            f"results/{name}/images_without_tiles.tsv"
            for name in PLAN.scored_datasets()
        ],
        # Each image's quality: the findings name images unlike the rest of their set.
        quality=[f"results/{name}/qc.parquet" for name in PLAN.scored_datasets()],
        # The leakage check's control runs (evaluation.leakage_check), for the findings' sentence.
        leakage=PLAN.leakage_run_files(),
    output:
        runs=report(
            "results/evaluation/runs.tsv",
            caption="../report/runs.rst",
            category="Tables",
        ),
        classes=report(
            "results/evaluation/classes.tsv",
            caption="../report/classes.rst",
            category="Tables",
        ),
        history="results/evaluation/history.tsv",
        images="results/evaluation/images.tsv",
        groups="results/evaluation/groups.tsv",
        summary=report(
            "results/evaluation/summary.tsv",
            caption="../report/summary.rst",
            category="Tables",
        ),
        comparisons=report(
            "results/evaluation/comparisons.tsv",
            caption="../report/comparisons.rst",
            category="Tables",
        ),
        ensemble_calibration=report(
            "results/evaluation/ensemble_calibration.tsv",
            caption="../report/ensemble_calibration.rst",
            category="Tables",
        ),
        findings=report(
            "results/evaluation/findings.html",
            caption="../report/findings.rst",
            category="Findings",
        ),
    log:
        "logs/evaluate.log",
    conda:
        "../../envs/cellclass.yaml"
    params:
        runs=PLAN.run_dirs(),
        human=CONFIG["evaluation"]["human"],
        thresholds={
            k: CONFIG["evaluation"][k]
            for k in ("overfit_gap", "overfit_train", "collapse_share")
        },
        resamples=CONFIG["evaluation"]["bootstrap_resamples"],
        leakage_runs=PLAN.leakage_runs(),
    script:
        "../scripts/evaluate.py"


rule overview_figures:
    input:
        runs="results/evaluation/runs.tsv",
        history="results/evaluation/history.tsv",
    output:
        accuracy=report(
            multiext("results/figures/test_accuracy", ".png", ".svg"),
            caption="../report/test_accuracy.rst",
            category="Overview",
        ),
        curves=report(
            multiext("results/figures/training_curves", ".png", ".svg"),
            caption="../report/training_curves.rst",
            category="Overview",
        ),
        overfitting=report(
            multiext("results/figures/overfitting", ".png", ".svg"),
            caption="../report/overfitting.rst",
            category="Overview",
        ),
    log:
        "logs/figures/overview.log",
    conda:
        "../../envs/cellclass.yaml"
    params:
        human=CONFIG["evaluation"]["human"],
        plots=CONFIG["plots"],
    script:
        "../scripts/overview_figures.py"


rule run_figures:
    input:
        predictions=lambda w: [
            f"{run}/predictions.tsv" for run in PLAN.run_dirs(w.experiment, w.model)
        ],
        tiles=lambda w: PLAN.test_tile_files(w.experiment),
    output:
        confidence=report(
            multiext(
                "results/figures/{experiment}/{model}/confidence", ".png", ".svg"
            ),
            caption="../report/confidence.rst",
            category="{experiment}",
            subcategory="{model}",
        ),
        confusion=report(
            multiext("results/figures/{experiment}/{model}/confusion", ".png", ".svg"),
            caption="../report/confusion.rst",
            category="{experiment}",
            subcategory="{model}",
        ),
        gallery=report(
            multiext("results/figures/{experiment}/{model}/gallery", ".png", ".svg"),
            caption="../report/gallery.rst",
            category="{experiment}",
            subcategory="{model}",
        ),
    log:
        "logs/figures/{experiment}/{model}.log",
    conda:
        "../../envs/cellclass.yaml"
    params:
        classes=lambda w: PLAN.datasets[dataset_of(w.experiment)].classes(),
        plots=CONFIG["plots"],
    script:
        "../scripts/run_figures.py"
