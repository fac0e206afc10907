"""Accuracy against a Gaussian reference, and MCMC diagnostics (ESS, R-hat).

ESS and R-hat are implemented here (Geyer's initial monotone sequence over the multi-chain
autocorrelation, as in Stan and ArviZ's ``method="mean"``) so that the core needs no ArviZ; the
test suite cross-checks them against ArviZ when it is installed. For the full ArviZ toolbox use
``Trace.to_arviz()``.
"""

from __future__ import annotations

import numpy as np


def gaussian_kl(mean_q, cov_q, mean_p, cov_p) -> float:
    """``KL(N(mean_q, cov_q) || N(mean_p, cov_p))`` in nats."""
    mean_q, mean_p = np.asarray(mean_q, float), np.asarray(mean_p, float)
    cov_q, cov_p = np.atleast_2d(cov_q).astype(float), np.atleast_2d(cov_p).astype(float)
    d = mean_q.size
    chol_p = np.linalg.cholesky(cov_p)
    solve = lambda b: np.linalg.solve(chol_p.T, np.linalg.solve(chol_p, b))
    diff = mean_q - mean_p
    sign, logdet_q = np.linalg.slogdet(cov_q)
    if sign <= 0:
        return float("inf")
    logdet_p = 2 * np.log(np.diag(chol_p)).sum()
    return float(0.5 * (np.trace(solve(cov_q)) + diff @ solve(diff) - d + logdet_p - logdet_q))


def mean_error(mean, mean_ref, cov_ref) -> float:
    """Mahalanobis distance of ``mean`` from ``mean_ref`` in the reference metric ``cov_ref``."""
    diff = np.asarray(mean, float) - np.asarray(mean_ref, float)
    return float(np.sqrt(diff @ np.linalg.solve(cov_ref, diff)))


def cov_error(cov, cov_ref) -> float:
    """Relative Frobenius error ``||cov - cov_ref|| / ||cov_ref||``."""
    return float(np.linalg.norm(np.asarray(cov) - cov_ref) / np.linalg.norm(cov_ref))


def _autocovariance(x: np.ndarray) -> np.ndarray:
    """Autocovariance along axis 1 of (chains, draws, p), by FFT (biased, as in Geyer)."""
    n = x.shape[1]
    centred = x - x.mean(axis=1, keepdims=True)
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(centred, n=size, axis=1)
    return np.fft.irfft(f * np.conj(f), n=size, axis=1)[:, :n] / n


def ess(draws: np.ndarray) -> np.ndarray:
    """Effective sample size per parameter of ``draws`` (chains, draws, p), shape (p,).

    NaN for a parameter whose draws are all identical (every chain, every draw): with no variance the
    autocorrelation, and so the ESS, is undefined (0 / 0) — typically a parameter the sampler never
    moves (a frozen weight, T = 0 at an exact fixed point). Chains that are each constant but differ
    from one another get an ESS of about chains / 2 (each contributes one value).
    """
    x = np.asarray(draws, dtype=float)
    if x.ndim == 2:
        x = x[..., None]
    m, n, _ = x.shape
    if n < 4:
        raise ValueError(f"ESS needs at least 4 draws per chain, got {n}")
    constant = (x == x[:1, :1]).all(axis=(0, 1))  # (p,)
    acov = _autocovariance(x)  # (m, n, p)
    chain_var = acov[:, 0] * n / (n - 1)
    mean_var = chain_var.mean(0)
    var_plus = mean_var * (n - 1) / n + (x.mean(1).var(0, ddof=1) if m > 1 else 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = 1.0 - (mean_var - acov.mean(0)) / var_plus  # (n, p)
    rho[0] = 1.0
    pairs = rho[: (n // 2) * 2].reshape(n // 2, 2, -1).sum(1)  # Geyer's pair sums
    positive = np.cumprod(pairs > 0, axis=0).astype(bool)  # initial positive sequence
    pairs = np.where(positive, np.minimum.accumulate(np.where(positive, pairs, np.inf), axis=0), 0.0)
    tau = -1.0 + 2.0 * pairs.sum(0)
    tau = np.maximum(tau, 1.0 / np.log10(m * n))  # ArviZ's upper bound on ESS for antithetic chains
    out = m * n / tau
    return np.where(np.isfinite(out) & ~constant, out, np.nan)


def rhat(draws: np.ndarray) -> np.ndarray:
    """Split-R-hat per parameter of ``draws`` (chains, draws, p)."""
    x = np.asarray(draws, dtype=float)
    if x.ndim == 2:
        x = x[..., None]
    half = x.shape[1] // 2
    if half < 2:
        raise ValueError("R-hat needs at least 4 draws per chain")
    split = np.concatenate([x[:, :half], x[:, -half:]], axis=0)
    n = split.shape[1]
    within = split.var(1, ddof=1).mean(0)
    between = n * split.mean(1).var(0, ddof=1)
    return np.sqrt(((n - 1) / n * within + between / n) / within)
