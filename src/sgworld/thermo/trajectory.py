"""Trajectory side of the stationary state: moments, areal velocity, per-step entropy production.

Inputs are trajectories of shape ``(chains, steps, p)`` (or ``(steps, p)`` for one chain), numpy or
torch, converted to float64. Everything is vectorised over chains and steps; statistics pool all
chains and steps, and their standard errors come from the spread of the per-chain estimates
(chains are independent, steps within a chain are not).

Reference: S. Adhikari, A. Kabakçıoğlu, A. Strang, D. Yuret, M. Hinczewski, "Machine learning in
and out of equilibrium", arXiv:2306.03521.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .._checks import as_float64, check_choice, check_int_range, check_square
from ..theory.stationary import StationaryState, inverse_diffusion, solve_lyapunov

__all__ = [
    "Estimate",
    "as_path",
    "chain_mean",
    "empirical_mean",
    "empirical_covariance",
    "areal_velocity",
    "entropy_production_steps",
    "exact_linear_gaussian_entropy_production",
    "window_sums",
]

_BOOTSTRAP_CHUNK_ELEMENTS = 1 << 23  # (replicates x units) weights built at once, ~64 MB


@dataclass(frozen=True, eq=False)
class Estimate:
    """A pooled estimate with its standard error from the spread over independent chains.

    ``value`` and ``stderr`` have the same shape; ``stderr`` is NaN when there is a single chain.
    """

    value: np.ndarray
    stderr: np.ndarray
    n_chains: int

    def zscore(self, reference) -> np.ndarray:
        """``(value - reference) / stderr`` elementwise (NaN where both are 0, e.g. the zero diagonal
        of an areal velocity)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return (self.value - np.asarray(reference, dtype=np.float64)) / self.stderr


def as_path(path, name: str = "path", min_steps: int = 2) -> np.ndarray:
    """A trajectory as a finite float64 array ``(chains, steps, p)``; ``(steps, p)`` becomes one chain."""
    arr = as_float64(path, name)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (chains, steps, p) or (steps, p), got {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < min_steps or arr.shape[2] < 1:
        raise ValueError(f"{name} needs at least 1 chain, {min_steps} steps and 1 parameter, got shape {arr.shape}")
    return arr


def _per_chain(per_chain: np.ndarray) -> Estimate:
    """Average of equally weighted per-chain estimates ``(chains, ...)`` with its standard error."""
    n = per_chain.shape[0]
    value = per_chain.mean(axis=0)
    if n < 2:
        stderr = np.full_like(value, np.nan)
    else:
        stderr = per_chain.std(axis=0, ddof=1) / np.sqrt(n)
    return Estimate(value=value, stderr=stderr, n_chains=n)


def chain_mean(values) -> Estimate:
    """Mean of ``values`` ``(chains, n)`` (or ``(n,)``, one chain) over everything, SE over chains.

    Use it for the entropy-production rate: ``chain_mean(entropy_production_steps(path, state))``.
    """
    arr = as_float64(values, "values")
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"values must have shape (chains, n) or (n,), got {arr.shape}")
    return _per_chain(arr.mean(axis=1))


def empirical_mean(path) -> Estimate:
    """Mean over all chains and steps, ``(p,)``, with its standard error over chains."""
    w = as_path(path, min_steps=1)
    return _per_chain(w.mean(axis=1))


def empirical_covariance(path, mean=None) -> Estimate:
    """Covariance pooled over chains and steps, ``(p, p)``, with its standard error over chains.

    Deviations are taken from ``mean`` (default: the pooled mean) and averaged with weight
    ``1/(chains * steps)``; the ``O(1/(chains * ESS))`` bias this leaves is far below the standard error.
    """
    w = as_path(path, min_steps=1)
    dw = w - (w.mean(axis=(0, 1)) if mean is None else as_float64(mean, "mean"))
    per_chain = np.swapaxes(dw, 1, 2) @ dw / w.shape[1]          # (chains, p, p), by BLAS
    return _per_chain(per_chain)


def areal_velocity(path, mean=None) -> Estimate:
    r"""Areal velocity ``A_ij = <dw_i(n) dw_j(n+1) - dw_j(n) dw_i(n+1)> / 2``, which estimates ``Q``.

    ``dw = w - mean`` (default: the pooled mean). In the stationary state
    ``<dw(n) dw(n+1)^T> = Sigma F^T`` with ``F = I - lr H``, so ``A = (Sigma F^T - F Sigma)/2
    = (lr/2)(H Sigma - Sigma H^T)`` — exactly the circulation ``Q`` of
    :func:`sgworld.theory.stationary.circulation` (per step; divide by ``dt`` for a rate per unit time).

    Returns
    -------
    Estimate with ``value`` ``(p, p)`` antisymmetric and ``stderr`` over chains.
    """
    w = as_path(path)
    dw = w - (w.mean(axis=(0, 1)) if mean is None else as_float64(mean, "mean"))
    lagged = np.swapaxes(dw[:, :-1], 1, 2) @ dw[:, 1:] / (w.shape[1] - 1)
    return _per_chain(0.5 * (lagged - np.swapaxes(lagged, 1, 2)))


