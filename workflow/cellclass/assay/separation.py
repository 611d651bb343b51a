"""How far apart a plate's control wells are: the Z'-factor and the strictly standardised mean difference."""

import numpy as np


def z_prime(positive, negative):
    """Z' = 1 - 3 (sd+ + sd-) / |mean+ - mean-|, sample standard deviations; nan with fewer than 2 of either."""
    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    if len(positive) < 2 or len(negative) < 2:
        return np.nan
    gap = abs(positive.mean() - negative.mean())
    spread = 3 * (positive.std(ddof=1) + negative.std(ddof=1))
    return 1 - spread / gap if gap > 0 else -np.inf


def ssmd(positive, negative):
    """SSMD = (mean+ - mean-) / sqrt(var+ + var-), sample variances; nan with fewer than 2 of either."""
    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    if len(positive) < 2 or len(negative) < 2:
        return np.nan
    spread = np.sqrt(positive.var(ddof=1) + negative.var(ddof=1))
    gap = positive.mean() - negative.mean()
    return gap / spread if spread > 0 else np.sign(gap) * np.inf
