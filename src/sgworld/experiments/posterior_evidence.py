"""Sampled evidence of the posterior study: a moment error with intervals, and paired separations.

The metric is the *excess spread* in posterior standard units,

    e = E[(w - mu)^T Sigma^{-1} (w - mu)] / d - 1 = (tr(Sigma^{-1} C) + (m - mu)^T Sigma^{-1} (m - mu)) / d - 1,

for a law with mean m and covariance C against the posterior N(mu, Sigma): 0 at the posterior, the
relative excess of the variance (plus the squared mean error) averaged over the posterior's whitened
directions otherwise; KL ~ (d/4) e^2 when the error is isotropic. Unlike the KL it is linear in the
law, so its sampled estimate (the draws' average of ``(w - mu)^T Sigma^{-1} (w - mu) / d - 1``) has no
Monte Carlo floor and an exact interval from independent chains: each chain's own average is one
i.i.d. number, and the standard error is their spread over ``sqrt(K)``, whatever the autocorrelation.

Two methods run with the same seed draw the same Langevin noise for chain k (``sgworld.rng``: one
noise stream per chain group, separate from the index streams) from the same start; their chains
then differ only through the minibatch noise, so the per-chain *differences* of the metric have a far
smaller spread than either method alone (common random numbers). The pairs stay independent across
chains, so the separation's standard error is again exact from their spread.
"""

from __future__ import annotations

import math

import numpy as np

INTERVAL_Z = 3.0  # intervals are estimate +- 3 SE: two-sided normal tail 0.27%
INTERVAL_LEVEL = 1.0 - math.erfc(INTERVAL_Z / math.sqrt(2.0))


def whitener(cov) -> np.ndarray:
    """``L^{-1}`` with ``L L^T = cov``: maps ``w - mu`` to posterior standard units."""
    return np.linalg.inv(np.linalg.cholesky(np.asarray(cov, float)))


def excess_of_moments(mean, cov, post_mean, post_cov) -> float:
    """The excess spread ``e`` of a law with moments (mean, cov) against the posterior (module docstring)."""
    W = whitener(post_cov)
    z = W @ (np.asarray(mean, float) - post_mean)
    return float((np.trace(W @ np.asarray(cov, float) @ W.T) + z @ z) / len(z) - 1.0)


def excess_se_of_moments(mean, cov, mean_se, cov_se, post_mean, post_cov) -> float:
    """A bound on the standard error of :func:`excess_of_moments` when the moments carry standard errors
    (SGWORLD's exact moments averaged over sampled permutations): the sum of the entries' standard errors
    times their sensitivities, ``|Sigma^{-1}_ij| / d`` and ``|2 Sigma^{-1} (m - mu)|_i / d`` (0 when exact)."""
    if mean_se is None or cov_se is None:
        return 0.0
    P = np.linalg.inv(np.asarray(post_cov, float))
    d = len(post_mean)
    grad_m = np.abs(2.0 * P @ (np.asarray(mean, float) - post_mean)) / d
    return float((np.abs(P) / d * np.asarray(cov_se)).sum() + grad_m @ np.asarray(mean_se))


def chain_excess(draws, post_mean, post_cov) -> np.ndarray:
    """Per-chain averages (K,) of ``(w - mu)^T Sigma^{-1} (w - mu) / d - 1`` over the draws (K, n, d)."""
    z = (np.asarray(draws, float) - post_mean) @ whitener(post_cov).T
    return (z**2).sum(-1).mean(1) / z.shape[-1] - 1.0


def interval(value: float, se: float) -> list[float]:
    return [value - INTERVAL_Z * se, value + INTERVAL_Z * se]


def summary(per_chain) -> dict:
    """Estimate, standard error (spread of the independent chains) and interval of a per-chain statistic."""
    per_chain = np.asarray(per_chain, float)
    value = float(per_chain.mean())
    se = float(per_chain.std(ddof=1) / math.sqrt(per_chain.size))
    return {"value": value, "se": se, "ci": interval(value, se)}


def separation(chains_a, chains_b, exact_a: float, exact_b: float, exact_se: float = 0.0) -> dict:
    """Sampled ``e_a - e_b`` from paired chains, its interval, and whether it is resolved.

    ``resolved``: the interval excludes 0 (the two methods' stationary laws differ, on the sampled
    evidence alone). ``z_vs_exact``: the sampled difference against the exact one, with the exact one's
    own standard error (permutation sampling) added in quadrature.
    """
    out = summary(np.asarray(chains_a, float) - np.asarray(chains_b, float))
    exact = float(exact_a - exact_b)
    lo, hi = out["ci"]
    out.update(exact=exact, exact_se=float(exact_se),
               z_vs_exact=float((out["value"] - exact) / math.hypot(out["se"], exact_se)),
               resolved=bool(lo > 0 or hi < 0))
    return out
