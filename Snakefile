"""cellclass: raw microscopy fields → tiles → split → augment → train → evaluate."""

# The default run is the embedded demo; a --configfile replaces it rather than
# being merged into it, so the demo datasets never leak into a user's run.
if not config:

    configfile: f"{workflow.basedir}/config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    default_target: True
    input:
        prepared_outputs(),
        evaluated_outputs(),
