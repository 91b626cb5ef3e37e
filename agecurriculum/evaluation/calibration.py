"""Calibration: how far a model's confidence is from its accuracy, and temperature scaling to close the gap.

- :func:`expected_calibration_error`: top-label ECE over equal-width confidence bins (Guo et al., 2017).
- :func:`fit_temperature`: the temperature ``T`` that minimises the negative log-likelihood of validation labels.
- :func:`apply_temperature`: ``softmax(log(p) / T)``, i.e. ``p ** (1 / T)`` renormalised.

Temperature scaling is done on *probabilities*, not logits, because that is what every backend returns (the ONNX
export ends in the softmax). The two are the same thing: ``softmax(z)`` has ``log p = z - logsumexp(z)``, and the
constant per row cancels in the softmax, so ``softmax(log(p) / T) = softmax(z / T)``. ``T > 1`` softens an
overconfident model; ``T = 1`` changes nothing.
"""

from __future__ import annotations

import math

import numpy as np

from agecurriculum.data.records import IGNORE

__all__ = [
    "MAX_TEMPERATURE",
    "MIN_TEMPERATURE",
    "apply_temperature",
    "expected_calibration_error",
    "fit_temperature",
    "temperature_nll",
]

# The range fit_temperature searches: far beyond any temperature a trained classifier is fitted to (typically
# 1-3), while keeping p ** (1 / T) away from float64 underflow for every probability a softmax returns.
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0
_GOLDEN = (math.sqrt(5) - 1) / 2  # golden-section ratio, ~0.618


def _known(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``probs`` and ``targets`` whose target is known (not IGNORE), after checking the shapes."""
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets)
    if probs.ndim != 2 or targets.shape != (len(probs),):
        raise ValueError(f"expected (N, K) probabilities and N targets, got {probs.shape} and {targets.shape}")
    known = targets != IGNORE
    targets = targets[known].astype(np.int64)
    if ((targets < 0) | (targets >= probs.shape[1])).any():
        raise ValueError(f"targets must be in 0..{probs.shape[1] - 1} or IGNORE ({IGNORE})")
    return probs[known], targets


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, n_bins: int = 15) -> float:
    """Top-label expected calibration error: ``sum_b |B_b| / N * |accuracy(B_b) - confidence(B_b)|``.

    Each item's confidence is its largest probability; the items are grouped by confidence into ``n_bins``
    equal-width bins ``(0, 1/n], (1/n, 2/n], ..., ((n-1)/n, 1]``, and in each bin the mean confidence is compared
    with the fraction whose argmax class is right. 0 for a calibrated model; at most 1.

    Args:
        probs: ``(N, K)`` predicted probabilities.
        targets: ``(N,)`` true classes; :data:`IGNORE` items are left out.
        n_bins: number of confidence bins (15, as in Guo et al.).

    Returns:
        The ECE as a fraction, NaN when no target is known.

    Raises:
        ValueError: shapes disagree, a target is out of range, or ``n_bins < 1``.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    probs, targets = _known(probs, targets)
    if not len(targets):
        return math.nan
    confidence = probs.max(1)
    correct = probs.argmax(1) == targets
    # side="left" puts a confidence equal to an inner edge into the bin below it: bins are closed on the right.
    bin_of = np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], confidence, side="left")
    # Per bin, |B| * |accuracy - confidence| = |sum over B of (correct - confidence)|.
    gap = np.bincount(bin_of, weights=correct - confidence, minlength=n_bins)
    return float(np.abs(gap).sum() / len(targets))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / T)`` row by row: ``probs ** (1 / T)`` renormalised (see the module docstring).

    ``T = 1`` returns ``probs`` itself, unchanged to the last bit (a release without a temperature must predict
    exactly what it did before temperatures existed).

    Args:
        probs: ``(..., K)`` probabilities, rows summing to 1.
        temperature: ``T > 0``.

    Returns:
        The tempered probabilities, float64, same shape.

    Raises:
        ValueError: ``temperature`` is not a positive finite number.
    """
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    probs = np.asarray(probs, dtype=np.float64)
    if temperature == 1:
        return probs
    with np.errstate(divide="ignore"):  # log(0) = -inf is right: that class stays at probability 0
        scaled = np.log(probs) / temperature
    # Subtracting the row maximum before exp keeps p ** (1/T) for small T from underflowing to 0 everywhere.
    scaled = np.exp(scaled - scaled.max(-1, keepdims=True))
    return scaled / scaled.sum(-1, keepdims=True)


def temperature_nll(probs: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the known ``targets`` under ``apply_temperature(probs, temperature)``.

    Probabilities are floored at the smallest positive float64 so that a class a softmax rounded to 0 costs a
    large but finite amount (about 708 nats) rather than making the mean infinite.
    """
    probs, targets = _known(probs, targets)
    if not len(targets):
        return math.nan
    logs = np.log(np.maximum(probs, np.finfo(np.float64).tiny)) / temperature
    top = logs.max(1)
    log_norm = top + np.log(np.exp(logs - top[:, None]).sum(1))  # logsumexp
    return float((log_norm - logs[np.arange(len(targets)), targets]).mean())


def fit_temperature(probs: np.ndarray, targets: np.ndarray, tolerance: float = 1e-4) -> float:
    """The temperature ``T`` in [:data:`MIN_TEMPERATURE`, :data:`MAX_TEMPERATURE`] minimising
    :func:`temperature_nll` on held-out (validation) predictions.

    The NLL is convex in ``1 / T`` (a log-sum-exp of terms linear in it, minus a linear term), hence unimodal in
    ``log T``, so a golden-section search over ``log T`` finds the minimum without gradients or a solver library.
    Fit on a validation split: on the training split the probabilities are overconfident, on the test split the
    measured calibration would no longer be a fair one.

    Args:
        probs: ``(N, K)`` predicted probabilities (e.g. :attr:`Predictions.gender_probs`).
        targets: ``(N,)`` true classes; :data:`IGNORE` items are left out.
        tolerance: stop when the search interval of ``log T`` is this narrow.

    Returns:
        The fitted ``T``. Apply it with :func:`apply_temperature`; store it in a release with
        :func:`~agecurriculum.release.write_release_temperature`.

    Raises:
        ValueError: shapes disagree, a target is out of range, or no target is known.
    """
    probs, targets = _known(probs, targets)
    if not len(targets):
        raise ValueError("no known targets to fit a temperature on")
    lo, hi = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)

    def nll(log_t: float) -> float:
        return temperature_nll(probs, targets, math.exp(log_t))

    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = nll(a), nll(b)
    while hi - lo > tolerance:
        if fa <= fb:  # the minimum lies in [lo, b]
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = nll(a)
        else:  # in [a, hi]
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = nll(b)
    return math.exp((lo + hi) / 2)
