"""Model-free entropy production: fit a linear drift and diffusion to trajectories, no theory input.

Near a minimum SGD is a linear stochastic recursion, so its drift and noise can be read off the
trajectories themselves by least squares::

    w_{n+1} - w_n = -K (w_n - mu) + eta_n,     Cov[eta_n] = 2 D,

pooled over all chains and steps. The fitted ``(K, D)`` replaces the theory's ``(lr H, D)``:
everything downstream is the same code as the theory path (``solve_lyapunov``, ``circulation``,
``entropy_production_rate`` of :mod:`sgworld.theory.stationary` and
:func:`sgworld.thermo.trajectory.entropy_production_steps`), with ``H = K`` and ``lr = 1``.

Choice of stationary covariance. The fit describes the discrete recursion with ``F = I - K``,
so ``Sigma`` is its exact discrete-time stationary covariance, ``Sigma = F Sigma F^T + 2 D``
(``solve_lyapunov(..., discrete=True)``), not the small-step Lyapunov solution. This is the
consistent choice: for any step size ``Sigma`` then estimates the trajectory's covariance,
``Q = (K Sigma - Sigma K^T)/2`` estimates its areal velocity exactly, and the predicted rate
``-tr(Q D^{-1} Q Sigma^{-1})`` is exactly the mean of the midpoint ``sigma_n`` under the fitted
model. (The continuous solution differs from all three by ``O(K)`` relative, which matters for
data with ``lr h_max`` of a few percent, e.g. simulated OU processes, and not in the paper's regime.)

Reference: S. Adhikari, A. Kabakçıoğlu, A. Strang, D. Yuret, M. Hinczewski, "Machine learning in
and out of equilibrium", arXiv:2306.03521.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..theory.stationary import StationaryState, stationary_state
from .trajectory import (
    as_path,
    bootstrap_sums,
    entropy_production_steps,
    exact_linear_gaussian_entropy_production,
    make_rng,
)

__all__ = ["LinearDriftFit", "fit_linear_drift"]


@dataclass(frozen=True, eq=False)
class LinearDriftFit:
    """Least-squares linear drift ``E[w_{n+1} - w_n | w_n] = -K (w_n - mu)`` and noise ``2 D``.

    Attributes
    ----------
    state : StationaryState the fitted model as a stationary state with time step 1: ``state.H = K``
                            (the fitted drift matrix per step, estimating ``lr H``), ``state.D = D``
                            (the fitted diffusion per step, half the residual covariance),
                            ``state.mean = mu``, the exact discrete-time ``state.Sigma``, ``state.Q``
                            and ``state.ep_rate`` (predicted mean entropy production per step);
                            feed it to any theory-path function
    n_transitions : int     number of (w_n, w_{n+1}) pairs used
    n_chains : int
    Q_stderr : (p, p)       bootstrap (over chains) standard error of ``state.Q``; NaN without bootstrap
    ep_rate_stderr : float  bootstrap standard error of ``state.ep_rate``; NaN without bootstrap
    n_boot : int            bootstrap replicates used (0: none)
    """

    state: StationaryState
    n_transitions: int
    n_chains: int
    Q_stderr: np.ndarray
    ep_rate_stderr: float
    n_boot: int

    def entropy_production_steps(self, path, *, rule: str = "midpoint") -> np.ndarray:
        """Per-step ``sigma_n`` of ``path`` with the fitted velocity and diffusion (midpoint rule),
        ``(chains, steps - 1)``; see :func:`sgworld.thermo.trajectory.entropy_production_steps`."""
        return entropy_production_steps(path, self.state, rule=rule)

    def exact_entropy_production_steps(self, path) -> np.ndarray:
        """Exact path-probability log ratio per step under the fitted linear-Gaussian model (the
        quantity for which the fluctuation theorems hold exactly); see
        :func:`sgworld.thermo.trajectory.exact_linear_gaussian_entropy_production`."""
        K, p = self.state.H, self.state.dim
        return exact_linear_gaussian_entropy_production(np.eye(p) - K, 2.0 * self.state.D, path, mean=self.state.mean)


# --------------------------------------------------------------------------- least squares


def _chain_statistics(w: np.ndarray) -> np.ndarray:
    """Per-chain sufficient statistics of the regression, packed as ``(chains, 2p + 3p^2)``.

    ``[sum x, sum d, sum x x^T, sum x d^T, sum d d^T]`` with ``x = w_n - c`` (``c`` the pooled mean,
    subtracted so that sums of squares keep their digits when the spread is tiny next to ``|w|``)
    and ``d = w_{n+1} - w_n``.
    """
    x = w[:, :-1]
    d = np.diff(w, axis=1)
    xt, dt = x.transpose(0, 2, 1), d.transpose(0, 2, 1)       # sums over steps by BLAS (batched matmul)
    parts = [x.sum(1), d.sum(1), xt @ x, xt @ d, dt @ d]
    return np.concatenate([a.reshape(w.shape[0], -1) for a in parts], axis=1)


def _fit_from_statistics(stats: np.ndarray, n: float, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(K, mu, D)`` from summed statistics of ``n`` transitions (``mu`` relative to the centring)."""
    sx, sd = stats[:p] / n, stats[p:2 * p] / n
    Sxx, Sxd, Sdd = (stats[2 * p + i * p * p: 2 * p + (i + 1) * p * p].reshape(p, p) / n for i in range(3))
    Cxx = Sxx - np.outer(sx, sx)
    Cxd = Sxd - np.outer(sx, sd)
    Cdd = Sdd - np.outer(sd, sd)
    try:
        np.linalg.cholesky(Cxx)
    except np.linalg.LinAlgError:
        raise ValueError("the trajectory's covariance is singular: too few transitions, or some parameters "
                         "never move; drop constant parameters or record more steps") from None
    slope_T = np.linalg.solve(Cxx, Cxd)  # d ≈ slope x, slope = Cdx Cxx^{-1}
    K = -slope_T.T
    resid = Cdd - Cxd.T @ slope_T  # Cdd - Cdx Cxx^{-1} Cxd
    resid = 0.5 * (resid + resid.T) * n / (n - p - 1)  # unbiased residual covariance (p+1 coefficients)
    mu = sx + np.linalg.solve(K, sd)  # from the intercept K mu = mean(d) + K mean(x)
    return K, mu, 0.5 * resid


