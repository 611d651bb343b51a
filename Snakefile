"""cellclass: raw microscopy fields → tiles → split → augment → train → evaluate → attribute; new images → predict."""

import os

# TensorFlow's C++ start-up banners (oneDNN, CPU features) and absl notices are
# noise in a job's log; its Python errors are unaffected. Jobs inherit this.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
