"""Temperature scaling: one number per run that makes its softmax confidence match its hit rate.

The networks end in a softmax, so the log of their probabilities are logits (up to a constant per tile, which
the softmax ignores). Dividing them by a temperature T > 1 softens over-confident probabilities, T < 1 sharpens
them; the most probable class never changes. T is fitted on the run's validation side (the part that chose no
epoch: cellclass.learn.validation), never its test side, by minimising the log loss (Guo et al. 2017, "On
calibration of modern neural networks"). An ensemble averages its members' calibrated probabilities; where that
mean is under-confident, one more temperature for the ensemble sharpens it (ensemble_fit).
"""

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import softmax
from sklearn.metrics import log_loss

# T between e^-3 and e^3 (0.05 to 20): wide enough for any network we train, bounded for a tiny validation side.
LOG_BOUNDS = (-3.0, 3.0)
UNCALIBRATED = "no validation side: uncalibrated"


def apply(probabilities, temperature):
    """Calibrated probabilities: softmax(log p / T) over the last axis; T = 1 gives `probabilities` back as they are."""
    if temperature == 1:
        return probabilities
    # A softmax output can underflow to 0; its log is then the float32 floor, not -inf.
    logits = np.log(np.maximum(np.asarray(probabilities, np.float64), np.finfo(np.float32).tiny))
    return softmax(logits / temperature, axis=-1).astype(np.asarray(probabilities).dtype)


def per_member(scores, temperatures):
    """(members, tiles, classes) probabilities with each member's own temperature applied."""
    return np.stack([apply(member, t) for member, t in zip(scores, temperatures)]) if len(scores) else scores


def fit(probabilities, labels):
    """The temperature that minimises the log loss of `probabilities` ((tiles, classes)) for the true class
    indices `labels`."""
    probabilities, labels = np.asarray(probabilities, np.float64), np.asarray(labels)
    classes = np.arange(probabilities.shape[1])

    def loss(log_t):
        return log_loss(labels, apply(probabilities, np.exp(log_t)), labels=classes)

    return float(np.exp(minimize_scalar(loss, bounds=LOG_BOUNDS, method="bounded").x))


def ece(confidence, correct, bins=10):
    """Expected calibration error of top-class confidence in `bins` equal bins (not in scikit-learn): the mean over
    bins, weighted by their share of tiles, of |hit rate - mean confidence|. Bins are (low, high]."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.digitize(confidence, edges[1:-1], right=True)
    counts = np.bincount(which, minlength=bins)
    filled = counts > 0
    mean_conf = np.bincount(which, confidence, minlength=bins)[filled] / counts[filled]
    hit_rate = np.bincount(which, correct.astype(float), minlength=bins)[filled] / counts[filled]
    return float(np.sum(counts[filled] / len(confidence) * np.abs(hit_rate - mean_conf)))


def scores(probabilities, labels):
    """ECE and log loss of (tiles, classes) `probabilities` for the true class indices `labels`."""
    probabilities = np.asarray(probabilities, np.float64)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)  # float32 sums stray from 1
    labels = np.asarray(labels)
    return {
        "ece": ece(probabilities.max(axis=1), probabilities.argmax(axis=1) == labels),
        "log_loss": float(log_loss(labels, probabilities, labels=np.arange(probabilities.shape[1]))),
    }


def effect(raw, calibrated, labels):
    """Per tile, before and after calibration: ECE and log loss, and how many tiles they were measured on."""
    before, after = scores(raw, labels), scores(calibrated, labels)
    return {
        "tiles": len(labels),
        "ece_before": before["ece"],
        "ece_after": after["ece"],
        "log_loss_before": before["log_loss"],
        "log_loss_after": after["log_loss"],
    }


def ensemble(member_probabilities, temperature=1.0):
    """What an ensemble calls with: the mean over members of their calibrated probabilities ((members, tiles,
    classes), each with its member's temperature applied: per_member), then the ensemble's own `temperature`."""
    return apply(np.mean(np.asarray(member_probabilities), axis=0), temperature)


def confidence_and_accuracy(probabilities, labels):
    """Mean top-class probability and the share of tiles whose top class is the true one."""
    probabilities = np.asarray(probabilities, np.float64)
    return float(probabilities.max(axis=1).mean()), float((probabilities.argmax(axis=1) == np.asarray(labels)).mean())


def ensemble_fit(probabilities, labels):
    """The ensemble's temperature, fitted on held-out tiles (the validation side's calibration part) with the
    ensemble's mean probabilities `probabilities` (ensemble(...) at temperature 1) and true class indices `labels`.

    Members calibrated one by one can, averaged, be under-confident: where they disagree the mean is pulled
    towards uniform. Only then (mean confidence below accuracy on these tiles) is a temperature fitted (it
    comes out below 1, sharpening); otherwise it stays 1. Returns {temperature, tiles, mean_confidence,
    accuracy, under_confident, note}."""
    labels = np.asarray(labels)
    if not len(labels):
        return {
            "temperature": 1.0,
            "tiles": 0,
            "mean_confidence": None,
            "accuracy": None,
            "under_confident": None,
            "note": "no held-out tiles to fit on: kept at 1",
        }
    confidence, accuracy = confidence_and_accuracy(probabilities, labels)
    under = confidence < accuracy
    temperature = fit(probabilities, labels) if under else 1.0
    seen = f"{len(labels)} held-out tiles (mean confidence {confidence:.3f}, accuracy {accuracy:.3f})"
    note = f"under-confident on {seen}: fitted" if under else f"not under-confident on {seen}: kept at 1"
    if under and np.isclose(np.log(temperature), LOG_BOUNDS[0], atol=0.01):
        # (Nearly) every tile called right: the log loss falls all the way to the bound, which then decides.
        temperature, note = 1.0, f"the fit on {seen} ran to its lower bound, which decides it, not the tiles: kept at 1"
    return {
        "temperature": temperature,
        "tiles": len(labels),
        "mean_confidence": confidence,
        "accuracy": accuracy,
        "under_confident": bool(under),
        "note": note,
    }


def ensemble_temperature(probabilities, labels):
    """ensemble_fit's temperature: what prediction applies to the members' mean (ensemble(..., temperature))."""
    return ensemble_fit(probabilities, labels)["temperature"]


def temperature_of(metrics):
    """A run's temperature from its metrics.json; 1 (uncalibrated) for a run from before calibration."""
    return (metrics.get("calibration") or {}).get("temperature", 1.0)


def record(temperature, tiles, missing=()):
    """metrics.json's `calibration`: the temperature and what it was fitted on (`tiles` validation tiles, None
    without a validation side; `missing`: classes it had no tile of, whose calls the fit never saw)."""
    if tiles is None:
        return {"temperature": 1.0, "fitted_on": None, "note": UNCALIBRATED}
    lacking = f" (none of {', '.join(missing)})" if len(missing) else ""
    fitted = {"temperature": temperature, "fitted_on": f"validation side's calibration part, {tiles} tiles{lacking}"}
    low, high = np.isclose(np.log(temperature), LOG_BOUNDS, atol=0.01)
    # The log loss falls towards T = 0 only when every validation tile is called right, and rises everywhere
    # above T = 1 only when the calls are no better than a uniform guess: the bound, not the data, then decides.
    if low:
        fitted["note"] = "at the lower bound: every validation tile was called right, so the fit could only sharpen"
    if high:
        fitted["note"] = "at the upper bound: the validation calls are no better than a guess"
    return fitted
