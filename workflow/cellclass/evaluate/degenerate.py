"""Degenerate outputs: a network that gives many different tiles (cells) one and the same probabilities.

A network that ignores its input on part of a test side (a dead layer, an input
its normalisation blanks) gives those tiles one constant probability vector. It
need not be a collapse (95% of calls one class): the constant may be 0.54, and
the scores there measure the network's bias, not the cells. Tiles whose top
probability is SATURATED or more are not counted: a sure network rightly gives
many cells 1.000 for their class.
"""

import numpy as np
import pandas as pd

from cellclass.evaluate.metrics import SCORE, classes_of

# Tiles whose every class probability lies within TOLERANCE of one vector share "one output".
TOLERANCE = 1e-4
SATURATED = 0.999
# A run is flagged when MIN_TILES tiles share one output; a unit (group, well) when UNIT_SHARE of its tiles do,
# and it has MIN_UNIT_TILES or more.
MIN_TILES = 20
UNIT_SHARE = 0.9
MIN_UNIT_TILES = 5
# A constant is a spike: its tiles are most of those within NEIGHBOURHOOD of it, where a dense but varying
# cloud of scores (many tiles on a big test side) spreads over many TOLERANCE-wide bins.
NEIGHBOURHOOD = 0.01
# Candidate vectors tried, most populous first.
CANDIDATES = 20


def constant_cluster(probabilities):
    """(count, vector) of the largest set of unsaturated rows of `probabilities` (tiles x classes) that lie
    within TOLERANCE of one vector and are most of the rows within NEIGHBOURHOOD of it; (0, None) if none."""
    p = np.asarray(probabilities, dtype=float)
    p = p[p.max(axis=1) < SATURATED] if len(p) else p
    best = (0, None)
    if not len(p):
        return best
    bins, counts = np.unique(np.round(p / TOLERANCE), axis=0, return_counts=True)
    for b in np.argsort(counts, kind="stable")[::-1][:CANDIDATES]:
        distance = np.abs(p - bins[b] * TOLERANCE).max(axis=1)
        on = distance <= TOLERANCE
        n = int(on.sum())
        if n > best[0] and 2 * n > (distance <= NEIGHBOURHOOD).sum():
            best = (n, p[on].mean(axis=0))
    return best


def unit_is_constant(probabilities):
    """Whether UNIT_SHARE or more of a unit's tiles (MIN_UNIT_TILES or more) share one output."""
    n, _ = constant_cluster(probabilities)
    return len(probabilities) >= MIN_UNIT_TILES and n >= UNIT_SHARE * len(probabilities)


def describe(vector, classes):
    """'p_a 0.5420, p_b 0.4580'."""
    return ", ".join(f"p_{c} {v:.4f}" for c, v in zip(classes, vector))


def run_flags(predictions):
    """Per (run, test set): constant_groups, the test groups whose tiles (nearly) all share one output;
    constant_tiles, the most tiles sharing one output when MIN_TILES or more do (else 0), and constant_value,
    that output; constant_output, whether either is found."""
    rows = []
    for key, tiles in predictions.groupby(SCORE, sort=False):
        columns = [f"p_{c}" for c in classes_of(tiles)]
        n, vector = constant_cluster(tiles[columns].to_numpy(float))
        groups = sum(unit_is_constant(g[columns].to_numpy(float)) for _, g in tiles.groupby("group", sort=False))
        many = n >= MIN_TILES
        rows.append({
            **dict(zip(SCORE, key)), "constant_tiles": n if many else 0,
            "constant_value": describe(vector, classes_of(tiles)) if many else "",
            "constant_groups": int(groups), "constant_output": many or groups > 0,
        })
    return pd.DataFrame(rows, columns=[*SCORE, "constant_tiles", "constant_value", "constant_groups",
                                       "constant_output"])
