r"""SGD out of equilibrium for any Problem: theory at the minimum, many-chain simulation, measured counterparts.

:func:`analyze` is the paper's analysis (arXiv 2306.03521) as one call:

1. **The minimum** ``w*``: Newton's method (:func:`sgworld.theory.find_minimum`) from a given point
   (whose Hessian must be positive definite) or from the end of a short SGD run; its gradient norm
   and Hessian spectrum are reported, and a point that is not a minimum is an error.
2. **Theory** per scheme. ``wr`` (per step, :func:`sgworld.theory.wr_theory`)::

       S = Cov_i[grad U_i(w*)],   D = (lr^2/2) (N-b)/(b(N-1)) S,
       H Sigma + Sigma H = (2/lr) D,   Q = (lr/2)(H Sigma - Sigma H),
       entropy production per step  -tr(Q D^-1 Q Sigma^-1),   commutator ratio |[H, D]| / |H D|.

   ``wor`` (per epoch of M = N/b steps, :func:`sgworld.theory.wor_theory`): the stationary mean
   ``w_eff = argmin L_eff``, ``L_eff = L + (lr/4)[|grad L|^2 + (N-b)/(b(N-1)) tr S]``, the per-epoch
   diffusion ``D_WOR`` (O(lr^4)) and ``lr M (H Sigma + Sigma H) = 2 D_WOR``; valid while
   ``lr M h_max << 1`` (refused above ``wor_validity_max``). Up to ``dense_max_p`` parameters the
   theory is dense (p x p); above, the ``wr`` theory is restricted to the top-k Hessian eigenspace
   (:func:`sgworld.theory.topk_theory`, Lanczos) and every measured quantity is taken in the
   coordinates ``z = V^T w`` of that subspace (entropy production and currents then refer to it; the
   result says so in ``path`` and ``notes``). The ``wor`` theory has no top-k form: on that path the
   ``wor`` chains are simulated and their subspace moments reported without a theory.
3. **Simulation** through :func:`sgworld.sample` itself, one call per scheme: SGD chains started from
   the *predicted* stationary Gaussian (``N(w*, Sigma_WR)``, ``N(w_eff, Sigma_WOR)``). A linear
   process started in its stationary law has no transient, so no burn-in is spent; what the
   simulation tests is whether that law is kept. ``wr`` records every step, ``wor`` every epoch (on
   the top-k path only the subspace coordinates, ``sample(record_basis=V)``).
   With ``out`` the draws stream to a trace folder (``out/sgd-wr``, ``out/sgd-wor``) with
   ``sample()``'s checkpoints, so an interrupted analysis resumes where it stopped; the trace is then
   read back in chunks, with the streaming estimators of :mod:`sgworld.thermo.streaming`, so memory
   stays bounded. One seed drives everything: the starting draws (numpy ``SeedSequence([seed, 0])``),
   the chains (``sample(seed=...)`` derived from ``seed`` and the scheme), the bootstraps.
4. **Measured counterparts** with standard errors from ``groups`` independent groups of chains:
   relaxation-corrected stationary moments (below), the areal velocity
   ``A_ij = <dw_i(n) dw_j(n+1) - dw_j(n) dw_i(n+1)>/2`` against ``Q``, the rotation rate in the plane
   of largest circulation, the entropy production per step ``sigma_n = v(w_n)^T D^-1 (w_{n+1} - w_n)``
   (midpoint rule) and its rate against theory and a model-free rate (linear drift fitted to a
   thinned path, :func:`sgworld.thermo.fit_linear_drift`), the integral FT ``<exp(-Delta s)> = 1``
   and the detailed FT slope of ``ln P(Delta s)/P(-Delta s)`` (1) with bootstrap intervals, and for
   ``wor`` the stationary mean against ``w_eff``.

Relaxation-corrected moments. For the linearised dynamics the moments of a group of chains relax, in
the eigenbasis of H with per-unit decay ``phi_k = 1 - lr h_k`` (wr, per step) or ``(1 - lr h_k)^M``
(wor, per epoch), as ``m(t) - w = phi^t (m(0) - w)`` and ``C(t) - Sigma = phi^t (C(0) - Sigma) phi^t``.
Solving for ``w`` and ``Sigma`` with the measured ``m(0), C(0)`` (the actual initial sample) and
``m(t), C(t)`` gives unbiased estimates for every mode, however little it has relaxed (slow modes
relax in ``1/(lr h_min)`` steps, often longer than the run); the noise is amplified by
``1/(1 - phi^2t)`` there and the standard errors (over groups) include that.
``relaxed_fraction = 1 - phi^(2T)`` says how far each mode has moved.

The result (:class:`NonequilibriumResult`) gives :meth:`~NonequilibriumResult.metrics` (the keys of
``metrics.json``, docs/regression.md), :meth:`~NonequilibriumResult.checks` (every headline number with
its tolerance), :meth:`~NonequilibriumResult.to_json` and :meth:`~NonequilibriumResult.write_figures`
(:mod:`sgworld.plots`).

Reference: S. Adhikari, A. Kabakçıoğlu, A. Strang, D. Yuret, M. Hinczewski, "Machine learning in and
out of equilibrium", arXiv:2306.03521.
"""

from __future__ import annotations

import json
import logging
import math
import mmap
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ._checks import check_int_range
from .checks import Check
from .problems import Problem
from .run import sample
from .theory import find_minimum, topk_theory, wor_eigen_variance_standard_error, wor_theory, wr_theory
from .thermo import EntropyProductionStream, areal_velocity, entropy_production_steps, fit_linear_drift

__all__ = [
    "Settings", "Minimum", "Theory", "Moments", "WRSimulation", "WORSimulation", "NonequilibriumResult", "analyze",
    "run_analysis", "check_settings", "check_path", "find_w_star", "compute_theory", "relaxation_corrected_moments",
    "relaxed_modes_check",
    "chain_groups", "group_mean", "gaussian_draws", "top_circulation_plane", "footprint", "checks", "Z_CHECK",
]

log = logging.getLogger(__name__)

Z_CHECK = 5.0  # |z| tolerance of the checks: two-sided normal tail 5.7e-7 per compared number
RELAXED_MODE = 0.95  # relaxed_fraction from which a mode counts as relaxed (1.5 relaxation times of its variance)
_CHUNK_BYTES = 64 << 20  # trace read back in chunks of about this size
_IN_MEMORY_BYTES = 512 << 20  # without ``out``, larger traces stream to a temporary folder
_SCHEMES = ("wr", "wor")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """What :func:`analyze` does besides ``lr`` and ``batch_size`` (see its docstring for each field)."""

    lr: float
    batch_size: int
    schemes: tuple[str, ...] = _SCHEMES
    chains: int = 4096
    steps: int = 24000
    segment: int | None = None
    groups: int = 32
    ft_windows: tuple[int, ...] = (1, 2, 3, 10)
    ft_steps: int = 3000
    dft_window: int = 10
    dft_bins: int = 20
    bootstrap: int = 1000
    model_free_chains: int = 1024
    model_free_thin: int = 5
    wor_epochs: int = 100000
    seed: int = 0
    sgd_steps: int = 2000
    dense_max_p: int = 4096
    topk: int | None = 20
    wor_validity_max: float = 0.2

    def steps_per_epoch(self, n: int) -> int:
        return n // self.batch_size

    def resolved_segment(self, n: int) -> int:
        """``segment``, or the smallest multiple of lcm(M, FT windows, model_free_thin) of at least 100 steps."""
        if self.segment is not None:
            return self.segment
        unit = math.lcm(max(self.steps_per_epoch(n), 1), *self.ft_windows, self.model_free_thin)
        return unit * max(1, math.ceil(100 / unit))


