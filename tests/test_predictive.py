"""Posterior-predictive metrics (sgworld.predictive): exact small cases and a calibrated predictor."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import Z_TOL, shifted_seed
from sgworld import predictive

PROBS = np.array([[0.7, 0.2, 0.1],    # predicts 0, confidence 0.7
                  [0.1, 0.6, 0.3],    # predicts 1, confidence 0.6
                  [0.25, 0.25, 0.5],  # predicts 2, confidence 0.5
                  [0.05, 0.05, 0.9]])  # predicts 2, confidence 0.9
LABELS = np.array([0, 2, 2, 1])


def test_accuracy_and_nll_by_hand():
    assert predictive.accuracy(PROBS, LABELS) == 0.5
    expected = -(math.log(0.7) + math.log(0.3) + math.log(0.5) + math.log(0.05)) / 4
    assert predictive.nll(PROBS, LABELS) == pytest.approx(expected, rel=1e-14)


def test_ece_and_reliability_by_hand():
    # Two bins: (0, 0.5] holds the point at 0.5 (correct), (0.5, 1] the other three (1 of 3 correct).
    rel = predictive.reliability(PROBS, LABELS, bins=2)
    np.testing.assert_array_equal(rel["count"], [1, 3])
    np.testing.assert_allclose(rel["accuracy"], [1.0, 1 / 3])
    np.testing.assert_allclose(rel["confidence"], [0.5, (0.7 + 0.6 + 0.9) / 3])
    expected = 0.25 * abs(1.0 - 0.5) + 0.75 * abs(1 / 3 - 2.2 / 3)
    assert rel["ece"] == pytest.approx(expected, rel=1e-14)
    assert predictive.expected_calibration_error(PROBS, LABELS, bins=2) == pytest.approx(expected)
    # Ten bins: every point alone in its bin, ECE = mean |correct - confidence|.
    alone = np.mean(np.abs(np.array([1, 0, 1, 0]) - np.array([0.7, 0.6, 0.5, 0.9])))
    assert predictive.expected_calibration_error(PROBS, LABELS, bins=10) == pytest.approx(alone)
    assert np.isnan(predictive.reliability(PROBS, LABELS, bins=10)["accuracy"][0])  # empty bin


def test_confidence_on_a_bin_edge_goes_to_the_lower_bin():
    probs = np.array([[0.5, 0.5], [1.0, 0.0]])
    rel = predictive.reliability(probs, np.array([0, 0]), bins=2)
    np.testing.assert_array_equal(rel["count"], [1, 1])  # 0.5 in (0, 0.5], 1.0 in (0.5, 1]


def test_mean_tv_by_hand():
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    q = np.array([[0.0, 1.0], [0.5, 0.5]])
    assert predictive.mean_tv(p, q) == pytest.approx(0.5)
    assert predictive.mean_tv(PROBS, PROBS) == 0.0


def test_posterior_predictive_averages_draws():
    draws = np.stack([PROBS, PROBS[::-1]])
    np.testing.assert_allclose(predictive.posterior_predictive(draws), 0.5 * (PROBS + PROBS[::-1]))


def test_calibrated_predictor_has_small_ece():
    """Labels drawn from the predicted probabilities: ECE is zero up to Monte Carlo noise.

    In bin k, ``n (n_k/n)(acc_k - conf_k) = S_k`` is a sum of n_k independent zero-mean terms of variance
    <= 1/4, so ``S_k ~ sqrt(n_k / 4) Z_k`` (CLT) and, by Cauchy-Schwarz,
    ``ECE = sum_k |S_k| / n <= sqrt(sum_k Z_k^2 / (4 n))`` with ``sum_k Z_k^2 ~ chi2(bins)``. The threshold
    uses the chi2 quantile at the suite's false-failure rate (Z_TOL's two-sided normal tail).
    """
    from scipy.stats import chi2, norm

    rng = np.random.default_rng(shifted_seed(0))
    n, classes = 20000, 4
    logits = 2.0 * rng.normal(size=(n, classes))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = (rng.random(n)[:, None] > probs.cumsum(1)).sum(1)
    threshold = math.sqrt(chi2.isf(2 * norm.sf(Z_TOL), predictive.ECE_BINS) / (4 * n))
    assert predictive.expected_calibration_error(probs, labels) < threshold
    overconfident = probs**3 / (probs**3).sum(1, keepdims=True)
    assert predictive.expected_calibration_error(overconfident, labels) > 3 * threshold


@pytest.mark.parametrize("probs, labels, message", [
    (np.array([0.5, 0.5]), np.array([0]), "shape"),
    (np.array([[0.5, 0.6]]), np.array([0]), "sum to 1"),
    (np.array([[np.nan, 1.0]]), np.array([0]), "finite"),
    (np.array([[0.5, 0.5]]), np.array([2]), "0..1"),
    (np.array([[0.5, 0.5]]), np.array([0, 1]), "shape"),
    (np.array([[0.5, 0.5]]), np.array([0.0]), "integers"),
])
def test_bad_input_is_named(probs, labels, message):
    with pytest.raises(ValueError, match=message):
        predictive.summary(probs, labels)


def test_tv_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        predictive.mean_tv(PROBS, PROBS[:2])
