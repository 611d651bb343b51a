"""cellclass: raw microscopy fields → tiles → split → augment → train → evaluate."""


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/prepare.smk"


rule all:
    input:
        prepared_outputs(),
    default_target: True
