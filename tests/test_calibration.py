"""Tests of agecurriculum.evaluation.calibration: ECE by hand and on synthetic data, temperature fit and scaling."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agecurriculum.data.records import IGNORE
from agecurriculum.evaluation import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    temperature_nll,
)
from agecurriculum.evaluation.calibration import MAX_TEMPERATURE, MIN_TEMPERATURE


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def sample_labels(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One class per row, drawn from that row's probabilities."""
    return (rng.random(len(probs))[:, None] > probs.cumsum(1)).sum(1)


def test_ece_by_hand():
    # 4 bins: (0, .25], (.25, .5], (.5, .75], (.75, 1]; confidences .9 (right) | .7 (wrong), .75 (right, on the edge:
    # bins are closed on the right), .6 (right) | .5 (wrong: a tie goes to class 0); the IGNORE item is left out.
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.25, 0.75], [0.6, 0.4], [0.2, 0.8], [0.5, 0.5]])
    targets = np.array([0, 1, 1, 0, IGNORE, 1])
    # bin 4: |1 - .9| = .1; bin 3: |2 - (.7 + .75 + .6)| = .05; bin 2: |0 - .5| = .5; over 5 known items.
    assert expected_calibration_error(probs, targets, n_bins=4) == pytest.approx((0.1 + 0.05 + 0.5) / 5)
    # One bin: |mean accuracy - mean confidence| = |3/5 - 3.45/5|.
    assert expected_calibration_error(probs, targets, n_bins=1) == pytest.approx(0.45 / 5)


def test_ece_edge_cases():
    assert math.isnan(expected_calibration_error(np.array([[0.5, 0.5]]), np.array([IGNORE])))
    assert expected_calibration_error(np.eye(3), np.arange(3)) == 0  # sure and right
    assert expected_calibration_error(np.eye(3), np.array([1, 2, 0])) == 1  # sure and wrong
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(np.eye(2), np.arange(2), n_bins=0)
    with pytest.raises(ValueError, match="targets must be in 0..1"):
        expected_calibration_error(np.eye(2), np.array([0, 2]))
    with pytest.raises(ValueError, match=r"expected \(N, K\)"):
        expected_calibration_error(np.eye(2), np.array([0, 1, 1]))


def test_ece_of_calibrated_and_overconfident_data():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 20000)
    probs = np.stack([confidence, 1 - confidence], 1)
    # Calibrated: class 0 (the top class) is right with exactly its stated probability; only sampling noise remains.
    calibrated = (rng.random(20000) > confidence).astype(int)
    assert expected_calibration_error(probs, calibrated) < 0.02
    # Overconfident: right 20 points less often than it says.
    overconfident = (rng.random(20000) > confidence - 0.2).astype(int)
    assert expected_calibration_error(probs, overconfident) == pytest.approx(0.2, abs=0.02)


@settings(max_examples=40)
@given(st.integers(1, 30), st.integers(2, 6), st.integers(1, 20), st.integers(0, 2**32 - 1))
def test_ece_is_a_fraction(n, k, n_bins, seed):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(k), size=n)
    targets = rng.choice([IGNORE, *range(k)], size=n)
    ece = expected_calibration_error(probs, targets, n_bins)
    assert math.isnan(ece) if (targets == IGNORE).all() else 0 <= ece <= 1


def test_apply_temperature_equals_scaling_the_logits():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 3, (50, 8))
    probs = softmax(z)
    for t in (0.3, 1.7, 8.0):
        np.testing.assert_allclose(apply_temperature(probs, t), softmax(z / t), rtol=1e-9, atol=1e-15)
    assert apply_temperature(probs, 1.0) is probs  # T = 1: the same array, not a renormalised copy
    # A class at probability 0 stays there; a low T sharpens, a high T flattens towards uniform.
    out = apply_temperature(np.array([[0.0, 0.2, 0.8]]), 0.5)
    np.testing.assert_allclose(out, [[0, 0.04 / 0.68, 0.64 / 0.68]])
    assert np.ptp(apply_temperature(probs, 1000.0), axis=1).max() < 0.01
    for bad in (0, -1, math.inf, math.nan):
        with pytest.raises(ValueError, match="positive finite"):
            apply_temperature(probs, bad)


@pytest.mark.parametrize("scale", [2.0, 1.0, 0.5])
def test_fit_temperature_recovers_a_known_temperature(scale):
    # Labels drawn from softmax(z); the model reports softmax(z * scale): overconfident by a factor `scale`
    # (T = scale undoes it), or underconfident for scale < 1.
    rng = np.random.default_rng(2)
    z = rng.normal(0, 1.5, (20000, 4))
    labels = sample_labels(softmax(z), rng)
    reported = softmax(z * scale)
    t = fit_temperature(reported, labels)
    assert t == pytest.approx(scale, rel=0.05)
    if scale != 1:  # scaling by the fitted temperature makes the probabilities calibrated again
        before = expected_calibration_error(reported, labels)
        after = expected_calibration_error(apply_temperature(reported, t), labels)
        assert after < 0.02 < before


def test_fit_temperature_finds_the_nll_minimum():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.full(3, 0.3), size=300)
    labels = sample_labels(apply_temperature(probs, 0.7), rng)
    labels[:20] = IGNORE
    t = fit_temperature(probs, labels)
    best = temperature_nll(probs, labels, t)
    for other in np.geomspace(MIN_TEMPERATURE, MAX_TEMPERATURE, 200):
        assert best <= temperature_nll(probs, labels, other) + 1e-9
    # The NLL only counts known labels: dropping the IGNORE rows changes nothing.
    assert fit_temperature(probs[20:], labels[20:]) == t
    # Labels unrelated to the probabilities: the flatter the better, up to the end of the searched range.
    assert fit_temperature(probs, rng.integers(0, 3, 300)) == pytest.approx(MAX_TEMPERATURE, rel=1e-3)
    with pytest.raises(ValueError, match="no known targets"):
        fit_temperature(probs[:3], np.full(3, IGNORE))


def test_temperature_nll_by_hand():
    probs = np.array([[0.8, 0.2], [0.5, 0.5], [0.0, 1.0]])
    targets = np.array([0, 1, IGNORE])
    assert temperature_nll(probs, targets, 1.0) == pytest.approx(-(math.log(0.8) + math.log(0.5)) / 2)
    # T = 0.5 squares the probabilities: 0.64 / 0.68 for the first row, 0.5 for the second.
    assert temperature_nll(probs, targets, 0.5) == pytest.approx(-(math.log(0.64 / 0.68) + math.log(0.5)) / 2)
    # A true class at probability 0 costs a finite (large) amount.
    assert 700 < temperature_nll(np.array([[1.0, 0.0]]), np.array([1]), 1.0) < 710