def check_settings(s: Settings, n: int) -> None:
    """ValueError naming the setting and its allowed range (before any work)."""
    if not s.lr > 0 or not math.isfinite(s.lr):
        raise ValueError(f"lr = {s.lr!r} is invalid; pass a step size > 0")
    check_int_range("batch_size", s.batch_size, 1, n)
    unknown = [x for x in s.schemes if x not in _SCHEMES]
    if unknown or not s.schemes or len(set(s.schemes)) != len(s.schemes):
        raise ValueError(f"schemes = {s.schemes!r} is invalid; choose one or both of 'wr', 'wor'")
    for name in ("chains", "steps", "groups", "ft_steps", "dft_bins", "bootstrap", "model_free_chains",
                 "model_free_thin", "wor_epochs", "dense_max_p"):
        check_int_range(name, getattr(s, name), 2 if name in ("groups", "dft_bins") else 1)
    check_int_range("sgd_steps", s.sgd_steps, 0)
    if s.topk is not None:
        check_int_range("topk", s.topk, 1)
    m = s.steps_per_epoch(n)
    seg = s.resolved_segment(n)
    if any(k < 1 for k in s.ft_windows):
        raise ValueError(f"ft_windows = {s.ft_windows} must be window lengths >= 1")
    if seg % m or any(seg % k for k in s.ft_windows):
        raise ValueError(f"segment = {seg} must be a multiple of M = {m} and of every FT window {s.ft_windows}")
    if seg % s.model_free_thin:
        raise ValueError(f"segment = {seg} must be a multiple of model_free_thin = {s.model_free_thin}")
    if s.steps < 2 * seg:
        raise ValueError(f"steps = {s.steps} must cover at least two segments of {seg}")
    if s.steps % seg:
        raise ValueError(f"steps = {s.steps} must be a multiple of segment = {seg}")
    if not 2 <= s.groups <= s.chains:
        raise ValueError(f"groups = {s.groups} must be between 2 and chains = {s.chains}")
    if s.dft_window not in s.ft_windows:
        raise ValueError(f"dft_window = {s.dft_window} must be one of ft_windows {s.ft_windows}")
    if not s.wor_validity_max > 0:
        raise ValueError(f"wor_validity_max = {s.wor_validity_max!r} must be > 0 (e.g. 0.2)")


def check_path(s: Settings, p: int) -> str:
    """``"dense"`` up to ``dense_max_p`` parameters, else ``"topk"``; ValueError when top-k is switched off."""
    if p <= s.dense_max_p:
        return "dense"
    if s.topk is None:
        raise ValueError(f"p = {p} is too large for the dense p x p theory (dense_max_p = {s.dense_max_p}); enable "
                         "the top-k path (topk=k, e.g. 20) or raise dense_max_p")
    return "topk"


