"""cellclass: raw microscopy fields → tiles → split → augment → train → evaluate → attribute → export; new images → predict."""

import os

from snakemake.utils import min_version

min_version("9.0")

# TensorFlow's C++ start-up banners (oneDNN, CPU features) and absl notices are
# noise in a job's log; its Python errors are unaffected. Jobs inherit this.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# The default run is the embedded demo; a --configfile replaces it rather than
# being merged into it, so the demo datasets never leak into a user's run.
if not config:

    configfile: f"{workflow.basedir}/config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/leakage.smk"
include: "workflow/rules/attribute.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/assay.smk"
include: "workflow/rules/profile.smk"
include: "workflow/rules/export.smk"


# Jobs of seconds (tables, figures, the split) run where Snakemake runs, not through a cluster queue.
localrules:
    all,
    predict,
    export,
    export_package,
    validate_package,
    split,
    quality,
    predict_quality,
    segmentation_check,
    evaluate,
    overview_figures,
    run_figures,
    leakage,
    attribution_summary,
    attribution_overlay,
    assay,
    assay_test,
    plate_heatmap,
    label_next,


rule all:
    default_target: True
    input:
        PLAN.all_outputs(),
