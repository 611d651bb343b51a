"""Statistics across runs: bootstrap intervals over test groups and runs, paired comparisons, Holm's correction.

The test groups (wells, images) are the independent units, so intervals resample
groups (every tile of a group goes together) as well as runs (training seeds, and
folds under cross-validation, where each run tests only its fold's groups). A
comparison pairs two models on the same test set, run by run (fold and seed).
"""

import warnings

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from cellclass.evaluate.metrics import rollup

# Fewer test groups of some class than this, and there is no interval to give.
MIN_GROUPS = 2
# An exact two-sided signed-rank test cannot give p < 0.05 with fewer pairs (2 / 2**5 = 0.0625).
MIN_PAIRS = 6


def run_keys(tiles):
    """The (fold, seed) runs present in `tiles`, sorted."""
    return sorted(set(zip(tiles["fold"].astype(int), tiles["seed"].astype(int))))


def correct_counts(tiles, classes, level, runs):
    """(C, N, groups): C[r, g, k] correct units of true class k in group g for run r = (fold, seed), and
    N[r, g, k] the units there (zero where the run did not test the group: another fold's)."""
    groups = sorted(tiles["group"].unique())
    g_index = {g: i for i, g in enumerate(groups)}
    k_index = {c: i for i, c in enumerate(classes)}
    C = np.zeros((len(runs), len(groups), len(classes)))
    N = np.zeros_like(C)
    for r, (fold, seed) in enumerate(runs):
        units = rollup(tiles[(tiles["fold"] == fold) & (tiles["seed"] == seed)], level)
        g = units["group"].map(g_index).to_numpy(int)
        k = units["true"].map(k_index).to_numpy(int)
        np.add.at(C[r], (g, k), (units["true"] == units["predicted"]).to_numpy(float))
        np.add.at(N[r], (g, k), 1.0)
    return C, N, groups


def by_seed(C, N, runs):
    """Counts of each seed's runs added up over its folds: (C, N) with one row per seed.

    Under cross-validation a seed's folds together test every group, so the seed,
    not the single run, is the replicate a bootstrap resamples; with one fold,
    runs are seeds and nothing changes.
    """
    seeds = sorted({seed for _, seed in runs})
    rows = [[i for i, (_, s) in enumerate(runs) if s == seed] for seed in seeds]
    return np.stack([C[r].sum(axis=0) for r in rows]), np.stack([N[r].sum(axis=0) for r in rows])


def replicates(C, N, runs):
    """What a bootstrap resamples besides groups: the runs when they all tested the same groups (a single split,
    or an independent test set scored by every fold's run), else each seed's folds pooled (cross-validation's
    own test side, where each fold's run tests other groups)."""
    tested = N.sum(axis=2) > 0
    return (C, N) if (tested == tested[0]).all() else by_seed(C, N, runs)


def _metric(correct, total, metric):
    """Accuracy or balanced accuracy from per-class correct and total counts (last axis: classes)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "accuracy":
            return correct.sum(-1) / total.sum(-1)
        recall = np.where(total > 0, correct / total, np.nan)
        with warnings.catch_warnings():  # a resample that drew none of a run's groups: NaN, skipped by the caller
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(recall, axis=-1)


def _weights(index, size):
    """Resample counts: (..., n) indices -> (..., size) how often each was drawn."""
    return (index[..., None] == np.arange(size)).sum(axis=-2)


def interval(C, N, metric="balanced_accuracy", *, resamples=999, seed=0, level=0.95):
    """Mean over replicates (rows of C: seeds, see by_seed) of `metric`, and a percentile bootstrap interval
    over test groups and replicates.

    Each resample draws test groups and replicates with replacement and averages
    the replicates' metrics on the drawn groups. Both metrics are linear in the
    correct counts for fixed totals, so C may hold the difference of two models'
    counts on the same test sides: the interval of a paired comparison. With
    fewer than MIN_GROUPS test groups of some class there is no interval (NaN);
    with one replicate only groups are resampled.
    """
    R, G, _ = C.shape
    if not N.any():  # nothing scored: every unit at this level held several classes
        return np.nan, np.nan, np.nan
    point = float(np.mean(per_run(C, N, metric)))
    groups_per_class = (N.sum(axis=0) > 0).sum(axis=0)
    if groups_per_class[groups_per_class > 0].min(initial=G) < MIN_GROUPS:
        return point, np.nan, np.nan  # resampling one group of a class says nothing about its spread

    def statistic(*index, axis=-1):
        wg = _weights(np.atleast_2d(index[0]), G).astype(float)  # (B, G)
        wr = _weights(np.atleast_2d(index[1]), R).astype(float) if R > 1 else np.ones((wg.shape[0], 1))
        correct = np.einsum("bg,rgk->brk", wg, C)
        total = np.einsum("bg,rgk->brk", wg, N)
        per = _metric(correct, total, metric)  # (B, R); NaN where a run drew none of its groups
        drawn = wr * ~np.isnan(per)
        return np.nansum(per * wr, axis=1) / drawn.sum(axis=1)

    data = (np.arange(G),) if R == 1 else (np.arange(G), np.arange(R))
    with np.errstate(invalid="ignore"):
        result = stats.bootstrap(
            data,
            statistic,
            paired=False,
            vectorized=True,
            n_resamples=resamples,
            batch=100,
            confidence_level=level,
            method="percentile",
            random_state=np.random.default_rng(seed),
        )
    return point, float(result.confidence_interval.low), float(result.confidence_interval.high)


def per_run(C, N, metric="balanced_accuracy"):
    """`metric` of each run (rows of C) on the groups it tested."""
    return np.array([_metric(C[r].sum(0), N[r].sum(0), metric) for r in range(len(C))])


def signed_rank(differences):
    """Wilcoxon signed-rank p-value of paired differences; NaN when too few pairs could ever reach 0.05, or when
    every difference is zero (nothing to rank)."""
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
