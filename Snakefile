"""cellclass: raw microscopy fields → tiles → split → augment → train → evaluate → attribute; new images → predict."""

# The default run is the embedded demo; a --configfile replaces it rather than
# being merged into it, so the demo datasets never leak into a user's run.
if not config:

    configfile: f"{workflow.basedir}/config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/attribute.smk"
include: "workflow/rules/predict.smk"


rule all:
    default_target: True
    input:
        prepared_outputs(),
        evaluated_outputs(),
        attributed_outputs(),
        predicted_outputs(),
