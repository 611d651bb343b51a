"""Temperature scaling on synthetic over-confident softmax outputs whose true temperature is known."""

import numpy as np
import pytest
from scipy.special import logsumexp, softmax
from sklearn.metrics import log_loss

from cellclass.learn import calibration


def overconfident(n, temperature, seed, classes=3):
    """Softmax outputs of logits `temperature` times too sharp, and labels drawn from the calibrated ones: fitting
    should find `temperature`."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, classes))
    labels = np.array([rng.choice(classes, p=p) for p in softmax(logits, axis=1)])
    return softmax(logits * temperature, axis=1).astype(np.float32), labels


def test_the_fit_recovers_a_known_temperature():
    probabilities, labels = overconfident(4000, 2.5, seed=0)
    assert calibration.fit(probabilities, labels) == pytest.approx(2.5, rel=0.15)
    probabilities, labels = overconfident(4000, 0.5, seed=1)  # under-confident: sharpened
    assert calibration.fit(probabilities, labels) == pytest.approx(0.5, rel=0.15)


def test_held_out_tiles_of_the_same_kind_are_better_calibrated():
    fitted_on, fitted_labels = overconfident(1000, 3.0, seed=2)
    held_out, labels = overconfident(1000, 3.0, seed=3)
    temperature = calibration.fit(fitted_on, fitted_labels)
    scaled = calibration.apply(held_out, temperature)
    seen = calibration.effect(held_out, scaled, labels)
    assert seen["ece_after"] < seen["ece_before"] / 2 and seen["log_loss_after"] < seen["log_loss_before"]
    assert seen["tiles"] == 1000
    # Calls never change: a temperature keeps the order of the classes.
    assert (scaled.argmax(axis=1) == held_out.argmax(axis=1)).all()
    np.testing.assert_allclose(scaled.sum(axis=1), 1, atol=1e-5)
    assert scaled.dtype == np.float32


def test_temperature_one_changes_nothing_and_zeros_stay_finite():
    probabilities, _ = overconfident(50, 2.0, seed=4)
    assert calibration.apply(probabilities, 1.0) is probabilities
    saturated = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)  # a softmax that underflowed
    scaled = calibration.apply(saturated, 50.0)
    assert np.isfinite(scaled).all() and (scaled.argmax(axis=1) == [0, 1]).all() and scaled.max() < 1


def hand_temperature(probabilities, labels, grid):
    """The temperature on `grid` with the least negative log-likelihood of `labels`, computed here by hand:
    mean over tiles of logsumexp(log p / T) - log p[label] / T."""
    logits = np.log(probabilities.astype(np.float64))
    nll = [np.mean(logsumexp(logits / t, axis=1) - logits[np.arange(len(labels)), labels] / t) for t in grid]
    return grid[np.argmin(nll)]


def test_each_member_gets_its_own_fitted_temperature():
    """Two members scoring the same tiles, one too sharp (T0 = 2.5) and one too soft (T0 = 0.5): each fit lands
    where a hand grid search of the log-likelihood does, near its T0, and per_member applies each member's
    own temperature, so each member's calibrated probabilities are softmax(log p / T) with its T, not the
    other's."""
    rng = np.random.default_rng(7)
    logits = rng.normal(0, 1.5, (4000, 3))
    labels = (softmax(logits, axis=1).cumsum(axis=1)[:, :-1] < rng.random((4000, 1))).sum(axis=1)  # from softmax
    scores = np.stack([softmax(logits * t0, axis=1) for t0 in (2.5, 0.5)]).astype(np.float32)
    grid = np.exp(np.arange(-2.0, 2.0, 0.005))  # steps of 0.5% in T
    temperatures = [calibration.fit(member, labels) for member in scores]
    for member, t0, t in zip(scores, (2.5, 0.5), temperatures):
        assert abs(np.log(t) - np.log(hand_temperature(member, labels, grid))) <= 0.005  # within a grid step
        assert t == pytest.approx(t0, rel=0.1)
    scaled = calibration.per_member(scores, temperatures)
    assert scaled.shape == scores.shape and scaled.dtype == np.float32
    for member, t, calibrated in zip(scores, temperatures, scaled):
        np.testing.assert_allclose(calibrated, softmax(np.log(member.astype(np.float64)) / t, axis=1), atol=1e-6)
    # Calibrated with its own temperature, each member is close to the true probabilities; with the other's, far.
    truth = softmax(logits, axis=1)
    assert np.abs(scaled - truth).max() < 0.05
    assert np.abs(calibration.per_member(scores, temperatures[::-1]) - truth).max(axis=(1, 2)).min() > 0.3


def test_the_record_says_what_the_temperature_was_fitted_on():
    assert calibration.record(1.7, 48) == {
        "temperature": 1.7,
        "fitted_on": "validation side's calibration part, 48 tiles",
    }
    assert calibration.record(1.0, None)["note"] == "no validation side: uncalibrated"
    assert (
        calibration.record(1.2, 53, ["b", "c"])["fitted_on"]
        == "validation side's calibration part, 53 tiles (none of b, c)"
    )
    # A validation side called right throughout only ever asks for sharper probabilities: the fit ends at its bound.
    right = np.array([[0.8, 0.2], [0.3, 0.7], [0.9, 0.1]], np.float32)
    temperature = calibration.fit(right, [0, 1, 0])
    assert temperature == pytest.approx(np.exp(calibration.LOG_BOUNDS[0]), rel=0.02)
    assert "lower bound" in calibration.record(temperature, 3)["note"]


def test_an_under_confident_ensemble_gets_a_temperature_below_one_and_a_confident_one_none():
    """Two members that lean opposite ways on every tile: their mean gives the call 0.55 while 90% of the calls
    are right, so mean confidence falls below accuracy and a sharper temperature fits; a mean that is already
    sure keeps temperature 1."""
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 2000)
    right = np.where(rng.random(2000) < 0.9, labels, 1 - labels)  # 90% called right
    sure = np.eye(2)[right] * 0.5 + 0.25  # 0.75 on the call
    members = np.stack([sure, 1 - sure * 0.6 - 0.2])  # the second: 0.35 on the call
    mean = calibration.ensemble(members)
    np.testing.assert_allclose(mean, members.mean(axis=0))
    fitted = calibration.ensemble_fit(mean, labels)
    assert fitted["under_confident"] and fitted["mean_confidence"] < fitted["accuracy"] == pytest.approx(0.9, abs=0.03)
    assert fitted["temperature"] < 1 and fitted["tiles"] == 2000 and "fitted" in fitted["note"]
    sharpened = calibration.apply(mean, fitted["temperature"])
    assert log_loss(labels, sharpened) < log_loss(labels, mean)
    assert calibration.ensemble_temperature(mean, labels) == fitted["temperature"]
    np.testing.assert_allclose(calibration.ensemble(members, fitted["temperature"]), sharpened)
    confident = calibration.ensemble_fit(np.eye(2)[right] * 0.98 + 0.01, labels)
    assert confident["temperature"] == 1.0 and not confident["under_confident"]
    assert calibration.ensemble_fit(np.empty((0, 2)), [])["temperature"] == 1.0
    # Every held-out tile right: any mean confidence is "below" accuracy 1, and the fit runs to its bound.
    all_right = calibration.ensemble_fit(np.eye(2)[labels] * 0.4 + 0.3, labels)
    assert all_right["temperature"] == 1.0 and "2000 held-out tiles" in all_right["note"]
    assert "ran to its lower bound" in all_right["note"]
