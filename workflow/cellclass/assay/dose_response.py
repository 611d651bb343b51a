"""The dose-response of a plate's sample wells: a four-parameter logistic fit (scipy.optimize.curve_fit)."""

import warnings

import numpy as np
from scipy import optimize, stats

# Scores are probabilities: a fitted rise smaller than this is no dose-response.
MIN_RESPONSE = 0.05


def logistic4(dose, bottom, top, log_ec50, hill):
    """The four-parameter logistic in log10 dose: bottom at no dose, top at saturation, half-way at EC50."""
    return bottom + (top - bottom) / (1 + 10 ** ((log_ec50 - np.log10(dose)) * hill))


def fit_dose_response(dose, score):
    """4PL fit of scores against doses (> 0): EC50 with a 95% interval (t on log10 EC50), Hill slope, bottom, top;
    `converged` False with a `note` when the fit fails or its EC50 is not determined by the data."""
    dose, score = np.asarray(dose, float), np.asarray(score, float)
    keep = np.isfinite(dose) & (dose > 0) & np.isfinite(score)
    dose, score = dose[keep], score[keep]
    result = {
        "n_wells": len(dose),
        "n_doses": len(np.unique(dose)),
        "ec50": np.nan,
        "ec50_low": np.nan,
        "ec50_high": np.nan,
        "hill": np.nan,
        "bottom": np.nan,
        "top": np.nan,
        "converged": False,
        "note": "",
    }
    if result["n_doses"] < 4 or len(dose) < 5:
        result["note"] = f"{result['n_doses']} doses in {len(dose)} wells; a 4-parameter fit needs 4 doses and 5 wells"
        return result
    logs = np.log10(dose)
    start = [score.min(), score.max(), np.median(logs), 1.0]
    bounds = ([-0.5, -0.5, logs.min() - 3, -10], [1.5, 1.5, logs.max() + 3, 10])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", optimize.OptimizeWarning)
            params, covariance = optimize.curve_fit(logistic4, dose, score, p0=start, bounds=bounds, maxfev=20000)
    except (RuntimeError, optimize.OptimizeWarning, ValueError) as error:
        result["note"] = f"the fit did not converge ({error})"
        return result
    bottom, top, log_ec50, hill = params
    if abs(top - bottom) < MIN_RESPONSE:
        result["note"] = f"no dose-response: the fitted curve rises by {abs(top - bottom):.3f}, under {MIN_RESPONSE}"
        return result
    se = np.sqrt(np.diag(covariance))[2]
    t = stats.t.ppf(0.975, len(dose) - 4)
    result.update(ec50=10**log_ec50, hill=hill, bottom=bottom, top=top, converged=bool(np.isfinite(se)))
    notes = []
    if np.isfinite(se):
        result.update(ec50_low=10 ** (log_ec50 - t * se), ec50_high=10 ** (log_ec50 + t * se))
        if 2 * t * se > 2:
            notes.append("the EC50 is poorly determined (its interval spans over 100-fold)")
    else:
        notes.append("the fit's EC50 has no finite standard error")
    if not logs.min() <= log_ec50 <= logs.max():
        notes.append("the EC50 lies outside the tested doses, so it is an extrapolation")
    if abs(hill) >= bounds[1][3] - 1e-6:
        notes.append("the Hill slope is at its bound (a step between two doses)")
    result["note"] = "; ".join(notes)
    return result
