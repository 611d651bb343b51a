"""Degenerate outputs: a network that gives many different tiles (cells) one and the same probabilities.

A network that ignores its input on part of a test side (a dead layer, an input
its normalisation blanks) gives those tiles one constant probability vector. It
need not be a collapse (95% of calls one class): the constant may be 0.54, and
the scores there measure the network's bias, not the cells.

The check reads the network's own probabilities: a run's test predictions are
temperature-scaled, and a temperature above 1 squeezes different outputs
together while one below 1 pushes them all towards 1.000 and 0.000, so
run_flags undoes it first. A saturated output (top probability SATURATED or
more) is compared on its log-probabilities, which floats keep apart where the
probabilities all round to 1.000: a sure network gives different cells
different ones, a dead network gives every cell the same. An output with a
class probability that underflowed to 0 cannot be told from another and is
left out.
"""

import numpy as np
import pandas as pd

from cellclass.evaluate.metrics import SCORE, classes_of
from cellclass.learn import calibration

# Tiles whose every class probability lies within TOLERANCE of one vector share "one output".
TOLERANCE = 1e-4
SATURATED = 0.999
# Saturated tiles share one output when every class's log-probability lies within LOG_TOLERANCE of one vector's
# (float noise between batches is orders of magnitude smaller; a sure network's spread, orders larger).
LOG_TOLERANCE = 1e-3
# The smallest normal float32: a softmax output below it has underflowed and carries no more information.
FLOOR = float(np.finfo(np.float32).tiny)
# A run is flagged when MIN_TILES tiles share one output; a unit (group, well) when UNIT_SHARE of its tiles do,
# and it has MIN_UNIT_TILES or more.
MIN_TILES = 20
UNIT_SHARE = 0.9
MIN_UNIT_TILES = 5
# A constant is a spike: its tiles are most of those within NEIGHBOURHOOD of it, where a dense but varying
# cloud of scores (many tiles on a big test side) spreads over many TOLERANCE-wide bins; LOG_NEIGHBOURHOOD
# is the same for log-probabilities.
NEIGHBOURHOOD = 0.01
LOG_NEIGHBOURHOOD = 0.1
# Candidate vectors tried, most populous first.
CANDIDATES = 20


def _spike(values, tolerance, neighbourhood):
    """(count, mask) of the largest set of rows of `values` within `tolerance` of one vector that are most of the
    rows within `neighbourhood` of it; (0, None) if none."""
    best = (0, None)
    if not len(values):
        return best
    bins, counts = np.unique(np.round(values / tolerance), axis=0, return_counts=True)
    for b in np.argsort(counts, kind="stable")[::-1][:CANDIDATES]:
        distance = np.abs(values - bins[b] * tolerance).max(axis=1)
        on = distance <= tolerance
        n = int(on.sum())
        if n > best[0] and 2 * n > (distance <= neighbourhood).sum():
            best = (n, on)
    return best


def constant_cluster(probabilities):
    """(count, vector) of the largest set of rows of `probabilities` (tiles x classes, the network's own) that
    share one output and are most of the rows near it: unsaturated rows within TOLERANCE, saturated ones
    within LOG_TOLERANCE in log-probability; (0, None) if none. Rows with a NaN, and saturated rows with a
    class below FLOOR, are left out."""
    p = np.asarray(probabilities, dtype=float)
    if not len(p):
        return 0, None
    p = p[~np.isnan(p).any(axis=1)]
    top = p.max(axis=1)
    unsure, sure = p[top < SATURATED], p[(top >= SATURATED) & (p.min(axis=1) >= FLOOR)]
    best = (0, None)
    for rows, values, tolerance, neighbourhood in (
        (unsure, unsure, TOLERANCE, NEIGHBOURHOOD),
        (sure, np.log(sure), LOG_TOLERANCE, LOG_NEIGHBOURHOOD),
    ):
        n, on = _spike(values, tolerance, neighbourhood)
        if n > best[0]:
            best = (n, rows[on].mean(axis=0))
    return best


def uncalibrated(probabilities, temperature):
    """The network's own probabilities from temperature-scaled ones (tiles x classes): the scaling undone,
    softmax(T log p). A row with a class that underflowed to 0 in scaling cannot be undone: NaN."""
    p = np.asarray(probabilities, dtype=float)
    if temperature == 1 or not len(p):
        return p
    raw = np.asarray(calibration.apply(p, 1 / temperature), dtype=float)
    raw[(p < FLOOR).any(axis=1)] = np.nan
    return raw


def unit_is_constant(probabilities):
    """Whether UNIT_SHARE or more of a unit's tiles (MIN_UNIT_TILES or more) share one output."""
    n, _ = constant_cluster(probabilities)
    return len(probabilities) >= MIN_UNIT_TILES and n >= UNIT_SHARE * len(probabilities)


def describe(vector, classes):
    """'p_a 0.5420, p_b 0.4580'."""
    return ", ".join(f"p_{c} {v:.4f}" for c, v in zip(classes, vector))


def run_flags(predictions, temperatures=None):
    """Per (run, test set): constant_groups, the test groups whose tiles (nearly) all share one output;
    constant_tiles, the most tiles sharing one output when MIN_TILES or more do (else 0), and constant_value,
    that output (the network's own, before temperature scaling); constant_output, whether either is found.
    `temperatures`: {(run, test set) as SCORE: the temperature its probabilities were scaled by}, 1 if absent."""
    rows = []
    for key, tiles in predictions.groupby(SCORE, sort=False):
        classes = classes_of(tiles)
        p = uncalibrated(tiles[[f"p_{c}" for c in classes]].to_numpy(float), (temperatures or {}).get(key, 1.0))
        n, vector = constant_cluster(p)
        groups = sum(unit_is_constant(p[at]) for at in tiles.groupby("group", sort=False).indices.values())
        many = n >= MIN_TILES
        rows.append(
            {
                **dict(zip(SCORE, key)),
                "constant_tiles": n if many else 0,
                "constant_value": describe(vector, classes) if many else "",
                "constant_groups": int(groups),
                "constant_output": many or groups > 0,
            }
        )
    return pd.DataFrame(
        rows, columns=[*SCORE, "constant_tiles", "constant_value", "constant_groups", "constant_output"]
    )
