"""The embedded demo: synthetic widefield fields, generated deterministically from a seed."""


rule demo_field:
    output:
        image="results/demo/{dataset}/images/{cls}/{stem}.tif",
        puncta="results/demo/{dataset}/masks/{cls}/{stem}.tif",
        cells="results/demo/{dataset}/cells/{cls}/{stem}.tif",
        nuclei="results/demo/{dataset}/nuclei/{cls}/{stem}.tif",
    log:
        "logs/demo/{dataset}/{cls}/{stem}.log",
    conda:
        "../../envs/cellclass.yaml"
    params:
        demo=lambda w: PLAN.demo_settings(w.dataset),
    script:
        "../scripts/demo_field.py"


rule demo_plate_field:
    output:
        channels=[
            "results/demo/{dataset}/plate/{well}_s1_w1.tif",
            "results/demo/{dataset}/plate/{well}_s1_w2.tif",
        ],
    log:
        "logs/demo/{dataset}/plate/{well}.log",
    conda:
        "../../envs/cellclass.yaml"
    params:
        spec=lambda w: PLAN.image_set(w.dataset).entry["demo_plate"],
    script:
        "../scripts/demo_plate_field.py"
