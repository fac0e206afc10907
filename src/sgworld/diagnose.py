"""Equilibrium diagnostic for any trace: ESS, R-hat, and the entropy production and circulation per draw.

A sampler in equilibrium (detailed balance: MALA, HMC, full-batch Langevin on its own stationary law)
produces a *time-reversible* sequence of draws: a stretch of draws and the same stretch played backwards
are equally likely. Stochastic-gradient samplers with minibatch noise (SGLD, SGD) are not reversible:
their stationary state carries a probability current (arXiv:2306.03521). :func:`diagnose` measures
that irreversibility model-free, from the draws alone, in the top principal subspace of the chains.

Method (``(chains, draws, p)`` draws ``x``, lag ``L`` draws, top ``k`` principal components):

1. Project and whiten: ``z = Lambda^{-1/2} V^T (x - xbar)`` with ``V`` the top-k eigenvectors and
   ``Lambda`` the eigenvalues of the pooled covariance, so that ``z`` has identity covariance.
2. Fit the draw-to-draw map ``z_{n+1} = F z_n + eta``, ``Cov[eta] = N`` by least squares
   (:func:`sgworld.thermo.model_free.fit_linear_drift`: ``F = I - state.H``, ``N = 2 state.D``), with
   ``Sigma`` the fitted map's exact stationary covariance ``Sigma = F Sigma F^T + N``.
3. Entropy production per draw of that linear-Gaussian Markov chain: the Kullback-Leibler divergence
   between the stationary joint law of a forward transition and of its time reverse,
   ``Pi = KL(N(0, [[Sigma, Sigma F^T], [F Sigma, Sigma]]) || N(0, [[Sigma, F Sigma], [Sigma F^T, Sigma]]))``
   (:func:`map_entropy_production`), the mean of the exact per-step log path-probability ratio
   (:func:`sgworld.thermo.trajectory.exact_linear_gaussian_entropy_production`). It is zero iff
   ``F Sigma`` is symmetric -- detailed balance of the discrete-time map -- and positive otherwise.
   Note that the continuous-time criterion ``[H, D] = 0`` is not the one that matters for a
   discrete map: with exact discrete-time ``Sigma``, ULA's ``F = I - lr H`` satisfies it at every lr.
4. Circulation: the areal velocity ``A = <z_n z_{n+1}^T - z_{n+1} z_n^T> / 2`` (whitened, per draw;
   :func:`sgworld.thermo.trajectory.areal_velocity`), reported in the plane ``(i, j)`` of principal
   components with the largest ``|A_ij|``. ``A = (Sigma F^T - F Sigma) / 2`` is zero iff ``Pi`` is.

Intervals. The ``K`` chains are independent and equally long, so their own areal velocities ``a_c``
(the upper-triangular entries of ``A``, one vector per chain) are i.i.d. ``A`` is linear in the data:
its interval is the mean over chains plus or minus ``t_{K-1} * sd / sqrt(K)``, at the Bonferroni level
``1 - (1 - level) / m`` over the ``m = k(k-1)/2`` planes (the plane is selected as the largest).
``Pi`` is nonnegative and, near equilibrium, quadratic in ``A``: ``Pi ~ a^T W a`` with ``W`` from
``Pi_2 = (1/4) tr((Sigma_0^{-1} Delta)^2)`` (``Sigma_0`` the joint covariance of ``(z_n, z_{n+1})`` with
``F Sigma`` replaced by its symmetric part, ``Delta = Sigma_fwd - Sigma_rev = 2 [[0, A], [-A, 0]]``).
So the plug-in value is biased upwards by ``tr(W S_a) / K`` (``S_a`` the covariance of the chains'
``a_c``); the reported value subtracts it, is centred on zero for a reversible sampler, and may come
out negative. Its variance is the delete-a-group jackknife variance of the plug-in value over ``G``
groups of chains (default ``G = min(K, 32)``) plus the degenerate second-order term of a quadratic
form, ``2 tr((W S_a)^2) / (K (K - 1))`` (the variance of the U-statistic ``sum_{c != d} a_c^T W a_d``
at ``Pi = 0``). The first term is the delta-method variance where ``Pi`` is far from 0 (it includes the
noise of ``F`` and ``Sigma``); the second keeps the standard error honest at ``Pi = 0``. Near 0 the
estimate is skewed and ``value +- t_{G-1} * stderr`` alone under-covers, so the interval is the union
of that t-interval and the root interval of :func:`_root_interval` (the ``W``-norm of the mean areal
velocity is 1-Lipschitz, bounded with Hotelling's ``T^2``), which keeps its level at, near and far
from ``Pi = 0`` as far as the noise of ``A`` goes.

The diagnostic needs stationary draws (check R-hat) and draws that are correlated from one to the
next: a map ``F ~ 0`` (thinning far beyond the relaxation time) leaves no irreversibility to see at
lag 1, whatever the sampler; the result says so when the fitted map's spectral radius is small.
Everything refers to the top-k subspace (the projected process is the marginal of the full one).

Reference: S. Adhikari, A. Kabakçıoğlu, A. Strang, D. Yuret, M. Hinczewski, "Machine learning in and
out of equilibrium", arXiv:2306.03521; docs/diagnose.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from ._checks import check_fraction, check_int_range
from .diagnostics import ess, gaussian_kl, rhat
from .theory.stationary import solve_lyapunov
from .thermo.model_free import _chain_statistics, _fit_from_statistics, fit_linear_drift
from .thermo.trajectory import areal_velocity

__all__ = ["Interval", "Diagnosis", "diagnose", "map_entropy_production", "principal_subspace"]

EQUILIBRIUM = "consistent with equilibrium"
NONEQUILIBRIUM = "out of equilibrium"
DEFAULT_TOP = 4
MAX_GROUPS = 32
MIN_CHAINS = 4
MIN_DRAWS = 8  # per chain, after taking every lag-th draw
RHAT_LIMIT = 1.01
WEAK_MAP = 0.05  # spectral radius of the fitted map below which lag-L irreversibility is out of reach
_DENSE_P = 4096  # dense p x p covariance up to this p; above it, subspace iteration over the draws
_CHUNK_ELEMENTS = 1 << 22  # draws read at once when scanning a (memory-mapped) trace


# ----------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Interval:
    """A signed estimate with its standard error and a two-sided interval at ``level``."""

    value: float
    stderr: float
    low: float
    high: float
    level: float

    @property
    def verdict(self) -> str:
        """``"consistent with equilibrium"`` when the interval covers 0, else ``"out of equilibrium"``."""
        return EQUILIBRIUM if self.low <= 0.0 <= self.high else NONEQUILIBRIUM

    def to_json(self) -> dict:
        return {"value": self.value, "stderr": self.stderr, "low": self.low, "high": self.high,
                "level": self.level, "verdict": self.verdict}


@dataclass(frozen=True, eq=False)
class Diagnosis:
    """Result of :func:`diagnose`; ``str()`` is a plain-text table, :meth:`to_json` a JSON-ready dict.

    Attributes
    ----------
    chains, draws, dim : the trace's shape (draws before taking every ``lag``-th)
    top, lag, groups, level : settings used (``top`` may be lower than asked when the draws have
                              fewer directions with variance)
    pc_variance : (top,)    variances of the principal components (eigenvalues of the pooled covariance)
    explained : float       fraction of the total variance in the top subspace
    ess, rhat : (top,)      ESS and split-R-hat of each principal component
    ess_min, rhat_max : float  smallest ESS and largest R-hat over all ``dim`` parameters
    entropy_production : Interval  per draw (per ``lag`` draws), bias-corrected; level ``level``
    entropy_production_plugin : float  the plug-in value ``Pi`` of the fitted map (biased upwards)
    circulation : Interval  whitened areal velocity ``A_ij`` per draw in :attr:`plane`, Bonferroni level
    plane : (i, j)          principal components (1-based) of the plane with the largest ``|A_ij|``
    areal_velocity : (top, top)  whitened areal velocity per draw, pooled
    map_radius : float      spectral radius of the fitted draw-to-draw map ``F`` (lag-L autocorrelation)
    notes : tuple of str    warnings that qualify the verdicts
    meta : dict             the trace's metadata (sampler, lr, ...), when a Trace was given
    """

    chains: int
    draws: int
    dim: int
    top: int
    lag: int
    groups: int
    level: float
    pc_variance: np.ndarray
    explained: float
    ess: np.ndarray
    rhat: np.ndarray
    ess_min: float
    rhat_max: float
    entropy_production: Interval
    entropy_production_plugin: float
    circulation: Interval
    plane: tuple[int, int]
    areal_velocity: np.ndarray
    map_radius: float
    notes: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict)

    @property
    def equilibrium(self) -> bool:
        """True when both the entropy production and the circulation read zero within their intervals."""
        return self.entropy_production.verdict == EQUILIBRIUM and self.circulation.verdict == EQUILIBRIUM

    def to_json(self) -> dict:
        return {
            "chains": self.chains, "draws": self.draws, "dim": self.dim, "top": self.top, "lag": self.lag,
            "groups": self.groups, "level": self.level,
            "pc_variance": self.pc_variance.tolist(), "explained": self.explained,
            "ess": _floats(self.ess), "rhat": _floats(self.rhat),
            "ess_min": _float(self.ess_min), "rhat_max": _float(self.rhat_max),
            "entropy_production": self.entropy_production.to_json(),
            "entropy_production_plugin": self.entropy_production_plugin,
            "circulation": {**self.circulation.to_json(), "plane": list(self.plane)},
            "areal_velocity": self.areal_velocity.tolist(), "map_radius": self.map_radius,
            "equilibrium": self.equilibrium, "notes": list(self.notes),
            "sampler": {k: self.meta[k] for k in ("sampler", "lr", "temperature", "scheme", "batch_size", "thin")
                        if k in self.meta},
        }

    def __str__(self) -> str:
        m = self.meta
        head = ", ".join(f"{k} {m[k]}" for k in ("sampler", "scheme", "lr", "batch_size", "thin") if k in m)
        lines = [f"equilibrium diagnostic: {self.chains} chains x {self.draws} draws, p = {self.dim}"
                 + (f" ({head})" if head else ""),
                 f"top {self.top} principal components ({100 * self.explained:.1f}% of the variance), lag {self.lag} "
                 f"draw{'s' if self.lag > 1 else ''}, intervals from the spread of the {self.chains} chains "
                 f"(jackknife over {self.groups} groups)",
                 "",
                 f"{'component':>10} {'variance':>12} {'ESS':>9} {'R-hat':>7}"]
        for i in range(self.top):
            lines.append(f"{i + 1:>10} {self.pc_variance[i]:>12.4g} {self.ess[i]:>9.0f} {self.rhat[i]:>7.4f}")
        lines.append(f"{'all p':>10} {'':>12} {self.ess_min:>9.0f} {self.rhat_max:>7.4f}   (min ESS, max R-hat)")
        lines.append("")
        ep, ci = self.entropy_production, self.circulation
        i, j = self.plane
        lines.append(f"{'quantity (per draw)':<32} {'value':>11} {'stderr':>10} {'interval':>25}  verdict")
        lines.append(f"{'entropy production':<32} {ep.value:>11.4g} {ep.stderr:>10.3g} "
                     f"{_span(ep):>25}  {ep.verdict} ({100 * ep.level:g}%)")
        lines.append(f"{f'circulation A_{i}{j} (whitened)':<32} {ci.value:>11.4g} {ci.stderr:>10.3g} "
                     f"{_span(ci):>25}  {ci.verdict} ({100 * ci.level:.4g}%, Bonferroni)")
        lines.append(f"fitted draw-to-draw map: spectral radius {self.map_radius:.3f}; plug-in entropy production "
                     f"{self.entropy_production_plugin:.4g}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _span(iv: Interval) -> str:
    return f"[{iv.low:.4g}, {iv.high:.4g}]"


def _float(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _floats(a) -> list:
    return [_float(x) for x in np.asarray(a).ravel()]


# ------------------------------------------------------------------------------------- the pieces


def map_entropy_production(F, Sigma) -> float:
    r"""Entropy production per step of the stationary linear-Gaussian map ``x' = F x + eta``.

    ``Sigma`` is the map's stationary covariance (``Sigma = F Sigma F^T + Cov[eta]``). The value is
    ``KL(p(x_n, x_{n+1}) || p(x_{n+1}, x_n))`` for the stationary Gaussian joint law, i.e. the mean of
    the exact per-step log ratio of forward to backward path probabilities
    (:func:`sgworld.thermo.trajectory.exact_linear_gaussian_entropy_production`). It vanishes iff
    ``F Sigma = Sigma F^T`` (detailed balance) and is invariant under any invertible linear change of
    coordinates. For a map with random coefficients (minibatch noise), ``F`` is the mean map
    ``E[x_{n+1} | x_n]`` and the value is that of the Gaussian process with the same first two moments.
    """
    F = np.asarray(F, dtype=float)
    Sigma = np.asarray(Sigma, dtype=float)
    p = Sigma.shape[0]
    if F.shape != (p, p) or Sigma.shape != (p, p):
        raise ValueError(f"F and Sigma must both be (p, p) matrices, got {F.shape} and {Sigma.shape}")
    lag = F @ Sigma  # E[x_{n+1} x_n^T]
    forward = np.block([[Sigma, lag.T], [lag, Sigma]])
    backward = np.block([[Sigma, lag], [lag.T, Sigma]])
    zero = np.zeros(2 * p)
    try:
        return max(gaussian_kl(zero, forward, zero, backward), 0.0)
    except np.linalg.LinAlgError:
        raise ValueError("the joint covariance of consecutive draws is singular: the map has no noise in some "
                         "direction (F Sigma F^T = Sigma); entropy production is undefined there") from None


def _quadratic_weights(F, Sigma) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """``W`` with ``Pi ~ a^T W a`` near detailed balance, ``a`` the upper-triangular entries of ``A``.

    ``Sigma_fwd = Sigma_0 + E(A)``, ``Sigma_rev = Sigma_0 - E(A)``, ``E(A) = [[0, A], [-A, 0]]``,
    ``Sigma_0`` the joint covariance with the symmetric part of ``F Sigma``; to second order
    ``KL = (1/4) tr((Sigma_0^{-1} Delta)^2)`` with ``Delta = 2 E(A)``, a quadratic form in ``a``.
    """
    p = Sigma.shape[0]
    lag = F @ Sigma
    sym = 0.5 * (lag + lag.T)
    inv0 = np.linalg.inv(np.block([[Sigma, sym], [sym, Sigma]]))
    planes = [(i, j) for i in range(p) for j in range(i + 1, p)]
    mats = []
    for i, j in planes:
        A = np.zeros((p, p))
        A[i, j], A[j, i] = 1.0, -1.0
        mats.append(inv0 @ np.block([[np.zeros((p, p)), 2 * A], [-2 * A, np.zeros((p, p))]]))
    W = np.array([[0.25 * np.trace(a @ b) for b in mats] for a in mats]).reshape(len(planes), len(planes))
    return 0.5 * (W + W.T), planes


def _chunks(n: int, row_elements: int):
    step = max(1, _CHUNK_ELEMENTS // max(row_elements, 1))
    return [(s, min(s + step, n)) for s in range(0, n, step)]


def principal_subspace(draws, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Top-``k`` principal components of the pooled draws ``(chains, draws, p)``.

    Returns ``(mean (p,), eigenvalues (k,) descending, vectors (p, k), total variance)``. The draws are
    read chain by chain (a memory-mapped trace is never loaded whole). Up to p = 4096 the pooled
    covariance is formed; above, block subspace iteration on it (products with the centred draws only).
    """
    chains, n, p = draws.shape
    rows = _chunks(chains, n * p)
    count = chains * n
    mean = sum(np.asarray(draws[a:b], dtype=float).sum((0, 1)) for a, b in rows) / count
    total = sum(((np.asarray(draws[a:b], dtype=float) - mean) ** 2).sum((0, 1)) for a, b in rows).sum() / count

    def cov_times(X):  # pooled covariance @ X, X (p, r); None: the covariance itself
        out = np.zeros((p, p) if X is None else X.shape)
        for a, b in rows:
            c = (np.asarray(draws[a:b], dtype=float) - mean).reshape(-1, p)
            out += c.T @ c if X is None else c.T @ (c @ X)
        return out / count

    if p <= _DENSE_P:
        cov = cov_times(None)
        lam, vec = np.linalg.eigh(0.5 * (cov + cov.T))
        lam, vec = lam[::-1][:k], vec[:, ::-1][:, :k]
    else:
        rng = np.random.default_rng(0)  # a fixed start: the subspace, not the start, is what is computed
        X = np.linalg.qr(rng.normal(size=(p, k + 8)))[0]
        for _ in range(12):
            X = np.linalg.qr(cov_times(X))[0]
        small = X.T @ cov_times(X)
        lam, u = np.linalg.eigh(0.5 * (small + small.T))
        lam, vec = lam[::-1][:k], (X @ u)[:, ::-1][:, :k]
    return mean, lam, vec, float(total)


