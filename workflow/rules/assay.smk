"""Assay: screening plates' per-well scores, Z' and SSMD of the controls, dose-response and plate heatmaps,
for plate prediction sets and for plate test sets."""


rule assay:
    input:
        tiles="results/predict/{name}/tiles.parquet",
        # How the tiles were made (the unit, and its normalisation as a caveat for per-cell fractions).
        run=lambda w: PLAN.predictions[w.name].record,
    output:
        **assay_outputs("{name}", "{name}"),
    log:
        "logs/assay/{name}.log",
    conda:
        "../../envs/cellclass.yaml"
    params:
        layout=lambda w: PLAN.image_set(w.name).layout,
        positive=CONFIG["assay"]["positive_class"],
        resamples=CONFIG["assay"]["bootstrap_resamples"],
        # A well that abstained on more of its cells gets no score, as the set's images and groups get no call.
        max_share=lambda w: CONFIG["predict"][w.name]["abstain"]["max_share"],
        fdr=CONFIG["assay"]["unfamiliar_fdr"],
        min_excess=CONFIG["assay"]["unfamiliar_min_excess"],
    script:
        "../scripts/assay.py"


rule assay_test:
    input:
        predictions=lambda w: [
            f"{run}/predictions.tsv" for run in PLAN.run_dirs(w.experiment, w.model)
        ],
        runs=lambda w: [
            f"{run}/metrics.json" for run in PLAN.run_dirs(w.experiment, w.model)
        ],
    output:
        **assay_outputs(
            "test/{experiment}/{model}/{test_set}", "{experiment}/{model}/{test_set}"
        ),
    log:
        "logs/assay/test/{experiment}/{model}/{test_set}.log",
    conda:
        "../../envs/cellclass.yaml"
    params:
        layout=lambda w: PLAN.datasets[w.test_set].layout,
        positive=CONFIG["assay"]["positive_class"],
        resamples=CONFIG["assay"]["bootstrap_resamples"],
        fdr=CONFIG["assay"]["unfamiliar_fdr"],
        min_excess=CONFIG["assay"]["unfamiliar_min_excess"],
    script:
        "../scripts/assay_test.py"


rule plate_heatmap:
    input:
        wells="results/assay/{where}/wells.tsv",
    output:
        png=report(
            "results/assay/{where}/heatmap_{plate}.png",
            caption="../report/assay_heatmap.rst",
            category="Plates",
            subcategory="{where}",
        ),
        svg="results/assay/{where}/heatmap_{plate}.svg",
    log:
        "logs/assay/{where}/heatmap_{plate}.log",
    conda:
        "../../envs/cellclass.yaml"
    script:
        "../scripts/plate_heatmap.py"
