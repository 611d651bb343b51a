"""Statistics across runs: bootstrap intervals over test groups and seeds, paired comparisons, Holm's correction.

The test groups (wells, images) are the independent units, so intervals resample
groups (every tile of a group goes together) as well as training seeds. A
comparison pairs two models on the same test set, seed by seed.
"""

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from cellclass.metrics import rollup

# Fewer test groups of some class than this, and there is no interval to give.
MIN_GROUPS = 2
# An exact two-sided signed-rank test cannot give p < 0.05 with fewer pairs (2 / 2**5 = 0.0625).
MIN_PAIRS = 6


def correct_counts(tiles, classes, level, seeds):
    """(C, N, groups): C[r, g, k] correct units of true class k in group g for seed r; N[g, k] units there."""
    groups = sorted(tiles["group"].unique())
    g_index = {g: i for i, g in enumerate(groups)}
    k_index = {c: i for i, c in enumerate(classes)}
    C = np.zeros((len(seeds), len(groups), len(classes)))
    N = np.zeros((len(groups), len(classes)))
    for r, seed in enumerate(seeds):
        units = rollup(tiles[tiles["seed"] == seed], level)
        g = units["group"].map(g_index).to_numpy()
        k = units["true"].map(k_index).to_numpy()
        np.add.at(C[r], (g, k), (units["true"] == units["predicted"]).to_numpy(float))
        if r == 0:
            np.add.at(N, (g, k), 1.0)
    return C, N, groups


def _metric(correct, total, metric):
    """Accuracy or balanced accuracy from per-class correct and total counts (last axis: classes)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "accuracy":
            return correct.sum(-1) / total.sum(-1)
        recall = np.where(total > 0, correct / total, np.nan)
        return np.nanmean(recall, axis=-1)


def _weights(index, size):
    """Resample counts: (..., n) indices -> (..., size) how often each was drawn."""
    return (index[..., None] == np.arange(size)).sum(axis=-2)


def interval(C, N, metric="balanced_accuracy", *, resamples=999, seed=0, level=0.95):
    """Mean over seeds of `metric`, and a percentile bootstrap interval over test groups and seeds.

    Both metrics are linear in the correct counts for fixed totals, so C may hold
    the difference of two models' counts on the same test set: the interval of a
    paired comparison. With fewer than MIN_GROUPS test groups of some class there
    is no interval (NaN); with one seed only groups are resampled.
    """
    R, G, _ = C.shape
    point = float(np.mean(per_seed(C, N, metric)))
    groups_per_class = (N > 0).sum(axis=0)
    if groups_per_class[groups_per_class > 0].min(initial=G) < MIN_GROUPS:
        return point, np.nan, np.nan  # resampling one group of a class says nothing about its spread

    def statistic(*index, axis=-1):
        wg = _weights(np.atleast_2d(index[0]), G).astype(float)  # (B, G)
        wr = _weights(np.atleast_2d(index[1]), R).astype(float) if R > 1 else np.ones((wg.shape[0], 1))
        correct = np.einsum("br,bg,rgk->bk", wr, wg, C) / wr.sum(1, keepdims=True)
        total = np.einsum("bg,gk->bk", wg, N)
        return _metric(correct, total, metric)

    data = (np.arange(G),) if R == 1 else (np.arange(G), np.arange(R))
    with np.errstate(invalid="ignore"):
        result = stats.bootstrap(
            data, statistic, paired=False, vectorized=True, n_resamples=resamples, batch=100,
            confidence_level=level, method="percentile", random_state=np.random.default_rng(seed),
        )
    return point, float(result.confidence_interval.low), float(result.confidence_interval.high)


def per_seed(C, N, metric="balanced_accuracy"):
    """`metric` of each seed (rows of C)."""
    return np.array([_metric(C[r].sum(0), N.sum(0), metric) for r in range(len(C))])


def signed_rank(differences):
    """Wilcoxon signed-rank p-value of paired differences, or NaN when too few pairs could ever reach 0.05."""
    differences = np.asarray(differences, dtype=float)
    if len(differences) < MIN_PAIRS or np.allclose(differences, 0):
        return np.nan
    return float(stats.wilcoxon(differences).pvalue)


def holm(p_values):
    """Holm-adjusted p-values (NaN stays NaN and does not count as a test)."""
    p = pd.Series(p_values, dtype=float)
    adjusted = pd.Series(np.nan, index=p.index)
    tested = p.notna()
    if tested.any():
        adjusted[tested] = multipletests(p[tested], method="holm")[1]
    return adjusted.to_numpy()
