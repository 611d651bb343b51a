"""Sample wells whose cells the model does not recognise: abstention as a readout of a plate.

A cell abstains when it is unlike the training data (or uncertain). Control wells hold the phenotypes the model
was trained on, so their abstained share is the plate's baseline. A sample well that abstains on clearly more of
its cells shows a phenotype the model has not seen: its score rests on the minority it recognises, and the
phenotype itself may be the finding.

The test: control wells' abstained counts vary from well to well more than binomial sampling allows (focus,
density, debris), so a binomial test against the pooled control rate would flag large wells for that ordinary
spread. The control wells' counts are fitted by a beta-binomial (scipy.stats.betabinom, maximum likelihood of
the mean rate and the intra-well correlation, which is zero when the controls show no extra spread), and each
sample well's abstained count is tested one-sided against it (P(X >= k) for its number of cells). The plate's
sample wells are corrected together by Benjamini-Hochberg (scipy.stats.false_discovery_control). A well is
flagged only if its share also exceeds the control rate by `min_excess`, so a huge well with a tiny, real excess
is not called a new phenotype.
"""

import numpy as np
from scipy import optimize, stats

TEST_NAME = "one-sided beta-binomial test against the plate's control wells, Benjamini-Hochberg corrected"
# Fewer control wells than this cannot estimate the well-to-well spread of abstention: no test then.
MIN_CONTROL_WELLS = 4
MAX_CORRELATION = 0.9  # bounds the fitted intra-well correlation away from 1 (every cell of a well alike)


def beta_binomial_parameters(mean, correlation):
    """(a, b) of the beta-binomial with this mean rate and intra-well correlation (1 / (a + b + 1))."""
    total = (1 - correlation) / correlation
    return mean * total, (1 - mean) * total


def fit_control_rate(abstained, cells):
    """(mean rate, intra-well correlation) of abstention across control wells, by maximum likelihood of a
    beta-binomial. The rate is kept at least half a cell over all control cells: controls where no cell
    abstained cannot tell a rate of zero from a small one, and a zero rate would make any abstention significant."""
    k, n = np.asarray(abstained, float), np.asarray(cells, float)
    floor = 0.5 / (n.sum() + 1)

    def loss(params):
        return -stats.betabinom.logpmf(k, n, *beta_binomial_parameters(*params)).sum()

    start = [min(max(k.sum() / n.sum(), floor), 0.99), 0.01]
    fit = optimize.minimize(loss, start, method="L-BFGS-B", bounds=[(floor, 1 - 1e-6), (1e-6, MAX_CORRELATION)])
    return float(fit.x[0]), float(fit.x[1])


def flag_wells(wells, *, fdr=0.05, min_excess=0.1):
    """`wells` (well_table: plate, well, role, abstained, cells_found, abstained_share) with, per sample well,
    `unfamiliar_p` and `unfamiliar_q` (the test and its Benjamini-Hochberg correction over the plate's sample
    wells), `unfamiliar` (flagged) and `unfamiliar_note` (why, in words); and per plate {plate: {"rate",
    "correlation", "control_wells", "tested", "note"}}, the note saying why a plate was not tested."""
    wells = wells.assign(unfamiliar=False, unfamiliar_p=np.nan, unfamiliar_q=np.nan, unfamiliar_note="")
    baselines = {}
    for plate, on_plate in wells.groupby("plate", sort=True):
        controls = on_plate[on_plate["role"].str.endswith("_control") & (on_plate["cells_found"] > 0)]
        samples = on_plate[(on_plate["role"] == "sample") & (on_plate["cells_found"] > 0)]
        base = {"rate": np.nan, "correlation": np.nan, "control_wells": len(controls), "tested": 0, "note": ""}
        baselines[plate] = base
        if len(controls) < MIN_CONTROL_WELLS:
            base["note"] = (
                f"{len(controls)} control well(s) with cells cannot estimate the well-to-well spread of "
                f"abstention (at least {MIN_CONTROL_WELLS} are needed), so no well is tested"
            )
            continue
        base["rate"], base["correlation"] = fit_control_rate(controls["abstained"], controls["cells_found"])
        base["tested"] = len(samples)
        if samples.empty:
            continue
        a, b = beta_binomial_parameters(base["rate"], base["correlation"])
        # P(X >= k) as P(n - X <= n - k) with the shapes swapped: betabinom.sf is 1 - cdf, which rounds a tail
        # far below 1e-16 (a well where every cell abstained) to 0.
        n = samples["cells_found"].to_numpy()
        p = stats.betabinom.cdf(n - samples["abstained"].to_numpy(), n, b, a)
        q = stats.false_discovery_control(p, method="bh")
        wells.loc[samples.index, "unfamiliar_p"], wells.loc[samples.index, "unfamiliar_q"] = p, q
        excess = samples["abstained_share"].to_numpy() - base["rate"]
        flagged = samples.index[(q <= fdr) & (excess >= min_excess)]
        wells.loc[flagged, "unfamiliar"] = True
        wells.loc[flagged, "unfamiliar_note"] = [_note(row, base) for row in wells.loc[flagged].itertuples()]
    return wells, baselines


def _note(row, base):
    return (
        f"a phenotype the model has not seen: {row.abstained} of {row.cells_found} cells abstained "
        f"({row.abstained_share:.0%}) against {base['rate']:.1%} in the plate's {base['control_wells']} control "
        f"wells ({TEST_NAME}: q = {row.unfamiliar_q:.2g})"
    )


def _spread(correlation):
    """The fitted intra-well correlation in words."""
    if correlation <= 1e-5:
        return "no well-to-well spread beyond sampling"
    return f"intra-well correlation {correlation:.2g}"


def sentences(wells, baselines, *, fdr, min_excess, unit_word="cell"):
    """The findings: per plate, the control wells' abstention and the flagged sample wells, or why none was tested."""
    lines = []
    for plate, base in baselines.items():
        if base["note"]:
            lines.append(f"plate {plate}: no test for a phenotype the model has not seen: {base['note']}.")
            continue
        flagged = wells[(wells["plate"] == plate) & wells["unfamiliar"]]
        head = (
            f"plate {plate}: {base['rate']:.1%} of {unit_word}s abstained in its {base['control_wells']} control "
            f"wells (beta-binomial fit: {_spread(base['correlation'])}); {base['tested']} sample "
            f"well(s) tested ({TEST_NAME}, flagged at q <= {fdr:g} and at least {100 * min_excess:g} percentage "
            "points above that rate)"
        )
        names = ", ".join(
            f"{r.well} ({r.abstained} of {r.cells_found} {unit_word}s, {r.abstained_share:.0%}, "
            f"q = {r.unfamiliar_q:.2g})"
            for r in flagged.itertuples()
        )
        lines.append(
            head
            + (
                f": {len(flagged)} show a phenotype the model has not seen: {names}."
                if len(flagged)
                else ": none shows a phenotype the model has not seen."
            )
        )
    return lines
