"""Snakemake adapter: tables across all runs, and the findings in words."""

import html
import logging

from cellclass import evaluate, logs
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
logging.info("findings:\n%s", "\n".join(sentences))
with atomic_path(snakemake.output.findings) as tmp:
    items = "".join(f"<li>{html.escape(s)}</li>" for s in sentences)
    tmp.write_text(f"<html><body><h2>Findings</h2><ul>{items}</ul></body></html>\n", encoding="utf-8")
