"""A plate whose wells were scored by different ensembles: Z' per scorer group beside the pooled one.

Under out-of-fold scoring a control well the runs trained on is scored only by the runs of the fold that held it
out, and under k folds each fold's runs are a different network: their scores can differ in level and spread.
The pooled Z' mixes them, and says nothing of how a sample well scored by another ensemble (all runs) would
separate. So Z' and SSMD are also computed per scorer group (the runs named in `scored_by`), and the findings
warn when groups differ or when sample wells were scored by an ensemble no control well was.
"""

import re

import numpy as np
import pandas as pd

from cellclass.assay.separation import ssmd, z_prime

# Z' groups further apart than this differ in how the assay reads (the 0.5 and 0 lines are 0.5 apart).
Z_PRIME_GAP = 0.2
POOLED = "all wells (pooled)"


def scorer_of(scored_by):
    """The ensemble behind a `scored_by` entry: the runs in its brackets ("fold 0, 1 run"), else its words
    ("all runs"); a well scored in several ways (entries joined by '; ') names each."""
    parts = str(scored_by or "all runs").split("; ")
    keys = [m.group(1) if (m := re.search(r"\(([^()]*\d+ runs?)\)$", part)) else part for part in parts]
    return "; ".join(dict.fromkeys(keys))


def scorer_statistics(wells):
    """Per plate and scorer group (and pooled): wells, sample wells, positive and negative control wells with
    their mean scores, Z', SSMD and the share of cells abstained in the control wells; a row per group. Wells
    left out of the plate statistics (no score, constant score) are left out here too."""
    scored = wells[wells["score"].notna() & ~wells["constant_score"]]
    scored = scored.assign(scorer=[scorer_of(s) for s in scored.get("scored_by", pd.Series("", index=scored.index))])
    rows = []
    for plate, on_plate in scored.groupby("plate", sort=True):
        groups = [(POOLED, on_plate)] + list(on_plate.groupby("scorer", sort=True))
        for scorer, group in groups:
            positive = group.loc[group["role"] == "positive_control", "score"]
            negative = group.loc[group["role"] == "negative_control", "score"]
            controls = group[group["role"].str.endswith("_control")]
            rows.append(
                {
                    "plate": plate,
                    "scorer": scorer,
                    "wells": len(group),
                    "sample_wells": int((group["role"] == "sample").sum()),
                    "positive_wells": len(positive),
                    "negative_wells": len(negative),
                    "positive_mean": positive.mean(),
                    "negative_mean": negative.mean(),
                    "z_prime": z_prime(positive, negative),
                    "ssmd": ssmd(positive, negative),
                    "controls_abstained_share": _share(controls),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "plate",
            "scorer",
            "wells",
            "sample_wells",
            "positive_wells",
            "negative_wells",
            "positive_mean",
            "negative_mean",
            "z_prime",
            "ssmd",
            "controls_abstained_share",
        ],
    )


def _share(wells):
    found = wells["cells_found"].sum()
    return wells["abstained"].sum() / found if found else np.nan


def sentences(table):
    """Per plate scored by more than one ensemble: each group's Z', how far apart they are, and warnings."""
    lines = []
    for plate, rows in table.groupby("plate", sort=True):
        groups = rows[rows["scorer"] != POOLED]
        if len(groups) < 2:
            continue
        pooled = rows[rows["scorer"] == POOLED].iloc[0]
        each = "; ".join(
            f"{r.scorer}: Z' {r.z_prime:.2f} (control means {r.negative_mean:.2f} negative, "
            f"{r.positive_mean:.2f} positive, over {r.negative_wells} and {r.positive_wells} wells; "
            f"{r.sample_wells} sample wells)"
            for r in groups.itertuples()
        )
        lines.append(
            f"plate {plate}: its wells were scored by {len(groups)} ensembles — {each}; pooled Z' {pooled.z_prime:.2f}."
        )
        finite = groups["z_prime"][np.isfinite(groups["z_prime"])]
        if len(finite) >= 2 and finite.max() - finite.min() > Z_PRIME_GAP:
            lines.append(
                f"WARNING: plate {plate}: Z' differs by {finite.max() - finite.min():.2f} between the "
                f"ensembles that scored its wells ({finite.min():.2f} to {finite.max():.2f}): the pooled "
                "Z' hides how well each separates the controls."
            )
        blind = groups[(groups["sample_wells"] > 0) & ((groups["positive_wells"] < 2) | (groups["negative_wells"] < 2))]
        for r in blind.itertuples():
            lines.append(
                f"WARNING: plate {plate}: {r.sample_wells} sample well(s) were scored by {r.scorer}, which "
                f"scored {r.positive_wells} positive and {r.negative_wells} negative control wells: Z' says "
                "nothing of how that ensemble separates the controls. assay.scoring: out_of_fold_all scores "
                "every well of the plate by the runs of one fold, as its held-out controls are."
            )
    return lines
