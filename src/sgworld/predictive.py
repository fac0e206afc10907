"""Posterior-predictive metrics for classification from posterior draws.

The posterior predictive of a test input x is the average over draws ``w_s`` of the model's class
probabilities, ``p(c | x) = (1/S) sum_s p(c | x, w_s)`` (:func:`posterior_predictive`). From it:

* accuracy: fraction of test points whose most probable class is the label;
* NLL: ``-(1/n) sum_i log p(y_i | x_i)`` of the *predictive* (not the average of per-draw NLLs);
* expected calibration error (Guo et al., ICML 2017): the confidence ``max_c p(c | x_i)`` is put in
  ``bins`` equal-width bins ``((k-1)/bins, k/bins]`` (the first bin also holds 0), and
  ``ECE = sum_k (n_k / n) |acc_k - conf_k|`` with ``acc_k`` the accuracy and ``conf_k`` the mean
  confidence of bin k; :func:`reliability` returns the per-bin numbers (the reliability diagram);
* mean total-variation distance between two predictives on the same inputs,
  ``(1/n) sum_i (1/2) sum_c |p(c | x_i) - q(c | x_i)|`` (0 to 1).

Probabilities are arrays ``(n, C)`` whose rows sum to 1; labels are integers ``0 .. C-1``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["posterior_predictive", "accuracy", "nll", "reliability", "expected_calibration_error", "mean_tv",
           "summary", "ECE_BINS"]

ECE_BINS = 15       # the customary number of equal-width confidence bins
_ROW_TOL = 1e-6     # rows must sum to 1 within this
_LOG_FLOOR = 1e-300  # log(0) guard for a predictive that gives a label exactly zero probability


def _probs(probs, name: str = "probs") -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ValueError(f"{name} must have shape (n, classes) with n >= 1 and classes >= 2, got {p.shape}")
    if not np.all(np.isfinite(p)) or p.min() < 0:
        raise ValueError(f"{name} must be finite and non-negative")
    worst = np.abs(p.sum(1) - 1).max()
    if worst > _ROW_TOL:
        raise ValueError(f"{name}: rows must sum to 1 (worst row is off by {worst:.3g})")
    return p


def _labels(labels, probs: np.ndarray) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != probs.shape[:1]:
        raise ValueError(f"labels must have shape ({probs.shape[0]},) to match the probabilities, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= probs.shape[1]:
        raise ValueError(f"labels must lie in 0..{probs.shape[1] - 1}, got {y.min()}..{y.max()}")
    return y


def posterior_predictive(draw_probs) -> np.ndarray:
    """``(S, n, C)`` per-draw class probabilities -> ``(n, C)`` predictive (their mean over draws)."""
    p = np.asarray(draw_probs, dtype=np.float64)
    if p.ndim != 3 or p.shape[0] == 0:
        raise ValueError(f"draw_probs must have shape (draws, n, classes) with draws >= 1, got {p.shape}")
    return _probs(p.mean(0), "posterior predictive")


def accuracy(probs, labels) -> float:
    p = _probs(probs)
    return float(np.mean(p.argmax(1) == _labels(labels, p)))


def nll(probs, labels) -> float:
    """Mean negative log-likelihood of the labels under the predictive (nats)."""
    p = _probs(probs)
    y = _labels(labels, p)
    return float(-np.mean(np.log(np.maximum(p[np.arange(y.size), y], _LOG_FLOOR))))


def reliability(probs, labels, bins: int = ECE_BINS) -> dict:
    """Reliability-diagram data over ``bins`` equal-width confidence bins (module docstring).

    Returns ``edges`` (bins + 1,), ``count`` (bins,), ``accuracy`` and ``confidence`` (bins,; NaN in
    empty bins) and ``ece``.
    """
    p = _probs(probs)
    y = _labels(labels, p)
    if int(bins) < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    bins = int(bins)
    conf = p.max(1)
    correct = (p.argmax(1) == y).astype(float)
    k = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)  # bin ((k)/bins, (k+1)/bins]
    count = np.bincount(k, minlength=bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(k, weights=correct, minlength=bins) / count
        mean_conf = np.bincount(k, weights=conf, minlength=bins) / count
    used = count > 0
    ece = float(np.sum(count[used] / y.size * np.abs(acc[used] - mean_conf[used])))
    return {"edges": np.linspace(0.0, 1.0, bins + 1), "count": count, "accuracy": acc, "confidence": mean_conf,
            "ece": ece, "bins": bins}


def expected_calibration_error(probs, labels, bins: int = ECE_BINS) -> float:
    """ECE with ``bins`` equal-width confidence bins (module docstring)."""
    return reliability(probs, labels, bins)["ece"]


def mean_tv(p, q) -> float:
    """Mean over inputs of the total-variation distance between two predictives ``(n, C)``."""
    p, q = _probs(p, "p"), _probs(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"the two predictives must have the same shape, got {p.shape} and {q.shape}")
    return float(0.5 * np.abs(p - q).sum(1).mean())


def summary(probs, labels, bins: int = ECE_BINS) -> dict:
    """Accuracy, NLL, ECE and the reliability-diagram data of one predictive."""
    rel = reliability(probs, labels, bins)
    return {"accuracy": accuracy(probs, labels), "nll": nll(probs, labels), "ece": rel["ece"], "reliability": rel}
