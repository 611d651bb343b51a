"""Snakemake adapter: tables across all runs, and the findings in words."""

import logging

from cellclass import evaluate, findings, logs
from cellclass.atomic import atomic_path

logs.to_file(snakemake.log[0])
params = snakemake.params
runs, history, predictions = evaluate.collect_runs(params.runs, params.experiments)
table = evaluate.run_table(history, predictions, gap_threshold=params.overfit_gap)
summary = evaluate.summary_table(table, human=params.human)
comparisons = evaluate.comparisons(table)
tables = {
    "runs": table,
    "history": history,
    "images": evaluate.image_table(predictions),
    "summary": summary,
    "comparisons": comparisons,
}
for name, frame in tables.items():
    with atomic_path(snakemake.output[name]) as tmp:
        frame.to_csv(tmp, sep="\t", index=False)

sentences = evaluate.overfitting_sentence(table).splitlines()
if len(comparisons):
    sentences += list(comparisons["text"])
warnings = findings.images_without_tiles(findings.read_tables(snakemake.input.images_without_tiles))
logging.info("findings:\n%s", "\n".join(warnings + sentences))
with atomic_path(snakemake.output.findings) as tmp:
    findings.write_html(tmp, {"Warnings": warnings, "Results": sentences})