# --------------------------------------------------------------------------- entropy production


def _bilinear_steps(w: np.ndarray, center: np.ndarray, G: np.ndarray, at: Literal["midpoint", "ito"]) -> np.ndarray:
    """``sigma_n = (x_n - center)^T G (w_{n+1} - w_n)`` with ``x_n`` the midpoint or the start point.

    Every per-step entropy production of a linear-Gaussian process has this form; one einsum
    over all chains and steps, ``(chains, steps - 1)``.
    """
    step = np.diff(w, axis=1)
    x = 0.5 * (w[:, 1:] + w[:, :-1]) if at == "midpoint" else w[:, :-1]
    return np.einsum("cni,cni->cn", (x - center) @ G, step)


def entropy_production_steps(path, state: StationaryState, *, rule: Literal["midpoint", "ito"] = "midpoint",
                             rcond: float | None = None) -> np.ndarray:
    r"""Per-step entropy production ``sigma_n = v(w)^T D^{-1} (w_{n+1} - w_n)`` along a trajectory.

    ``v(w) = -Q Sigma^{-1} (w - w_bar)`` is the stationary velocity of ``state`` (theory, or a
    model-free fit from :mod:`sgworld.thermo.model_free`); its mean per step is
    ``state.ep_rate = -tr(Q D^{-1} Q Sigma^{-1})``.

    Why the midpoint (Stratonovich) rule. ``sigma`` is a stochastic integral
    ``int v^T D^{-1} o dw``: the point where ``v`` is evaluated matters because each step's noise
    ``O(sqrt(D))`` is far larger than its drift. With ``v`` at ``(w_n + w_{n+1})/2`` the step is
    exactly odd under time reversal (swapping ``w_n`` and ``w_{n+1}`` flips its sign), as the
    log ratio of forward to backward path probabilities must be, so the fluctuation theorems apply.
    The Ito value (``v`` at ``w_n``) is the midpoint value plus
    ``(1/2) dw^T Sigma^{-1} Q^T D^{-1} dw`` per step. That term's mean is ``-<div v>`` per step:
    zero here only because ``tr(Q Sigma^{-1}) = 0`` for a linear, Gaussian state. With a
    nonlinear drift it biases the rate by an amount of the same order as the signal. Its
    fluctuation is also of the same order as the per-step signal (in a 2-D OU test with
    ``lr h_max = 0.15``: std 0.053 against a mean of 0.036). It inflates the variance of window
    sums and breaks the fluctuation theorems (there, ``<exp(-Delta s)>`` was 1.04 with Ito and
    1.005 with the midpoint rule at ``<Delta s> = 0.7``). Use ``rule="ito"`` only to compare.

    Parameters
    ----------
    path : (chains, steps, p) or (steps, p) array
    state : StationaryState
    rule : {"midpoint", "ito"}
    rcond : float, optional
        Pseudo-inverse cut-off for a singular ``D`` (see :func:`sgworld.theory.stationary.inverse_diffusion`).

    Returns
    -------
    sigma : (chains, steps - 1) float64 array, in nats per step.
    """
    check_choice("rule", rule, ("midpoint", "ito"))
    w = as_path(path)
    if w.shape[2] != state.dim:
        raise ValueError(f"path has p = {w.shape[2]} parameters but the state has p = {state.dim}")
    # sigma = -(Q Sigma^{-1} dx)^T D^{-1} dw = dx^T G dw with G = -Sigma^{-1} Q^T D^{-1}.
    G = -np.linalg.solve(state.Sigma, state.Q.T @ inverse_diffusion(state.D, rcond))
    return _bilinear_steps(w, state.mean, G, rule)