def _parameter_diagnostics(draws) -> tuple[float, float]:
    """Smallest ESS and largest R-hat over all parameters, computed a block of parameters at a time."""
    chains, n, p = draws.shape
    ess_min, rhat_max = np.inf, -np.inf
    for a, b in _chunks(p, chains * n):
        x = np.asarray(draws[:, :, a:b], dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            e, r = ess(x), rhat(x)
        if np.isfinite(e).any():
            ess_min = min(ess_min, float(np.nanmin(e)))
        if np.isfinite(r).any():
            rhat_max = max(rhat_max, float(np.nanmax(r)))
    return (ess_min if np.isfinite(ess_min) else float("nan")), (rhat_max if np.isfinite(rhat_max) else float("nan"))


def _leave_one_out(z: np.ndarray, split):
    """Summed regression statistics (and transition counts) of all chains but one group, for each group."""
    per_chain = _chain_statistics(z - z.mean(axis=(0, 1)))
    per_group = np.array([per_chain[g].sum(0) for g in split])
    total, steps = per_group.sum(0), z.shape[1] - 1
    return [(total - per_group[i], (z.shape[0] - len(g)) * steps) for i, g in enumerate(split)]


def _refit_entropy_production(stats: np.ndarray, n: int) -> float:
    """:func:`map_entropy_production` of the map fitted to summed statistics (as ``fit_linear_drift``)."""
    p = int(round((-2 + math.sqrt(4 + 12 * stats.size)) / 6))  # stats.size = 2p + 3p^2
    K, _, D = _fit_from_statistics(stats, n, p)
    return map_entropy_production(np.eye(p) - K, solve_lyapunov(K, D, 1.0, symmetric=False, discrete=True))


def _root_interval(a: np.ndarray, W: np.ndarray, plugin: float, level: float) -> tuple[float, float] | None:
    """Interval for ``Pi ~ mu^T W mu`` from the chains' areal velocities ``a`` (chains, m), valid whatever ``Pi``.

    ``R(x) = |x|_W = sqrt(x^T W x)`` is 1-Lipschitz in the ``W`` norm, so ``|R(abar) - R(mu)| <=
    |abar - mu|_W <= sqrt(lambda_max(W S) / K * T2)`` with ``T2`` the Hotelling quantile
    ``m (K-1) / (K-m) F_{m, K-m}(level)`` of ``K (abar - mu)^T S^{-1} (abar - mu)`` (``S`` the chains'
    covariance of ``a``). Squaring ``[R - q, R + q]`` (clipped at 0) gives an interval for ``Pi`` that
    keeps its level near 0 and between, where the delta method does not; it is rescaled by the ratio
    of the exact plug-in value to its quadratic approximation. None when ``K <= m + 1``.
    """
    chains, m = a.shape
    if chains <= m + 1:
        return None
    abar, S = a.mean(0), np.atleast_2d(np.cov(a, rowvar=False))
    quad = float(abar @ W @ abar)
    lam = float(np.max(np.linalg.eigvals(W @ S).real)) / chains
    t2 = m * (chains - 1) / (chains - m) * float(stats.f.ppf(level, m, chains - m))
    q, r = math.sqrt(max(lam, 0.0) * t2), math.sqrt(max(quad, 0.0))
    scale = min(max(plugin / quad, 0.5), 2.0) if quad > 0 else 1.0
    return scale * max(r - q, 0.0) ** 2, scale * (r + q) ** 2


def _t_interval(value: float, stderr: float, level: float, dof: int) -> Interval:
    half = float(stats.t.ppf(0.5 + 0.5 * level, dof)) * stderr
    return Interval(float(value), float(stderr), float(value - half), float(value + half), float(level))


# ------------------------------------------------------------------------------------ the diagnostic


def diagnose(trace, *, top: int | None = None, lag: int = 1, level: float = 0.95,
             groups: int | None = None) -> Diagnosis:
    r"""Equilibrium diagnostic of a trace: ESS, R-hat, entropy production and circulation per draw.

    See the module docstring for the estimators and their intervals.

    Parameters
    ----------
    trace : Trace or array (chains, draws, p)
        Stationary draws (after burn-in) of at least 4 independent chains.
    top : int, optional
        Number of principal components analysed (default ``min(p, 4)``).
    lag : int
        Draws per transition: ``lag = L`` analyses the map from draw ``n`` to draw ``n + L``.
    level : float
        Coverage of the intervals (the circulation's is Bonferroni-adjusted over the planes).
    groups : int, optional
        Groups of chains for the jackknife of the entropy production (default ``min(chains, 32)``;
        at least 4).

    Returns
    -------
    Diagnosis

    Raises
    ------
    ValueError
        Draws of the wrong shape, non-finite draws, fewer than 4 chains or 8 draws per chain at this
        lag, no variance at all, or settings out of range.
    """
    meta = dict(getattr(trace, "meta", {}) or {})
    draws = getattr(trace, "draws", trace)
    if not hasattr(draws, "shape") or not hasattr(draws, "dtype"):
        draws = np.asarray(draws, dtype=float)
    if len(draws.shape) != 3:
        raise ValueError(f"draws must have shape (chains, draws, p), got {tuple(draws.shape)}")
    chains, n_draws, p = (int(s) for s in draws.shape)
    lag = check_int_range("lag", lag, 1)
    level = check_fraction("level", level)
    if chains < MIN_CHAINS:
        raise ValueError(f"the diagnostic needs at least {MIN_CHAINS} independent chains (its intervals come from "
                         f"the spread between chains), got {chains}; sample more chains")
    if n_draws // lag < MIN_DRAWS:
        raise ValueError(f"the diagnostic needs at least {MIN_DRAWS} draws per chain at lag {lag}, got "
                         f"{n_draws // lag} ({n_draws} draws); record more draws or use a smaller lag")
    groups = check_int_range("groups", min(chains, MAX_GROUPS) if groups is None else groups, MIN_CHAINS, chains)
    top = check_int_range("top", min(p, DEFAULT_TOP) if top is None else top, 1, p)
    bad = sum(int((~np.isfinite(np.asarray(draws[a:b], dtype=float))).sum()) for a, b in _chunks(chains, n_draws * p))
    if bad:
        raise ValueError(f"the trace has {bad} non-finite value(s) (a diverged chain?); drop those chains or "
                         "sample again with a smaller lr")

    notes = []
    mean, lam, vec, total = principal_subspace(draws, top)
    if total <= 0 or lam[0] <= 0:
        raise ValueError("every parameter is constant over all draws and chains: there is nothing to diagnose "
                         "(a sampler that does not move, e.g. SGD at T = 0 on its exact fixed point)")
    keep = int(np.sum(lam > 1e-12 * lam[0]))
    if keep < top:
        notes.append(f"only {keep} direction(s) have variance; analysed top = {keep} instead of {top}")
        top, lam, vec = keep, lam[:keep], vec[:, :keep]
    z = np.concatenate([(np.asarray(draws[a:b], dtype=float) - mean) @ vec for a, b in _chunks(chains, n_draws * p)])
    z = z / np.sqrt(lam)  # whitened principal components, pooled covariance = I
    ess_pc, rhat_pc = ess(z), rhat(z)
    ess_min, rhat_max = _parameter_diagnostics(draws)
    if rhat_max > RHAT_LIMIT:
        notes.append(f"R-hat up to {rhat_max:.3f} > {RHAT_LIMIT}: the chains have not mixed (or not reached the "
                     "stationary state); the entropy production of a relaxing process is not an equilibrium test. "
                     "Discard more burn-in or sample longer")
    z = z[:, ::lag]

    try:
        fit = fit_linear_drift(z, n_boot=0)
    except ValueError as exc:
        raise ValueError(f"the draws do not look stationary: no stationary linear map fits them ({exc}); discard "
                         "more burn-in, or check R-hat") from None
    F, Sigma = np.eye(top) - fit.state.H, fit.state.Sigma
    radius = float(np.max(np.abs(np.linalg.eigvals(F))))
    plugin = map_entropy_production(F, Sigma)

    centre = z.mean(axis=(0, 1))
    per_chain = np.array([areal_velocity(z[c], mean=centre).value for c in range(chains)])  # (chains, k, k)
    pooled_A = per_chain.mean(0)
    if top >= 2:
        W, planes = _quadratic_weights(F, Sigma)
        a = np.array([[Ac[i, j] for i, j in planes] for Ac in per_chain])  # (chains, m)
        WS = W @ np.atleast_2d(np.cov(a, rowvar=False))  # W Cov[a] per chain
        bias = float(np.trace(WS)) / chains
        split = np.array_split(np.arange(chains), groups)
        jack = np.array([_refit_entropy_production(st, n) for st, n in _leave_one_out(z, split)])
        var = (groups - 1) / groups * float(np.sum((jack - jack.mean()) ** 2)) \
            + 2.0 * float(np.trace(WS @ WS)) / (chains * (chains - 1))
        ep = _t_interval(plugin - bias, math.sqrt(var), level, groups - 1)
        root = _root_interval(a, W, plugin, level)
        if root is not None:  # the union of the two intervals
            ep = Interval(ep.value, ep.stderr, min(ep.low, root[0]), max(ep.high, root[1]), level)
        best = int(np.argmax(np.abs(a.mean(0))))
        i, j = planes[best]
        circ_level = 1.0 - (1.0 - level) / len(planes)
        circ = _t_interval(a[:, best].mean(), a[:, best].std(ddof=1) / math.sqrt(chains), circ_level, chains - 1)
        plane = (i + 1, j + 1)
    else:
        notes.append("one direction only: a single coordinate's draws carry no circulation and, as a linear-Gaussian "
                     "map, no entropy production; use top >= 2")
        ep = Interval(0.0, 0.0, 0.0, 0.0, level)
        circ = Interval(0.0, 0.0, 0.0, 0.0, level)
        plane = (1, 1)
    if radius < WEAK_MAP:
        notes.append(f"the fitted draw-to-draw map is weak (spectral radius {radius:.3f}): consecutive draws are "
                     "nearly independent, so little irreversibility is visible at this lag whatever the sampler; "
                     "record draws closer together (smaller thin) to test equilibrium")
    return Diagnosis(chains=chains, draws=n_draws, dim=p, top=top, lag=lag, groups=groups, level=level,
                     pc_variance=lam, explained=float(lam.sum() / total), ess=ess_pc, rhat=rhat_pc,
                     ess_min=ess_min, rhat_max=rhat_max, entropy_production=ep, entropy_production_plugin=plugin,
                     circulation=circ, plane=plane, areal_velocity=pooled_A, map_radius=radius,
                     notes=tuple(notes), meta=meta)