def footprint(s: Settings, n: int, p: int) -> tuple[float, float]:
    """Lower bounds (bytes) on memory and disk of :func:`analyze`: the traces it streams (``wr`` every
    step, ``wor`` every epoch; on the top-k path only the k subspace coordinates), the snapshots kept,
    one chunk read back, the model-free path, and the dense p x p theory."""
    m, seg = s.steps_per_epoch(n), s.resolved_segment(n)
    q = p if p <= s.dense_max_p or s.topk is None else min(s.topk, p)
    disk = 8.0 * s.chains * q * (s.steps * ("wr" in s.schemes) + s.steps // m * ("wor" in s.schemes))
    snapshots = 8.0 * s.chains * (s.steps // seg + 1) * q * len(s.schemes)
    mf = 8.0 * min(s.model_free_chains, s.chains) * (s.steps // s.model_free_thin + 1) * q
    dense = 8.0 * 12 * p * p if p <= s.dense_max_p else 0.0
    return snapshots + mf + 3 * _CHUNK_BYTES + dense, disk


# --------------------------------------------------------------------------- the minimum


@dataclass(frozen=True, eq=False)
class Minimum:
    """The minimum ``w*`` of ``L``: where Newton started (``start``), its result, and the Hessian spectrum
    (dense path: all eigenvalues, ascending; top-k path: empty, the spectrum is in the theory)."""

    w: np.ndarray
    newton: object  # sgworld.theory.NewtonResult
    start: str
    hessian_eigenvalues: np.ndarray

    @property
    def grad_norm(self) -> float:
        return float(self.newton.grad_norm)


def find_w_star(problem: Problem, lr: float, batch_size: int, w_star=None, *, start=None, sgd_steps: int = 2000,
                seed: int = 0, dense: bool = True, progress: bool | None = False) -> Minimum:
    """``w*`` by Newton's method from ``w_star`` (a point near a minimum: its Hessian must be positive
    definite, else it is refused), from ``start`` (any starting point: Newton's steps use ``|H|`` where
    H is not positive definite), or, with neither, from the end of ``sgd_steps`` SGD steps (``wr``, one
    chain, from ``problem.initial_params()``).

    Raises ValueError naming the offending eigenvalue when the given point, or the point Newton ends
    at, is not a minimum (Hessian not positive definite)."""
    if w_star is not None:
        w0 = np.asarray(w_star, dtype=np.float64).reshape(-1)
        if w0.shape != (problem.dim,):
            raise ValueError(f"w_star must hold p = {problem.dim} numbers, got {w0.size}")
        if dense:
            lam0 = np.linalg.eigvalsh(problem.hessian(torch.as_tensor(w0, dtype=problem.dtype)).double().numpy())
            if not lam0[0] > 0:
                raise ValueError(f"w_star is not a minimum: the Hessian there has eigenvalue {lam0[0]:.4g} <= 0 (of "
                                 f"{lam0.size}); pass a point near a minimum, or w_star=None to find one by SGD + "
                                 "Newton")
        origin = "given point"
    elif start is not None:
        w0 = np.asarray(start, dtype=np.float64).reshape(-1)
        if w0.shape != (problem.dim,):
            raise ValueError(f"the Newton start must hold p = {problem.dim} numbers, got {w0.size}")
        origin = "given start"
    else:
        w0 = problem.initial_params().double().numpy()
        origin = "initial parameters"
        if sgd_steps:
            trace = sample(problem, "sgd", lr=lr, batch_size=batch_size, chains=1, num_draws=1, burn_in=sgd_steps - 1,
                           init=w0, seed=seed, progress=progress)
            w0 = np.asarray(trace.draws[0, -1], dtype=np.float64)
            origin = f"{sgd_steps} SGD steps (lr = {lr:.3g}) from the initial parameters"
    w, newton = find_minimum(problem, w0)
    lam = np.empty(0)
    if dense:
        lam = np.linalg.eigvalsh(problem.hessian(torch.as_tensor(w, dtype=problem.dtype)).double().numpy())
        if not lam[0] > 0:
            raise ValueError(f"the point Newton's method reached is not a minimum: Hessian eigenvalue {lam[0]:.4g} "
                             "<= 0; "
                             "start from another point (w_star) or a longer SGD run (sgd_steps)")
    return Minimum(w=w, newton=newton, start=origin, hessian_eigenvalues=lam)


# --------------------------------------------------------------------------- estimators


def chain_groups(chains: int, groups: int) -> list[slice]:
    """``groups`` contiguous, nearly equal slices of ``chains`` (independent units for standard errors)."""
    edges = np.linspace(0, chains, groups + 1).round().astype(int)
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def group_mean(per_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over groups (axis 0) and its standard error from their spread."""
    return per_group.mean(0), per_group.std(0, ddof=1) / math.sqrt(per_group.shape[0])


def gaussian_draws(mean: np.ndarray, cov: np.ndarray, chains: int, rng: np.random.Generator) -> np.ndarray:
    """``chains`` draws of ``N(mean, cov)`` (cov PSD; eigen-decomposition, robust to tiny scales)."""
    lam, V = np.linalg.eigh(0.5 * (cov + cov.T))
    return mean + (rng.standard_normal((chains, mean.size)) * np.sqrt(np.clip(lam, 0, None))) @ V.T


@dataclass(frozen=True, eq=False)
class Moments:
    """Relaxation-corrected stationary moments (module docstring), each with its standard error over groups.

    ``eig_var`` are the variances along the eigenvectors of the H given (ascending eigenvalues),
    ``cov_uncorrected_eig`` the same from the late snapshots without the correction,
    ``relaxed_fraction = 1 - phi^(2T)`` per mode."""

    mean: np.ndarray
    mean_se: np.ndarray
    cov: np.ndarray
    cov_se: np.ndarray
    eig_var: np.ndarray
    eig_var_se: np.ndarray
    cov_uncorrected_eig: np.ndarray
    relaxed_fraction: np.ndarray


def relaxation_corrected_moments(snapshots: np.ndarray, times: np.ndarray, H: np.ndarray, log_decay_per_unit,
                                 ref: np.ndarray, groups: list[slice]) -> Moments:
    """Stationary mean and covariance from snapshots of a relaxing ensemble (see the module docstring).

    Parameters
    ----------
    snapshots : (chains, J + 1, p)   positions at ``times`` (``times[0] = 0``: the initial sample)
    times : (J + 1,)                 in the unit of ``log_decay_per_unit`` (steps or epochs)
    H : (p, p)                       Hessian whose eigenbasis diagonalises the linear relaxation
    log_decay_per_unit : (p,)        ``log phi_k`` per time unit, in the order of ``eigh(H)``
    ref : (p,)                       reference point (the predicted mean); estimates are about it
    groups : list of slices          independent groups of chains (standard errors from their spread)

    Snapshots in the second half of the run are averaged; each group gives one estimate.
    """
    _, V = np.linalg.eigh(H)
    z = (snapshots - ref) @ V                                   # eigen-coordinates
    late = np.nonzero(times >= times[-1] / 2)[0]
    late = late[times[late] > 0]
    phi = np.exp(np.outer(times[late], log_decay_per_unit))      # (L, p)
    phi2 = phi[:, :, None] * phi[:, None, :]
    means, covs, eig_covs, plain = [], [], [], []
    for g in groups:
        zg = z[g]
        m = zg.mean(0)                                           # (J + 1, p)
        dz = zg - m
        C = dz.transpose(1, 2, 0) @ dz.transpose(1, 0, 2) / (zg.shape[0] - 1)   # (J + 1, p, p), by BLAS
        m_hat = ((m[late] - phi * m[0]) / (1 - phi)).mean(0)
        C_hat = ((C[late] - phi2 * C[0]) / (1 - phi2)).mean(0)
        means.append(ref + V @ m_hat)
        covs.append(V @ C_hat @ V.T)
        eig_covs.append(np.diagonal(C_hat))                     # variances along the eigenvectors of H
        plain.append(np.diagonal(C[late], axis1=1, axis2=2).mean(0))
    means, covs, eig_covs = np.array(means), np.array(covs), np.array(eig_covs)
    mean, mean_se = group_mean(means)
    cov, cov_se = group_mean(covs)
    eig_var, eig_var_se = group_mean(eig_covs)
    return Moments(mean=mean, mean_se=mean_se, cov=cov, cov_se=cov_se, eig_var=eig_var, eig_var_se=eig_var_se,
                   cov_uncorrected_eig=np.mean(plain, axis=0),
                   relaxed_fraction=1 - np.exp(2 * times[-1] * np.asarray(log_decay_per_unit)))


def top_circulation_plane(Q: np.ndarray, Sigma: np.ndarray) -> dict:
    """The invariant plane of largest rotation rate of ``Omega = Sigma^{-1/2} Q Sigma^{-1/2}``.

    ``Omega`` is antisymmetric; its eigenvalues ``+-i omega_k`` are the rotation rates (radians per
    time unit) of the stationary current in invariant planes. Returns ``omega`` (the largest),
    ``basis`` (p, 2) orthonormal in whitened coordinates, oriented so that ``e1^T Omega e2 = -omega``
    (the flow ``dz = -Omega z`` turns e1 towards e2), ``whiten`` (p, p) = ``Sigma^{-1/2}`` and all
    rates ``omegas`` (descending).
    """
    lam, V = np.linalg.eigh(0.5 * (Sigma + Sigma.T))
    whiten = (V / np.sqrt(lam)) @ V.T
    omega_mat = whiten @ Q @ whiten
    ev, U = np.linalg.eig(0.5 * (omega_mat - omega_mat.T))
    k = int(np.argmax(np.abs(ev.imag)))
    e1, e2 = U[:, k].real, U[:, k].imag
    e1 /= np.linalg.norm(e1)
    e2 -= (e2 @ e1) * e1
    e2 /= np.linalg.norm(e2)
    if e1 @ omega_mat @ e2 > 0:
        e2 = -e2
    rates = np.sort(np.abs(ev.imag))[::-2]  # each rate appears as a +- pair
    return {"omega": float(-(e1 @ omega_mat @ e2)), "basis": np.stack([e1, e2], 1), "whiten": whiten,
            "omegas": rates}


# --------------------------------------------------------------------------- simulation


@dataclass(frozen=True, eq=False)
class WRSimulation:
    """Measured counterparts of the ``wr`` theory (all per step, in the analysis coordinates).

    ``areal_groups`` (groups, q, q) is the areal velocity per group of chains (``A``, ``A_se`` their
    mean and standard error); ``ep_rate`` the entropy production per step (SE over chains);
    ``ift`` / ``dft`` the fluctuation theorems over the first ``ft_steps`` steps (windows of
    ``Settings.ft_windows`` steps); ``model_free`` the rate from a fitted linear drift
    (``{"ep_rate", "ep_rate_se", "Q", "transitions", "thin"}`` or ``{"error": why}``); ``final`` the
    chains' last positions and ``cloud`` the late snapshots (for the figures)."""

    moments: Moments
    areal_groups: np.ndarray
    A: np.ndarray
    A_se: np.ndarray
    ep_rate: float
    ep_rate_se: float
    ift: dict
    dft: object
    dft_error: str | None
    model_free: dict
    ft_steps: int
    final: np.ndarray
    cloud: np.ndarray


@dataclass(frozen=True, eq=False)
class WORSimulation:
    """Measured counterparts of the ``wor`` theory (per epoch, at epoch boundaries)."""

    moments: Moments
    areal_groups: np.ndarray
    A: np.ndarray
    A_se: np.ndarray
    final: np.ndarray
    cloud: np.ndarray


def _scheme_seed(seed: int, scheme: str) -> int:
    return int(np.random.SeedSequence([seed, {"wr": 1, "wor": 2}[scheme]]).generate_state(1)[0])


def _run_chains(problem, s: Settings, scheme: str, init: np.ndarray, thin: int, basis, out: Path | None,
                checkpoint_every, progress):
    """All chains of one scheme through :func:`sgworld.sample` (streamed to ``out/sgd-SCHEME`` when given;
    on the top-k path recording the subspace coordinates ``w @ V`` only)."""
    kwargs = {}
    if out is not None:
        kwargs = {"out": Path(out) / f"sgd-{scheme}", "checkpoint_every": checkpoint_every}
    if basis is not None:
        kwargs["record_basis"] = basis
    return sample(problem, "sgd", lr=s.lr, batch_size=s.batch_size, scheme=scheme, chains=s.chains,
                  num_draws=s.steps // thin, thin=thin, init=init, seed=_scheme_seed(s.seed, scheme),
                  progress=progress, **kwargs)


def _chunks(draws, init: np.ndarray, per_chunk: int):
    """``(start, path)`` pieces of a recorded trajectory, each path with the previous point prepended.

    A streamed trace is memory-mapped: the pages a chunk was read from are released after it (they stay
    in the file), so the resident memory is one chunk, not the whole trace."""
    last = init
    mapping = getattr(draws, "_mmap", None) if isinstance(draws, np.memmap) else None
    for start in range(0, draws.shape[1], per_chunk):
        block = np.array(draws[:, start:start + per_chunk], dtype=np.float64)
        if mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
            mapping.madvise(mmap.MADV_DONTNEED)
        yield start, np.concatenate([last[:, None], block], axis=1)
        last = block[:, -1]


def _simulate(problem, s: Settings, scheme: str, state, H: np.ndarray, init: np.ndarray, basis, out,
              checkpoint_every, progress):
    """Run one scheme and accumulate its measured quantities chunk by chunk (module docstring).

    ``state`` is the predicted stationary state in the analysis coordinates (``z = V^T w`` with ``V =
    basis`` on the top-k path, else ``w``); ``H`` the Hessian there (its eigenbasis diagonalises the
    relaxation)."""
    n, m = problem.n, s.steps_per_epoch(problem.n)
    thin = 1 if scheme == "wr" else m
    seg = s.resolved_segment(n) // thin                     # recorded units per segment
    units = s.steps // thin
    segments = units // seg
    groups = chain_groups(s.chains, s.groups)
    trace = _run_chains(problem, s, scheme, init, thin, basis, out, checkpoint_every, progress)
    draws = trace.draws                                      # (chains, units, q) analysis coordinates
    z0 = init if basis is None else init @ basis
    q = z0.shape[1]
    per_chunk = seg * max(1, _CHUNK_BYTES // (8 * s.chains * q * seg))
    snapshots = np.empty((s.chains, segments + 1, q))
    snapshots[:, 0] = z0
    areal = np.zeros((len(groups), q, q))
    wr = scheme == "wr"
    if wr:
        ft = min(s.ft_steps, s.steps)
        rate = EntropyProductionStream.from_state(state)
        fts = EntropyProductionStream.from_state(state, s.ft_windows, bins=s.dft_bins)
    for start, path in _chunks(draws, z0, per_chunk):
        steps = path.shape[1] - 1
        j0 = start // seg
        snapshots[:, j0 + 1: j0 + 1 + steps // seg] = path[:, seg::seg]
        areal += steps * np.array([areal_velocity(path[g], mean=state.mean).value for g in groups])
        if wr:
            sigma = entropy_production_steps(path, state)      # (chains, steps), midpoint rule
            rate.update_steps(sigma)
            if start < ft:
                fts.update_steps(sigma[:, : ft - start])
    areal /= units
    times = seg * np.arange(segments + 1, dtype=float)      # steps (wr) or epochs (wor)
    lam = np.linalg.eigvalsh(H)
    moments = relaxation_corrected_moments(snapshots, times, H, thin * np.log1p(-s.lr * lam), state.mean, groups)
    A, A_se = group_mean(areal)
    final = np.asarray(draws[:, -1], dtype=np.float64)
    cloud = snapshots[:, segments // 2 + 1:].reshape(-1, q)
    if not wr:
        return WORSimulation(moments=moments, areal_groups=areal, A=A, A_se=A_se, final=final, cloud=cloud)
    ep = rate.rate()
    ift = {k: fts.integral_ft(k, n_boot=s.bootstrap, seed=s.seed + k) for k in s.ft_windows}
    dft, dft_error = None, None
    try:
        dft = fts.detailed_ft(s.dft_window, n_boot=s.bootstrap, seed=s.seed)
    except ValueError as exc:  # too few negative windows for a histogram on a short run
        dft_error = str(exc)
        log.warning("detailed FT not available: %s", exc)
    mf = min(s.model_free_chains, s.chains)
    t = s.model_free_thin
    mf_path = np.concatenate([z0[:mf, None], np.asarray(draws[:mf, t - 1::t], dtype=np.float64)], axis=1)
    model_free = _model_free_rate(mf_path, t, max(s.bootstrap // 5, 20), s.seed)
    return WRSimulation(moments=moments, areal_groups=areal, A=A, A_se=A_se, ep_rate=float(ep.value),
                        ep_rate_se=float(ep.stderr), ift=ift, dft=dft, dft_error=dft_error, model_free=model_free,
                        ft_steps=int(fts.steps), final=final, cloud=cloud)


def _model_free_rate(path: np.ndarray, thin: int, n_boot: int, seed: int) -> dict:
    """Entropy-production rate per step from a linear drift fitted to the thinned ``wr`` path."""
    try:
        fit = fit_linear_drift(path, n_boot=n_boot, seed=seed)
    except ValueError as exc:  # e.g. a fitted soft mode without a stationary state on a short run
        log.warning("model-free fit failed: %s", exc)
        return {"ep_rate": None, "ep_rate_se": None, "Q": None, "error": str(exc)}
    return {"ep_rate": fit.state.ep_rate / thin, "ep_rate_se": fit.ep_rate_stderr / thin, "Q": fit.state.Q / thin,
            "transitions": fit.n_transitions, "thin": thin}


# --------------------------------------------------------------------------- the result


def _z(estimate, reference, se):
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.asarray(estimate, dtype=float) - np.asarray(reference, dtype=float)) / np.asarray(se, dtype=float)


def _eig(S: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Variances of ``S`` along the columns of ``V``."""
    return np.einsum("pi,pi->i", V, S @ V)


def _circulation(state, areal_groups: np.ndarray) -> tuple[dict, dict]:
    """Rotation rate in the plane of largest circulation: theory and from the areal velocity per group."""
    plane = top_circulation_plane(state.Q, state.Sigma)
    P = plane["whiten"] @ plane["basis"]                           # w-space -> plane coordinates
    per_group = -np.einsum("i,gij,j->g", P[:, 0], areal_groups, P[:, 1])
    omega_sim, omega_se = group_mean(per_group)
    return {"omega_theory": plane["omega"], "omega_sim": float(omega_sim), "omega_sim_se": float(omega_se),
            "omega_z": float(_z(omega_sim, plane["omega"], omega_se)),
            "omegas_theory_top5": plane["omegas"][:5]}, plane


@dataclass(frozen=True, eq=False)
class NonequilibriumResult:
    """Everything :func:`analyze` found (module docstring).

    ``path`` is ``"dense"`` or ``"topk"``; on the top-k path every matrix and trajectory quantity is in
    the coordinates ``z = V^T w`` of the top-k Hessian eigenspace (``basis`` = V) and ``notes`` say so.
    ``wr_theory`` is a :class:`sgworld.theory.WRTheory` (dense) or
    :class:`sgworld.theory.TopKTheory`; ``wor_theory`` a :class:`sgworld.theory.WORTheory` (dense
    only). ``wr`` / ``wor`` are the simulations (None for a scheme not analysed)."""

    settings: Settings
    problem_name: str
    n: int
    dim: int
    minimum: Minimum
    path: str
    basis: np.ndarray | None
    wr_theory: object | None
    wor_theory: object | None
    wr: WRSimulation | None
    wor: WORSimulation | None
    timings: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def steps_per_epoch(self) -> int:
        return self.settings.steps_per_epoch(self.n)

    def planes(self) -> dict:
        """The plane of largest circulation per scheme with a theory (for the current figure)."""
        out = {}
        if self.wr is not None:
            out["wr"] = _circulation(self.wr_theory.state, self.wr.areal_groups)[1]
        if self.wor is not None and self.wor_theory is not None:
            out["wor"] = _circulation(self.wor_theory.state, self.wor.areal_groups)[1]
        return out

    def metrics(self) -> dict:
        """The results as plain numbers and arrays, under the keys of ``metrics.json`` (docs/regression.md)."""
        s, mn = self.settings, self.minimum
        out = {
            "lr": s.lr, "batch_size": s.batch_size, "steps_per_epoch": self.steps_per_epoch,
            "problem": {"name": self.problem_name, "n": self.n, "p": self.dim},
            "analysis": {"path": self.path, "dense_max_p": s.dense_max_p,
                         "k": None if self.basis is None else int(self.basis.shape[1]), "notes": list(self.notes)},
            "w_star": mn.w,
            "newton": {"iterations": mn.newton.iterations, "grad_norm": mn.newton.grad_norm,
                       "step_norm": mn.newton.step_norm, "loss": mn.newton.value,
                       "regularised_steps": mn.newton.regularised_steps, "start": mn.start},
            "hessian_eigenvalues": (mn.hessian_eigenvalues if self.path == "dense"
                                    else self.wr_theory.hessian_eigenvalues[::-1]),
        }
        if self.wr is not None:
            out["wr"] = self._wr_metrics()
        if self.wor is not None:
            out["wor"] = self._wor_metrics()
        out["simulation"] = {
            "chains": s.chains, "steps": s.steps, "groups": s.groups, "segment": s.resolved_segment(self.n),
            "init": "chains start from the predicted stationary Gaussian: N(w*, Sigma_WR) for wr, N(w_eff, Sigma_WOR) "
                    "for wor (observed at epoch boundaries). A linear process started in its stationary law has "
                    "no transient, so no burn-in; moments use the relaxation-corrected estimator, whose standard "
                    "errors grow for modes with small relaxed_fraction.",
            "standard_errors": f"spread over {s.groups} independent groups of chains",
        }
        return out

    def _wr_metrics(self) -> dict:
        th, sim, mw = self.wr_theory, self.wr, self.wr.moments
        H = th.state.H
        _, V = np.linalg.eigh(H)
        iu = np.triu_indices(H.shape[0], 1)
        circ, _ = _circulation(th.state, sim.areal_groups)
        mf = sim.model_free
        out = {
            "sigma_theory_diag": np.diag(th.state.Sigma),
            "sigma_sim_diag": np.diag(mw.cov),
            "sigma_sim_diag_se": np.diag(mw.cov_se),
            "sigma_z_diag": _z(np.diag(mw.cov), np.diag(th.state.Sigma), np.diag(mw.cov_se)),
            "sigma_theory_eig": _eig(th.state.Sigma, V),
            "sigma_sim_eig": mw.eig_var,
            "sigma_sim_eig_se": mw.eig_var_se,
            "sigma_z_eig": _z(mw.eig_var, _eig(th.state.Sigma, V), mw.eig_var_se),
            "sigma_sim_eig_uncorrected": mw.cov_uncorrected_eig,
            "relaxed_fraction": mw.relaxed_fraction,
            "sigma_theory": th.state.Sigma,
            "sigma_sim": mw.cov,
            "sigma_sim_se": mw.cov_se,
            "mean_sim": mw.mean,
            "mean_sim_se": mw.mean_se,
            "Q_theory": th.state.Q,
            "A_sim": sim.A,
            "A_sim_se": sim.A_se,
            "A_z_upper": _z(sim.A[iu], th.state.Q[iu], sim.A_se[iu]),
            "D": th.state.D,
            "S": th.S,
            "commutator_ratio": th.state.commutator_ratio,
            "lr_hmax": th.state.lr_hmax,
            "ep_rate_theory": th.state.ep_rate,
            "ep_rate_sim": sim.ep_rate,
            "ep_rate_sim_se": sim.ep_rate_se,
            "ep_rate_z": float(_z(sim.ep_rate, th.state.ep_rate, sim.ep_rate_se)),
            "ep_rate_model_free": mf["ep_rate"],
            "ep_rate_model_free_se": mf["ep_rate_se"],
            "model_free": {k: v for k, v in mf.items() if k not in ("ep_rate", "ep_rate_se")},
            "circulation": circ,
            "ift": {str(k): r.ratio for k, r in sim.ift.items()},
            "ift_ci": {str(k): list(r.ratio_ci) for k, r in sim.ift.items()},
            "ift_mean_exp": {str(k): r.mean_exp for k, r in sim.ift.items()},
            "ift_mean_exp_ci": {str(k): list(r.mean_exp_ci) for k, r in sim.ift.items()},
            "ift_mean_delta_s": {str(k): r.mean_delta_s for k, r in sim.ift.items()},
            "ift_windows": {str(k): r.n_windows for k, r in sim.ift.items()},
            "dft_window": self.settings.dft_window,
            "dft_slope": None if sim.dft is None else sim.dft.slope,
            "dft_slope_ci": [None, None] if sim.dft is None else list(sim.dft.slope_ci),
            "dft_slope_se": None if sim.dft is None else sim.dft.slope_stderr,
            "ft_steps": sim.ft_steps,
        }
        if sim.dft_error is not None:
            out["dft_error"] = sim.dft_error
        return out

    def _wor_metrics(self) -> dict:
        sim, mo = self.wor, self.wor.moments
        if self.wor_theory is None:  # top-k path: measured only
            return {"mean_sim": mo.mean, "mean_sim_se": mo.mean_se, "sigma_sim_diag": np.diag(mo.cov),
                    "sigma_sim_diag_se": np.diag(mo.cov_se), "sigma_sim": mo.cov, "A_sim": sim.A, "A_sim_se": sim.A_se,
                    "steps_per_epoch": self.steps_per_epoch, "theory": None}
        wor, w_star, lr, m = self.wor_theory, self.minimum.w, self.settings.lr, self.steps_per_epoch
        ed = wor.diffusion
        _, V_eff = np.linalg.eigh(wor.state.H)
        eig_se = wor_eigen_variance_standard_error(wor.state.H, ed.second_order_displacements, lr, m)
        eig_se_discrete = wor_eigen_variance_standard_error(wor.state.H, ed.displacements, lr, m)
        circ, _ = _circulation(wor.state, sim.areal_groups)
        out = {
            "w_eff_theory": wor.state.mean,
            "w_eff_first_order": wor.effective.w_first_order,
            "w_eff_newton_vs_first_order": wor.effective.difference,
            "shift_theory": wor.state.mean - w_star,
            "mean_sim": mo.mean,
            "mean_sim_se": mo.mean_se,
            "shift_sim": mo.mean - w_star,
            "mean_z": _z(mo.mean, wor.state.mean, mo.mean_se),
            "shift_relative_error": float(np.linalg.norm(mo.mean - wor.state.mean)
                                          / np.linalg.norm(wor.state.mean - w_star)),
            "sigma_theory_diag": np.diag(wor.state.Sigma),
            "sigma_theory_diag_se": np.diag(wor.Sigma_se),
            "sigma_theory_discrete_diag": np.diag(wor.Sigma_discrete),
            "sigma_sim_diag": np.diag(mo.cov),
            "sigma_sim_diag_se": np.diag(mo.cov_se),
            "sigma_z_diag": _z(np.diag(mo.cov), np.diag(wor.state.Sigma),
                               np.hypot(np.diag(mo.cov_se), np.diag(wor.Sigma_se))),
            "sigma_theory_eig": _eig(wor.state.Sigma, V_eff),
            "sigma_theory_eig_se": eig_se,
            "sigma_theory_discrete_eig": _eig(wor.Sigma_discrete, V_eff),
            "sigma_sim_eig": mo.eig_var,
            "sigma_sim_eig_se": mo.eig_var_se,
            "sigma_z_eig": _z(mo.eig_var, _eig(wor.state.Sigma, V_eff), np.hypot(mo.eig_var_se, eig_se)),
            "sigma_discrete_z_eig": _z(mo.eig_var, _eig(wor.Sigma_discrete, V_eff), np.hypot(mo.eig_var_se,
                                                                                             eig_se_discrete)),
            "relaxed_fraction": mo.relaxed_fraction,
            "sigma_theory": wor.state.Sigma,
            "sigma_sim": mo.cov,
            "A_sim": sim.A,
            "A_sim_se": sim.A_se,
            "Q_theory": wor.state.Q,
            "circulation": circ,
            "D_epoch_second_order": ed.D_second_order,
            "D_epoch_simulated": ed.D,
            "D_epoch_se": ed.D_se,
            "D_epoch_relative_difference_eig": _eig(ed.D, V_eff) / _eig(ed.D_second_order, V_eff) - 1,
            "ep_rate_theory_per_epoch": wor.state.ep_rate,
            "lr_M_hmax": wor.state.lr_hmax,
            "lr_M_hmax_max": self.settings.wor_validity_max,
            "steps_per_epoch": wor.steps_per_epoch,
        }
        if self.wr_theory is not None and self.path == "dense":
            _, V = np.linalg.eigh(self.wr_theory.state.H)
            out["variance_ratio_wr_over_wor_eig"] = _eig(self.wr_theory.state.Sigma, V) / _eig(wor.state.Sigma, V_eff)
        return out

    def checks(self) -> list[Check]:
        """Every headline number against theory with its tolerance (:func:`checks` of :meth:`metrics`)."""
        return checks(self.metrics())

    def to_json(self, path=None, metrics: dict | None = None) -> str:
        """The metrics (or ``metrics``) as JSON text, written atomically to ``path`` when given."""
        from ._atomic import atomic_write
        from .experiments.common import to_jsonable

        text = json.dumps(to_jsonable(self.metrics() if metrics is None else metrics), indent=2) + "\n"
        if path is not None:
            with atomic_write(Path(path), "w", encoding="utf-8") as fh:
                fh.write(text)
        return text

    def save(self, out_dir, started: float | None = None, **extra) -> dict:
        """Figures and ``metrics.json`` (with ``extra`` keys, the figure names, the timings and, given the
        start time, ``runtime_s``) in ``out_dir``; returns the metrics written."""
        out_dir = Path(out_dir)
        metrics = {**self.metrics(), **extra}
        tic = time.time()
        metrics["figures"] = self.write_figures(out_dir, metrics)
        metrics["timings"] = {**self.timings, "figures_s": time.time() - tic}
        if started is not None:
            metrics["runtime_s"] = time.time() - started
        self.to_json(out_dir / "metrics.json", metrics)
        return metrics

    def write_figures(self, out_dir, metrics: dict | None = None) -> list[str]:
        """The pipeline's figures as PNG files in ``out_dir`` (:func:`sgworld.plots.nonequilibrium_figures`);
        returns their file names."""
        from .plots import nonequilibrium_figures

        return nonequilibrium_figures(self, Path(out_dir), self.metrics() if metrics is None else metrics)


# --------------------------------------------------------------------------- checks


def group_z_tolerance(groups: int | None) -> float:
    """The |z| tolerance with the false-failure rate of ``Z_CHECK`` for a z-score whose standard error comes
    from the spread of ``groups`` independent groups: the Student t quantile with ``groups - 1`` degrees of
    freedom at the normal tail of ``Z_CHECK`` (5.7e-7 two-sided); e.g. 17.1 for 8 groups, 8.3 for 16, 6.3 for
    32. ``None`` (unknown): ``Z_CHECK``."""
    if groups is None:
        return Z_CHECK
    from scipy import stats

    return float(stats.t.isf(stats.norm.sf(Z_CHECK), int(groups) - 1))


def _z_check(name: str, z, note: str = "", tol: float = Z_CHECK) -> Check:
    """Largest |z| of a set of z-scores against ``tol``; a missing (non-finite) z fails."""
    z = [math.nan if v is None else float(v) for v in np.ravel(np.asarray(z, dtype=object))]
    if not all(map(math.isfinite, z)):
        return Check(name, None, 0.0, f"|z| < {tol:.3g}", False, f"non-finite z-score among {len(z)}")
    worst = max(map(abs, z))
    return Check(name, worst, 0.0, f"|z| < {tol:.3g}", worst < tol, f"{len(z)} numbers; {note}".rstrip("; "))


def _rate_check(name: str, value, se, theory, missing: str, tol: float = Z_CHECK) -> Check:
    if value is None or se is None or not se > 0:
        return Check(name, value, theory, f"|z| < {tol:.3g}", None, missing)
    z = (value - theory) / se
    return Check(name, value, theory, f"|z| < {tol:.3g}", abs(z) < tol, f"z = {z:+.2f} (SE {se:.2g})")


def relaxed_modes_check(label: str, scheme: dict, tol: float) -> Check:
    """Sigma against theory along the eigenmodes that relaxed at least ``RELAXED_MODE`` of the way: there the
    simulation has forgotten its start, so the comparison has power whatever the start was; "not
    resolved" when no mode relaxed that far."""
    name = f"{label}: Sigma along the eigenmodes relaxed >= {RELAXED_MODE:.0%}, max |z|"
    frac = np.asarray(scheme["relaxed_fraction"], dtype=float)
    keep = frac >= RELAXED_MODE
    if not keep.any():
        return Check(name, None, 0.0, f"|z| < {tol:.3g}", None,
                     f"not resolved: no mode relaxed that far (largest relaxed fraction {frac.max():.2g}; "
                     "more steps resolve it)")
    sim, theory = (np.asarray(scheme[k], dtype=float)[keep] for k in ("sigma_sim_eig", "sigma_theory_eig"))
    return _z_check(name, np.asarray(scheme["sigma_z_eig"], dtype=float)[keep],
                    f"{keep.sum()} of {frac.size} modes, their summed variance: simulation / theory - 1 = "
                    f"{sim.sum() / theory.sum() - 1:+.1%}", tol)


def _relative_range(sim, theory) -> str:
    ratio = np.asarray(sim, dtype=float) / np.asarray(theory, dtype=float) - 1
    return f"simulation / theory - 1 from {ratio.min():+.1%} to {ratio.max():+.1%}"


def checks(metrics: dict) -> list[Check]:
    """The headline numbers of :meth:`NonequilibriumResult.metrics` (or a ``metrics.json``) against theory:
    z-scores at a false-failure rate of 5.7e-7 per number (``Z_CHECK`` = 5 for bootstrap standard errors; the
    t quantile of :func:`group_z_tolerance` where the standard error comes from the spread of the chain
    groups), the fluctuation theorems within their 95% bootstrap intervals, ``lr M h_max`` below its limit."""
    out = []
    tol = group_z_tolerance(metrics.get("simulation", {}).get("groups"))
    analysis = metrics.get("analysis", {})
    if analysis.get("path") == "topk":
        out.append(Check("Theory path: top-k Hessian eigenspace", analysis.get("k"),
                         note=f"p = {metrics.get('problem', {}).get('p')} > dense_max_p = "
                              f"{analysis.get('dense_max_p')}: "
                              "covariances, currents and entropy production refer to the top-k subspace"))
    wr = metrics.get("wr")
    if wr is not None:
        out += [
            _z_check("WR: Sigma diagonal vs Lyapunov theory, max |z|", wr["sigma_z_diag"],
                     _relative_range(wr["sigma_sim_diag"], wr["sigma_theory_diag"]), tol),
            relaxed_modes_check("WR", wr, tol),
            _z_check("WR: areal velocity A vs circulation Q, max |z|", wr["A_z_upper"],
                     f"|Q| up to {np.max(np.abs(np.asarray(wr['Q_theory'], dtype=float))):.2g}", tol),
            _rate_check("WR: entropy production per step, simulated", wr["ep_rate_sim"], wr["ep_rate_sim_se"],
                        wr["ep_rate_theory"], "no standard error", tol),
            _rate_check("WR: entropy production per step, model-free", wr["ep_rate_model_free"],
                        wr["ep_rate_model_free_se"], wr["ep_rate_theory"],
                        "not available: the drift fit failed: " + str(wr["model_free"].get("error",
                                                                                           "no standard error"))),
            Check("WR: commutator ratio ||[H, D]|| / ||H D||", wr["commutator_ratio"],
                  note="0 when H and D commute (then no circulation)"),
        ]
        for k, ratio in wr["ift"].items():
            lo, hi = wr["ift_ci"][k]
            ok = None if None in (ratio, lo, hi) else lo <= 0 <= hi
            out.append(Check(f"IFT figure of merit (<exp(-ds)> - 1) / <ds>, window {k}", ratio, 0.0,
                             "0 within the 95% CI", ok,
                             f"95% CI [{lo:.3g}, {hi:.3g}]" if ok is not None else "no bootstrap interval"))
        lo, hi = wr["dft_slope_ci"]
        out.append(Check(f"DFT slope of ln P(ds)/P(-ds), window {wr['dft_window']}", wr["dft_slope"], 1.0,
                         "1 within the 95% CI", None if None in (wr["dft_slope"], lo, hi) else lo <= 1 <= hi,
                         f"95% CI [{lo:.3g}, {hi:.3g}]" if None not in (lo, hi) else
                         wr.get("dft_error", "no bootstrap interval")))
    wor = metrics.get("wor")
    if wor is not None and wor.get("theory", True) is not None:
        out += [
            _z_check("WOR: stationary mean vs w_eff = argmin L_eff, max |z|", wor["mean_z"],
                     f"shift w_eff - w*: simulation within {wor['shift_relative_error']:.1%} of theory", tol),
            _z_check("WOR: Sigma diagonal vs theory, max |z|", wor["sigma_z_diag"],
                     _relative_range(wor["sigma_sim_diag"], wor["sigma_theory_diag"]), tol),
            relaxed_modes_check("WOR", wor, tol),
        ]
        limit = wor.get("lr_M_hmax_max", 0.1)
        out.append(Check("WOR: lr M h_max", wor["lr_M_hmax"], None, f"< {limit:g}", wor["lr_M_hmax"] < limit,
                         "the WOR theory is an expansion in lr M h_max"))
        gap = np.abs(np.asarray(wor["D_epoch_relative_difference_eig"], dtype=float))
        out.append(Check("WOR: per-epoch diffusion, simulated vs second-order formula, max relative gap",
                         float(gap.max()), note="third order in lr M h; Sigma_WOR uses the second-order D"))
    newton = metrics["newton"]
    out.append(Check("Newton: |grad L(w*)|", newton["grad_norm"],
                     note=f"{newton['iterations']} iterations from {newton.get('start', 'the start')}"))
    return out


# --------------------------------------------------------------------------- the pipeline


def analyze(problem: Problem, *, lr: float, batch_size: int, schemes=_SCHEMES, w_star=None, chains: int = 4096,
            steps: int = 24000, segment: int | None = None, groups: int = 32, ft_windows=(1, 2, 3, 10),
            ft_steps: int = 3000, dft_window: int = 10, dft_bins: int = 20, bootstrap: int = 1000,
            model_free_chains: int = 1024, model_free_thin: int = 5, wor_epochs: int = 100000, seed: int = 0,
            sgd_steps: int = 2000, dense_max_p: int = 4096, topk: int | None = 20, wor_validity_max: float = 0.2,
            out=None, checkpoint_every: float | None = 60.0, progress: bool | None = None,
            minimum: Minimum | None = None) -> NonequilibriumResult:
    """SGD out of equilibrium on ``problem`` (module docstring): minimum, theory, simulation, measurements.

    Parameters
    ----------
    problem : Problem (float64 recommended: the ``wor`` covariance is ~lr^3)
    lr, batch_size : SGD step size and minibatch size b (``wor`` needs b dividing N)
    schemes : ``("wr", "wor")`` or one of them
    w_star : (p,) point near the minimum (Newton polishes it), or None: ``sgd_steps`` SGD steps from
        ``problem.initial_params()``, then Newton. ``minimum``: a :class:`Minimum` already found.
    chains, steps : chains per scheme and SGD steps per chain
    segment : steps between the snapshots of the relaxation-corrected moments (a multiple of M, of
        every FT window and of ``model_free_thin``; default: the smallest such multiple >= 100)
    groups : independent groups of chains for standard errors
    ft_windows, ft_steps, dft_window, dft_bins, bootstrap : the fluctuation theorems over windows of
        these lengths (steps) in the first ``ft_steps`` steps; detailed-FT window and bins; bootstrap
        replicates of their intervals
    model_free_chains, model_free_thin : chains and thinning of the path behind the model-free rate
    wor_epochs : permutations behind ``D_WOR`` (its Monte Carlo error is in the WOR standard errors)
    seed : one seed for the starting draws, the chains (via ``sample``), the theory and the bootstraps
    dense_max_p, topk : dense p x p theory up to ``dense_max_p`` parameters; above, the top-``topk``
        Hessian eigenspace (None: refuse instead)
    wor_validity_max : largest ``lr M h_max`` accepted for the WOR theory
    out : folder for the streamed traces and their checkpoints (resumable); None: in memory, or a
        temporary folder when the traces exceed 512 MB
    progress : ``sample()``'s progress bar (None: on a terminal)

    Raises
    ------
    ValueError (one line, naming the value and the fix): bad settings; ``w_star`` not a minimum;
    ``D`` singular; ``lr M h_max`` beyond ``wor_validity_max``; p above ``dense_max_p`` with
    ``topk=None``; and the theory's own checks (:mod:`sgworld.theory`).
    """
    s = Settings(lr=lr, batch_size=batch_size, schemes=tuple(schemes), chains=chains, steps=steps, segment=segment,
                 groups=groups, ft_windows=tuple(ft_windows), ft_steps=ft_steps, dft_window=dft_window,
                 dft_bins=dft_bins, bootstrap=bootstrap, model_free_chains=model_free_chains,
                 model_free_thin=model_free_thin, wor_epochs=wor_epochs, seed=seed, sgd_steps=sgd_steps,
                 dense_max_p=dense_max_p, topk=topk, wor_validity_max=wor_validity_max)
    return run_analysis(problem, s, w_star=w_star, out=out, checkpoint_every=checkpoint_every, progress=progress,
                        minimum=minimum)


@dataclass(frozen=True, eq=False)
class Theory:
    """The theory half of :func:`analyze`: ``path`` ("dense" or "topk"), ``wr`` (a
    :class:`sgworld.theory.WRTheory`, or on the top-k path a :class:`sgworld.theory.TopKTheory`), ``wor``
    (a :class:`sgworld.theory.WORTheory`, dense only), the top-k ``basis`` (p, k) or None, and notes."""

    path: str
    wr: object | None
    wor: object | None
    basis: np.ndarray | None
    notes: tuple[str, ...]
    seconds: float


def compute_theory(problem: Problem, s: Settings, minimum: Minimum, progress: bool | None = False) -> Theory:
    """The ``wr`` and ``wor`` theory at ``minimum`` (module docstring, step 2); every refusal (D singular,
    ``lr M h_max`` beyond ``wor_validity_max``, p too large with ``topk=None``) is a one-line ValueError."""
    tic = time.time()
    p, dense = problem.dim, check_path(s, problem.dim) == "dense"
    notes, wr_th, wor_th, basis = [], None, None, None
    if dense:
        if "wr" in s.schemes:
            wr_th = wr_theory(problem, minimum.w, s.lr, s.batch_size)
        if "wor" in s.schemes:
            m, h_max = s.steps_per_epoch(problem.n), float(minimum.hessian_eigenvalues[-1])
            lr_m_hmax = s.lr * m * h_max
            if lr_m_hmax >= s.wor_validity_max and s.lr * h_max < 2:  # (lr h_max >= 2: wor_theory's own error)
                raise ValueError(f"lr M h_max = {lr_m_hmax:.3g} is beyond the validity range of the WOR theory "
                                 f"(< {s.wor_validity_max:g}); lower lr below {s.wor_validity_max / (m * h_max):.3g}, "
                                 "or drop 'wor' from schemes")
            wor_th = wor_theory(problem, minimum.w, s.lr, s.batch_size, epochs=s.wor_epochs, seed=s.seed,
                                progress=progress)
    else:
        k = min(s.topk, p)
        wr_th = topk_theory(problem, minimum.w, s.lr, s.batch_size, k, seed=s.seed)
        basis = wr_th.basis
        notes.append(f"p = {p} > dense_max_p = {s.dense_max_p}: top-k path with k = {k}; covariances, currents "
                     "and entropy production refer to the top-k Hessian eigenspace (coordinates z = V^T w)")
        if "wor" in s.schemes:
            notes.append("wor on the top-k path: simulated moments in the subspace, without a theory")
    return Theory(path="dense" if dense else "topk", wr=wr_th, wor=wor_th, basis=basis, notes=tuple(notes),
                  seconds=time.time() - tic)


def run_analysis(problem: Problem, s: Settings, *, w_star=None, out=None, checkpoint_every: float | None = 60.0,
                 progress: bool | None = None, minimum: Minimum | None = None,
                 theory: Theory | None = None) -> NonequilibriumResult:
    """:func:`analyze` with its settings as one :class:`Settings` record; ``minimum`` and ``theory`` when
    already computed (:func:`find_w_star`, :func:`compute_theory`)."""
    check_settings(s, problem.n)
    p = problem.dim
    check_path(s, p)
    timings = {}
    tic = time.time()
    mn = minimum or find_w_star(problem, s.lr, s.batch_size, w_star, sgd_steps=s.sgd_steps, seed=s.seed,
                                dense=p <= s.dense_max_p, progress=progress)
    timings["minimum_s"] = time.time() - tic
    theory = theory or compute_theory(problem, s, mn, progress)
    timings["theory_s"] = theory.seconds
    wr_th, wor_th, basis, notes = theory.wr, theory.wor, theory.basis, list(theory.notes)

    rng = np.random.default_rng(np.random.SeedSequence([s.seed, 0]))
    traces_bytes = footprint(s, problem.n, p)[1]
    scratch = None
    if out is None and traces_bytes > _IN_MEMORY_BYTES:
        scratch = tempfile.TemporaryDirectory(prefix="sgworld-nonequilibrium-")
        out, checkpoint_every = scratch.name, None
    try:
        sims = {}
        for scheme in ("wr", "wor"):
            if scheme not in s.schemes:
                continue
            tic = time.time()
            if scheme == "wr":
                state = wr_th.state
                H = state.H
                mean_w, cov_w = mn.w, (wr_th.state.Sigma if basis is None else None)
            else:
                state = wor_th.state if wor_th is not None else None
                H = wor_th.state.H if wor_th is not None else wr_th.state.H
                mean_w, cov_w = (wor_th.state.mean, wor_th.state.Sigma) if wor_th is not None else (mn.w, None)
            init = _initial_draws(mean_w, cov_w, basis, wr_th, s.chains, rng)
            state = state or wr_th.state  # wor on the top-k path: moments about w* in the subspace
            sims[scheme] = _simulate(problem, s, scheme, state, H, init, basis, out, checkpoint_every, progress)
            timings[f"{scheme}_simulation_s"] = time.time() - tic
    finally:
        if scratch is not None:
            scratch.cleanup()
    return NonequilibriumResult(settings=s, problem_name=problem.name, n=problem.n, dim=p, minimum=mn,
                                path=theory.path, basis=basis, wr_theory=wr_th, wor_theory=wor_th,
                                wr=sims.get("wr"), wor=sims.get("wor"), timings=timings, notes=tuple(notes))


def _initial_draws(mean_w, cov_w, basis, wr_th, chains: int, rng) -> np.ndarray:
    """Starting points ``(chains, p)``: the predicted stationary Gaussian; on the top-k path the subspace
    covariance is lifted, ``w* + V z`` with ``z ~ N(0, Sigma_k)`` (the other directions start at w*)."""
    if basis is None:
        return gaussian_draws(np.asarray(mean_w), cov_w, chains, rng)
    z = gaussian_draws(np.zeros(basis.shape[1]), wr_th.state.Sigma, chains, rng)
    return np.asarray(mean_w) + z @ basis.T