def exact_linear_gaussian_entropy_production(F, noise_cov, path, mean=None) -> np.ndarray:
    r"""Exact per-step total entropy production of ``x_{n+1} - mu = F (x_n - mu) + xi``, ``xi ~ N(0, N)``.

    The log ratio of the probabilities of a stationary step and of its time reverse,
    ``s_n = ln[p_ss(x_n) p(x_{n+1} | x_n)] - ln[p_ss(x_{n+1}) p(x_n | x_{n+1})]``
    (medium plus system entropy), with ``p_ss = N(mu, C)``, ``C = F C F^T + N``. Window sums
    telescope to the log ratio of a whole forward path to its reverse, so for stationary data the
    integral FT ``<exp(-Delta s)> = 1`` and the detailed FT ``P(Delta s)/P(-Delta s) = exp(Delta s)``
    hold *exactly* for every window length. The mean per step is the Kullback-Leibler divergence
    between the joint law of ``(x_n, x_{n+1})`` and its reverse.

    With ``K = I - F``, ``N = 2 D``, ``m = (x_n + x_{n+1})/2``, ``dx = x_{n+1} - x_n``::

        s_n = (m - mu)^T [C^{-1} - K^T D^{-1} + (1/2) K^T D^{-1} K] dx,

    a bilinear form like the midpoint ``sigma_n`` of :func:`entropy_production_steps`, which is its
    small-step approximation: on a sampled OU process the two agree to ``O(dt^2)``, per step
    (relative to the step's fluctuation) and in the mean.

    Parameters
    ----------
    F : (p, p) array        transition matrix (spectral radius < 1)
    noise_cov : (p, p)      noise covariance ``N`` (positive definite)
    path : (chains, steps, p) or (steps, p) array, started in the stationary state
    mean : (p,) array, optional  ``mu`` (default 0)

    Returns
    -------
    s : (chains, steps - 1) float64 array.
    """
    w = as_path(path)
    p = w.shape[2]
    F = check_square(F, "F", p, like="the path")
    K = np.eye(p) - F
    D = 0.5 * as_float64(noise_cov, "noise_cov")
    C = solve_lyapunov(K, D, 1.0, symmetric=False, discrete=True)
    Dinv = inverse_diffusion(D)
    G = np.linalg.inv(C) - K.T @ Dinv + 0.5 * K.T @ Dinv @ K
    mu = np.zeros(p) if mean is None else as_float64(mean, "mean")
    return _bilinear_steps(w, mu, G, "midpoint")


def window_sums(sigma, k: int, *, overlapping: bool = False) -> np.ndarray:
    r"""Window sums ``Delta s_k = sigma_n + ... + sigma_{n+k-1}`` of per-step entropy production.

    Parameters
    ----------
    sigma : (chains, n) or (n,) array
    k : int
        Window length in steps.
    overlapping : bool
        ``False`` (default): consecutive non-overlapping windows (a trailing remainder shorter than
        ``k`` is dropped). ``True``: all ``n - k + 1`` windows starting at every step. Overlapping
        windows share steps and are strongly dependent, so confidence intervals must not treat
        them as independent draws; the bootstraps of :mod:`sgworld.thermo.fluctuation` resample
        whole chains, which stays valid either way. Non-overlapping windows longer than the
        correlation time are nearly independent.

    Returns
    -------
    (chains, n_windows) float64 array.
    """
    s = as_float64(sigma, "sigma")
    if s.ndim == 1:
        s = s[None]
    if s.ndim != 2:
        raise ValueError(f"sigma must have shape (chains, n) or (n,), got {s.shape}")
    k = check_int_range("window length k", k, 1, s.shape[1])
    if overlapping:
        c = np.concatenate([np.zeros((s.shape[0], 1)), np.cumsum(s, axis=1)], axis=1)
        return c[:, k:] - c[:, :-k]
    n_windows = s.shape[1] // k
    return s[:, : n_windows * k].reshape(s.shape[0], n_windows, k).sum(axis=2)


# --------------------------------------------------------------------------- bootstrap helper


def bootstrap_sums(per_unit: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Sums of ``per_unit`` ``(units, ...)`` over ``n_boot`` resamples of the units with replacement.

    Each replicate draws ``units`` indices uniformly with replacement; its sum is
    ``counts @ per_unit`` with the replicate's multiplicity counts. Built in chunks of replicates
    so memory stays bounded; returns ``(n_boot, ...)``.
    """
    units = per_unit.shape[0]
    flat = per_unit.reshape(units, -1)
    chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // max(units, 1))
    out = np.empty((n_boot, flat.shape[1]))
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = rng.integers(0, units, size=(m, units)) + units * np.arange(m)[:, None]
        counts = np.bincount(idx.ravel(), minlength=m * units).reshape(m, units)
        out[start:start + m] = counts @ flat
    return out.reshape((n_boot,) + per_unit.shape[1:])


def make_rng(seed) -> np.random.Generator:
    """A numpy Generator from a seed, a SeedSequence or an existing Generator (used as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        raise ValueError("pass seed= (an int or a numpy Generator): sgworld draws nothing from global RNG state")
    return np.random.default_rng(seed)