def _rate_and_Q(K: np.ndarray, D: np.ndarray) -> tuple[float, np.ndarray]:
    state = stationary_state(K, D, 1.0, np.zeros(K.shape[0]), symmetric=False, discrete=True)
    return state.ep_rate, state.Q


def fit_linear_drift(path, *, n_boot: int = 200, seed=0) -> LinearDriftFit:
    r"""Fit ``w_{n+1} - w_n = -K (w_n - mu) + eta``, ``Cov[eta] = 2 D``, over all chains and steps.

    Ordinary least squares with intercept on the pooled transitions (the maximum-likelihood fit
    for Gaussian noise); ``2 D`` is the residual covariance with ``n - p - 1`` degrees of freedom.
    The fitted model's stationary state uses the exact discrete-time covariance (see the module
    docstring for why). Standard errors of ``Q`` and of the rate come from a bootstrap over
    chains, computed from per-chain sufficient statistics (no refit over the raw data).

    Parameters
    ----------
    path : (chains, steps, p) or (steps, p) array
        Stationary trajectory (after burn-in).
    n_boot : int
        Bootstrap replicates over chains (0 to skip; needs >= 2 chains otherwise NaN).
    seed : int or numpy Generator
        Bootstrap randomness.

    Returns
    -------
    LinearDriftFit

    Raises
    ------
    ValueError
        Degenerate data, or a fitted map without a stationary state (unstable ``I - K``).
    """
    w = as_path(path, min_steps=3)
    chains, steps, p = w.shape
    n_per_chain = steps - 1
    n = chains * n_per_chain
    if n <= p + 1:
        raise ValueError(f"need more than p + 1 = {p + 1} transitions to fit a {p}-dimensional drift, got {n}")
    center = w.mean(axis=(0, 1))
    per_chain = _chain_statistics(w - center)
    K, mu, D = _fit_from_statistics(per_chain.sum(0), n, p)
    state = stationary_state(K, D, 1.0, mu + center, symmetric=False, discrete=True)

    Q_stderr = np.full((p, p), np.nan)
    rate_stderr = float("nan")
    n_boot = int(n_boot)
    if n_boot > 0 and chains >= 2:
        boot = bootstrap_sums(per_chain, n_boot, make_rng(seed))
        rates, Qs = np.full(n_boot, np.nan), np.full((n_boot, p, p), np.nan)
        for b in range(n_boot):  # a loop over replicates (small p x p solves), not over data
            try:
                Kb, _, Db = _fit_from_statistics(boot[b], n, p)
                rates[b], Qs[b] = _rate_and_Q(Kb, Db)
            except ValueError:  # a replicate whose fit has no stationary state: left out
                pass
        Q_stderr = np.nanstd(Qs, axis=0, ddof=1)
        rate_stderr = float(np.nanstd(rates, ddof=1))
    return LinearDriftFit(state=state, n_transitions=n, n_chains=chains, Q_stderr=Q_stderr,
                          ep_rate_stderr=rate_stderr, n_boot=n_boot if chains >= 2 else 0)
