"""Profiles: per-cell penultimate features per run (Parquet), per-well medians, a map of the cells, and for
prediction sets the cells to label next with a labelling page."""


rule profile_experiment:
    input:
        tiles=lambda w: PLAN.tile_files(dataset_of(w.experiment)),
        models=lambda w: [
            f"{run}/model.keras" for run in PLAN.profiled_runs(w.experiment, w.model)
        ],
        # Each run's record: classes, channels and its calibrating temperature.
        runs=lambda w: [
            f"{run}/metrics.json" for run in PLAN.profiled_runs(w.experiment, w.model)
        ],
    output:
        **profile_outputs(
            "results/profiles/{experiment}/{model}", "{experiment}/{model}"
        ),
    log:
        "logs/profiles/{experiment}/{model}.log",
    benchmark:
        "benchmarks/profiles/{experiment}/{model}.tsv"
    conda:
        "../../envs/cellclass.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        test_images=lambda w: PLAN.profiled_runs(w.experiment, w.model),
        layout=lambda w: PLAN.datasets[dataset_of(w.experiment)].layout,
        map=CONFIG["profiles"]["map"],
        seed=CONFIG["profiles"]["seed"],
    script:
        "../scripts/profile_experiment.py"


rule profile_prediction_set:
    input:
        tiles=lambda w: PLAN.new_tile_files(w.name),
        models=lambda w: PLAN.predictions[w.name].models,
        run=lambda w: PLAN.predictions[w.name].record,
        calibrations=lambda w: PLAN.predictions[w.name].calibrations,
    output:
        **profile_outputs("results/predict/{name}", "{name}"),
    log:
        "logs/profiles/predict/{name}.log",
    benchmark:
        "benchmarks/profiles/predict/{name}.tsv"
    conda:
        "../../envs/cellclass.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        runs=lambda w: PLAN.predictions[w.name].runs,
        scoring=lambda w: PLAN.predictions[w.name].scoring,
        layout=lambda w: PLAN.predictions[w.name].layout,
        map=CONFIG["profiles"]["map"],
        seed=CONFIG["profiles"]["seed"],
    script:
        "../scripts/profile_prediction_set.py"


rule label_next:
    input:
        # The ensemble's calibrated, out-of-fold probabilities and novelty per tile (cell).
        tiles="results/predict/{name}/tiles.parquet",
        profiles="results/predict/{name}/profiles.parquet",
        shards=lambda w: PLAN.new_tile_files(w.name),
        run=lambda w: PLAN.predictions[w.name].record,
        # The page shows each chosen cell in a little of its field.
        raw=lambda w: raw_files(PLAN.predictions[w.name].samples.values()),
        # Cells labelled already (the training dataset's extra_labels sheet) are not asked for again.
        labelled=lambda w: PLAN.predictions[w.name].labelled,
    output:
        sheet=report(
            "results/predict/{name}/label_next.tsv",
            caption="../report/label_next.rst",
            category="Profiles",
            subcategory="{name}",
        ),
        contact_sheet=report(
            "results/predict/{name}/label_next.png",
            caption="../report/label_next_sheet.rst",
            category="Profiles",
            subcategory="{name}",
        ),
        page="results/predict/{name}/label_next.html",
    log:
        "logs/label_next/{name}.log",
    conda:
        "../../envs/cellclass.yaml"
    params:
        layout=lambda w: PLAN.predictions[w.name].layout,
        wanted=CONFIG["profiles"]["label_next"],
        seed=CONFIG["profiles"]["seed"],
    script:
        "../scripts/label_next.py"
