"""The embedded demo: synthetic widefield fields, plates and single cells, generated deterministically from a seed."""

from cellclass.demo import patterns


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


# One job writes a block of patterns.BLOCK cells of one class (a dataset's last block
# of a class may write cells past its count, which no sample uses).
rule demo_cells:
    output:
        expand(
            "results/demo/{{dataset}}/patterns/{{cls}}/cell_{{block}}{i:02d}.tif",
            i=range(patterns.BLOCK),
        ),
    log:
        "logs/demo/{dataset}/patterns/{cls}/{block}.log",
    wildcard_constraints:
        cls="|".join(patterns.CLASSES),
        block="[0-9]{3}",
    conda:
        "../../envs/cellclass.yaml"
    params:
        demo=lambda w: patterns.block_settings(
            PLAN.image_set(w.dataset).entry["demo_cells"]
        ),
    script:
        "../scripts/demo_cells.py"
