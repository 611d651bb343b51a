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


# One job writes a whole demo plate, every well's channel files: a job per well
# spent more time starting than rendering (48 jobs of about a second each).
for plate_set in PLAN.demo_plates():

    rule:
        name:
            f"demo_plate_{plate_set}"
        output:
            PLAN.demo_plate_files(plate_set),
        log:
            f"logs/demo/{plate_set}/plate.log",
        conda:
            "../../envs/cellclass.yaml"
        params:
            spec=PLAN.image_set(plate_set).entry["demo_plate"],
        script:
            "../scripts/demo_plate.py"


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
