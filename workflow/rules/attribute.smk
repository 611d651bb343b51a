"""Attribute: what each trained run looks at, scored in the configured masks, with a randomised-network check."""


rule attribute:
    input:
        # The trained run and its own test side (the split): never its scoring, so evaluation.tta explains nothing anew.
        record="results/train/{experiment}/{model}/fold{fold}/seed{seed}/training.json",
        model="results/train/{experiment}/{model}/fold{fold}/seed{seed}/model.keras",
        manifest=lambda w: f"results/{dataset_of(w.experiment)}/split.tsv",
        tiles=lambda w: PLAN.tile_files(EXPERIMENTS[w.experiment]["dataset"]),
        masks=lambda w: test_masks(w).values(),
    output:
        maps="results/attribution/{experiment}/{model}/fold{fold}/seed{seed}/maps.npz",
        scores="results/attribution/{experiment}/{model}/fold{fold}/seed{seed}/scores.tsv",
    log:
        "logs/attribute/{experiment}/{model}/fold{fold}/seed{seed}.log",
    benchmark:
        "benchmarks/attribute/{experiment}/{model}/fold{fold}/seed{seed}.tsv"
    conda:
        "../../envs/cellclass.yaml"
    threads: lambda w: EXPERIMENTS[w.experiment]["train"]["threads"]
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        settings=CONFIG["attribution"],
        mask_names=lambda w: CONFIG["attribution"]["masks"][w.experiment],
        masks=lambda w: test_masks(w),
    script:
        "../scripts/attribute.py"


rule attribution_summary:
    input:
        scores=[f"{run}/scores.tsv" for run in PLAN.attributed_runs()],
        runs="results/evaluation/runs.tsv",
    output:
        table=report(
            "results/attribution/enrichment.tsv",
            caption="../report/enrichment_table.rst",
            category="Attribution",
        ),
        findings=report(
            "results/attribution/findings.html",
            caption="../report/attribution_findings.rst",
            category="Findings",
        ),
        figure=report(
            "results/figures/enrichment.png",
            caption="../report/enrichment.rst",
            category="Attribution",
        ),
        svg="results/figures/enrichment.svg",
    log:
        "logs/attribution_summary.log",
    conda:
        "../../envs/cellclass.yaml"
    script:
        "../scripts/attribution_summary.py"


rule attribution_overlay:
    input:
        # The first run's maps: one run shows what the maps look like.
        maps=lambda w: f"results/attribution/{w.experiment}/{w.model}/fold0/seed0/maps.npz",
    output:
        png=report(
            "results/figures/{experiment}/{model}/attribution_{method}.png",
            caption="../report/attribution_overlay.rst",
            category="Attribution",
            subcategory="{experiment}/{model}",
        ),
        svg="results/figures/{experiment}/{model}/attribution_{method}.svg",
    log:
        "logs/attribution_overlay/{experiment}/{model}/{method}.log",
    conda:
        "../../envs/cellclass.yaml"
    params:
        classes=lambda w: PLAN.datasets[dataset_of(w.experiment)].classes(),
        per_class=CONFIG["plots"]["attribution_tiles"],
    script:
        "../scripts/attribution_overlay.py"
