r"""Streaming entropy production and fluctuation theorems for trajectories too long to hold in memory.

A trajectory of ``10^8`` steps is fed in chunks ``(chains, steps, p)``;
:class:`EntropyProductionStream` keeps only running sums, so memory does not grow with the length
of the run (apart from a few numbers per block, below). Per chunk it

* evaluates the per-step entropy production ``sigma_n`` on the chunk with the last point of the
  previous chunk prepended (the step across the boundary is counted once, with the same midpoint
  rule as :func:`sgworld.thermo.trajectory.entropy_production_steps`, which is what it calls);
* forms non-overlapping window sums ``Delta s_k`` with
  :func:`sgworld.thermo.trajectory.window_sums`, carrying the unfinished window of each chain into
  the next chunk, so the windows are exactly those of the whole path;
* adds ``sigma_n``, ``[expm1(-Delta s), Delta s, 1]`` and a fixed-bin histogram of ``Delta s`` to
  per-chain sums and to per-block sums (a block is ``block_steps`` consecutive steps of all chains;
  a window belongs to the block in which it starts).

The results are those of the in-memory functions on the whole path: the mean entropy production
per step with its standard error (:func:`sgworld.thermo.trajectory.chain_mean`), the integral FT
``<exp(-Delta s)> = 1`` (:func:`sgworld.thermo.fluctuation.integral_fluctuation_theorem`) and the
detailed FT slope (:func:`sgworld.thermo.fluctuation.detailed_fluctuation_theorem`), as the same
result types. Their bootstraps only need sums per resampling unit, so

* ``resample="chains"`` (independent chains are the units) reproduces the in-memory results with
  the same seed, intervals included, up to the order of floating-point summation (~1e-15 relative);
* ``resample="blocks"`` is for one (or a few) very long chains, where the in-memory functions
  would need every window (``resample="windows"``): the units are blocks, i.e. a block bootstrap for
  the FTs and batch means for the rate (standard error from the spread of complete blocks' means).
  Valid when a block is much longer than the correlation time of ``sigma_n`` and of the windows.

Two things differ from the in-memory functions by design: windows never overlap (overlapping
windows would need the last ``k - 1`` steps of every window start and add no independent
information), and the detailed-FT histogram range is fixed before the end of the run: pass
``max_abs`` (per window length), or it is set, with the in-memory default rule (99% quantile of
``-Delta s`` over the negative windows), from the first ``calibration_windows`` windows, which are
held until then.

:func:`simulate_linear_gaussian_chunks` generates a stationary linear-Gaussian path chunk by chunk,
for tests and benchmarks whose exact answers are known
(:func:`sgworld.thermo.trajectory.exact_linear_gaussian_entropy_production`).

Reference: S. Adhikari, A. Kabakçıoğlu, A. Strang, D. Yuret, M. Hinczewski, "Machine learning in
and out of equilibrium", arXiv:2306.03521.
"""

from __future__ import annotations

from typing import Callable, Iterator, Literal, Mapping, Sequence

import numpy as np
import scipy.signal

from .._checks import as_float64, check_choice, check_int_range, check_positive, check_square
from ..theory.stationary import StationaryState, solve_lyapunov
from .fluctuation import (
    DFTResult,
    IFTResult,
    _check_bootstrap,
    dft_from_counts,
    ift_from_unit_sums,
)
from .trajectory import Estimate, as_path, bootstrap_sums, entropy_production_steps, make_rng, window_sums

__all__ = ["EntropyProductionStream", "simulate_linear_gaussian_chunks"]

Resample = Literal["chains", "blocks"]
SigmaFn = Callable[[np.ndarray], np.ndarray]


class _BlockSums:
    """Per-block sums of ``width`` numbers, growing with the run (blocks are visited in order)."""

    def __init__(self, width: int):
        self.data = np.zeros((0, width))

    def add(self, block: np.ndarray, values: np.ndarray) -> None:
        """Add ``values`` (n, width) to the rows ``block`` (n,) (non-decreasing block indices)."""
        first, last = int(block[0]), int(block[-1])
        if last >= self.data.shape[0]:
            grown = np.zeros((max(last + 1, 2 * self.data.shape[0]), self.data.shape[1]))
            grown[: self.data.shape[0]] = self.data
            self.data = grown
        local = block - first
        for j in range(self.data.shape[1]):
            self.data[first:last + 1, j] += np.bincount(local, weights=values[:, j], minlength=last - first + 1)

    def rows(self, n: int) -> np.ndarray:
        return self.data[:n]


class _Windows:
    """Window sums of one length ``k``: carried remainder, IFT sums and the DFT histogram."""

    def __init__(self, k: int, chains: int, bins: int, max_abs: float | None):
        self.k, self.bins = k, bins
        self.tail = np.zeros((chains, 0))     # sigma of the unfinished window of each chain
        self.count = 0                        # windows completed per chain
        self.ift_chain = np.zeros((chains, 3))  # [sum expm1(-x), sum x, windows]
        self.ift_block = _BlockSums(3)
        nb = 2 * bins + 1                     # bins, plus one for windows outside the range
        self.hist_chain = np.zeros((chains, nb))
        self.hist_block = _BlockSums(nb)
        self.abs_sum = np.zeros(nb)
        self.edges = None if max_abs is None else self._edges(max_abs)
        self.failed: str | None = None        # why no histogram range could be set
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []  # windows held until the range is fixed

    def _edges(self, half: float) -> np.ndarray:
        half = check_positive("max_abs", half)
        return np.linspace(-half, half, 2 * self.bins + 1)

    def add(self, sigma: np.ndarray, block_steps: int, calibration: int) -> None:
        s = np.concatenate([self.tail, sigma], axis=1)
        n = s.shape[1] // self.k
        self.tail = s[:, n * self.k:]
        if n == 0:
            return
        x = window_sums(s, self.k)
        block = (self.count + np.arange(n)) * self.k // block_steps
        self.count += n
        self.ift_chain += np.stack([np.expm1(-x).sum(1), x.sum(1), np.full(x.shape[0], float(n))], axis=1)
        self.ift_block.add(block, np.stack([np.expm1(-x).sum(0), x.sum(0), np.full(n, float(x.shape[0]))], axis=1))
        if self.edges is not None:
            self._histogram(x, block)
        elif self.failed is None:
            self.pending.append((x, block))
            if sum(p[0].size for p in self.pending) >= calibration:
                self.calibrate()

    def calibrate(self) -> None:
        """Fix the histogram range from the held windows (the in-memory default rule) and bin them.

        With fewer than 25 negative windows the range cannot be set: the histogram is given up for
        this window length (the integral FT is unaffected) and :meth:`detailed_ft` says why.
        """
        if self.edges is not None or self.failed is not None:
            return
        pending, self.pending = self.pending, []
        x = np.concatenate([p[0] for p in pending], axis=1) if pending else np.zeros((1, 0))
        negative = -x[x < 0]
        if negative.size < 25:
            self.failed = (f"window length {self.k}: only {negative.size} of the first {x.size} windows have "
                           "Delta s < 0, too few to set the histogram range from; pass max_abs for this window "
                           "length, or use shorter windows")
            return
        self.edges = self._edges(float(np.quantile(negative, 0.99)))
        for x, block in pending:
            self._histogram(x, block)

    def _histogram(self, x: np.ndarray, block: np.ndarray) -> None:
        edges, nb = self.edges, 2 * self.bins + 1
        inside = np.abs(x) <= edges[-1]
        idx = np.where(inside, np.clip(np.searchsorted(edges, x, side="right") - 1, 0, nb - 2), nb - 1)
        chains, n = x.shape
        self.hist_chain += np.bincount((idx + nb * np.arange(chains)[:, None]).ravel(),
                                       minlength=chains * nb).reshape(chains, nb)
        local = block - block[0]
        per_block = np.bincount((idx + nb * local[None, :]).ravel(), minlength=(local[-1] + 1) * nb)
        self.hist_block.add(np.arange(block[0], block[-1] + 1), per_block.reshape(-1, nb).astype(float))
        self.abs_sum += np.bincount(idx[inside], weights=np.abs(x[inside]), minlength=nb)


class EntropyProductionStream:
    r"""Running entropy-production and fluctuation-theorem statistics of a trajectory fed in chunks.

    Parameters
    ----------
    sigma_fn : callable
        ``sigma_fn(path) -> (chains, steps - 1)`` per-step entropy production of a path
        ``(chains, steps, p)``, evaluated step by step (each value may depend only on its own two
        points), e.g. ``lambda w: exact_linear_gaussian_entropy_production(F, N, w)``. For a
        stationary state use :meth:`from_state`.
    windows : sequence of int
        Window lengths ``k`` (steps) for the fluctuation theorems.
    block_steps : int
        Steps per block, the unit of ``resample="blocks"`` (batch means / block bootstrap).
    bins : int
        Detailed-FT histogram bins on each side of 0.
    max_abs : float or mapping {k: float}, optional
        Detailed-FT histogram half-range (per window length). Default: from the first
        ``calibration_windows`` windows (see the module docstring).
    calibration_windows : int
        Windows (all chains) held to set a default histogram range.

    Examples
    --------
    >>> stream = EntropyProductionStream.from_state(state, windows=(30,), block_steps=10_000)
    >>> for chunk in chunks:                     # (chains, steps, p) pieces of one long path
    ...     stream.update(chunk)
    >>> stream.rate(resample="blocks"), stream.integral_ft(30, resample="blocks")
    """

    def __init__(self, sigma_fn: SigmaFn, windows: Sequence[int] = (), *, block_steps: int = 10_000,
                 bins: int = 20, max_abs: float | Mapping[int, float] | None = None,
                 calibration_windows: int = 10_000):
        if not callable(sigma_fn):
            raise ValueError(f"sigma_fn must be callable (path -> per-step entropy production), got {sigma_fn!r}")
        self.sigma_fn = sigma_fn
        self.windows = tuple(check_int_range("window length", k, 1) for k in windows)
        if len(set(self.windows)) != len(self.windows):
            raise ValueError(f"window lengths must be distinct, got {self.windows}")
        self.block_steps = check_int_range("block_steps", block_steps, 1)
        self.bins = check_int_range("bins", bins, 1)
        self.calibration_windows = check_int_range("calibration_windows", calibration_windows, 1)
        if max_abs is None or isinstance(max_abs, Mapping):
            self._max_abs = dict(max_abs or {})
            unknown = set(self._max_abs) - set(self.windows)
            if unknown:
                raise ValueError(f"max_abs names window lengths {sorted(unknown)} not in windows {self.windows}")
        else:
            self._max_abs = {k: float(max_abs) for k in self.windows}
        self.chains: int | None = None
        self.dim: int | None = None
        self.steps = 0                        # per-step values seen per chain
        self._last: np.ndarray | None = None  # last point of each chain
        self._sum_chain: np.ndarray | None = None
        self._sum_block = _BlockSums(1)
        self._windows: dict[int, _Windows] = {}

    @classmethod
    def from_state(cls, state: StationaryState, windows: Sequence[int] = (), *, rule: str = "midpoint",
                   rcond: float | None = None, **kwargs) -> "EntropyProductionStream":
        """A stream of :func:`sgworld.thermo.trajectory.entropy_production_steps` for ``state``
        (``rule`` and ``rcond`` as there; other arguments as for the constructor)."""
        return cls(lambda w: entropy_production_steps(w, state, rule=rule, rcond=rcond), windows, **kwargs)

    # -- feeding ------------------------------------------------------------------------------

    def _start(self, chains: int) -> None:
        self.chains = chains
        self._sum_chain = np.zeros(chains)
        self._windows = {k: _Windows(k, chains, self.bins, self._max_abs.get(k)) for k in self.windows}

    def update(self, chunk) -> None:
        """Feed the next points ``(chains, steps, p)`` (or ``(steps, p)``) of the trajectory."""
        w = as_path(chunk, "chunk", min_steps=1)
        if (self.chains is not None and w.shape[0] != self.chains) or (self.dim is not None and w.shape[2] != self.dim):
            raise ValueError(f"chunk has shape {w.shape}, but the stream has {self.chains} chain(s) of "
                             f"p = {self.dim}")
        self.dim = w.shape[2]
        path = w if self._last is None else np.concatenate([self._last[:, None], w], axis=1)
        self._last = w[:, -1].copy()
        if path.shape[1] < 2:
            if self.chains is None:
                self._start(w.shape[0])
            return
        self.update_steps(self.sigma_fn(path))

    def update_steps(self, sigma) -> None:
        """Feed per-step entropy production ``(chains, steps)`` directly (what :meth:`update` computes)."""
        s = as_float64(sigma, "sigma")
        s = s[None] if s.ndim == 1 else s
        if s.ndim != 2 or (self.chains is not None and s.shape[0] != self.chains):
            raise ValueError(f"per-step entropy production must have shape (chains, steps) with chains = "
                             f"{self.chains}, got {s.shape}")
        if self.chains is None:
            self._start(s.shape[0])
        if s.shape[1] == 0:
            return
        block = (self.steps + np.arange(s.shape[1])) // self.block_steps
        self._sum_chain += s.sum(1)
        self._sum_block.add(block, s.sum(0)[:, None])
        self.steps += s.shape[1]
        for acc in self._windows.values():
            acc.add(s, self.block_steps, self.calibration_windows)

    # -- results ------------------------------------------------------------------------------

    def _check_resample(self, resample: str) -> None:
        if self.chains is None or self.steps == 0:
            raise ValueError("no steps yet: feed the trajectory with update() first")
        check_choice("resample", resample, ("chains", "blocks"))
        if resample == "chains" and self.chains < 2:
            raise ValueError("resample='chains' needs >= 2 chains; with one long chain use resample='blocks'")

    def _window(self, k: int) -> _Windows:
        if k not in self._windows:
            raise ValueError(f"window length {k!r} was not accumulated; windows = {self.windows}")
        acc = self._windows[k]
        if acc.count == 0:
            raise ValueError(f"no complete window of {k} steps yet")
        return acc

    def _units(self, chain_sums: np.ndarray, block_sums: _BlockSums, n_blocks: int, resample: str) -> np.ndarray:
        if resample == "chains":
            return chain_sums
        return block_sums.rows(n_blocks)

    def rate(self, resample: Resample = "chains") -> Estimate:
        """Mean entropy production per step with its standard error.

        ``"chains"``: spread of the per-chain means, as :func:`sgworld.thermo.trajectory.chain_mean`.
        ``"blocks"``: batch means, the spread of the means of the complete blocks (all chains pooled);
        the value is the mean over all steps either way.
        """
        self._check_resample(resample)
        per_chain = self._sum_chain / self.steps
        if resample == "chains":
            return Estimate(value=per_chain.mean(), stderr=per_chain.std(ddof=1) / np.sqrt(self.chains),
                            n_chains=self.chains)
        complete = self.steps // self.block_steps
        means = self._sum_block.rows(complete)[:, 0] / (self.block_steps * self.chains)
        stderr = means.std(ddof=1) / np.sqrt(complete) if complete >= 2 else np.nan
        return Estimate(value=per_chain.mean(), stderr=np.asarray(stderr), n_chains=self.chains)

    def integral_ft(self, k: int, *, n_boot: int = 1000, level: float = 0.95, seed=0,
                    resample: Resample = "chains") -> IFTResult:
        r"""Integral FT for windows of ``k`` steps (as
        :func:`sgworld.thermo.fluctuation.integral_fluctuation_theorem`).

        ``resample="chains"`` gives that function's result on ``window_sums(sigma, k)`` of the whole
        path (same seed, same intervals); ``"blocks"`` bootstraps blocks instead of chains.
        """
        n_boot, level = _check_bootstrap(n_boot, level)
        self._check_resample(resample)
        acc = self._window(k)
        per_unit = self._units(acc.ift_chain, acc.ift_block, acc.ift_block.data.shape[0], resample)
        per_unit = per_unit[per_unit[:, 2] > 0]
        return ift_from_unit_sums(per_unit, n_windows=acc.count * self.chains, resample=resample, n_boot=n_boot,
                                  level=level, seed=seed)

    def detailed_ft(self, k: int, *, min_count: int = 25, n_boot: int = 500, level: float = 0.95, seed=0,
                    resample: Resample = "chains") -> DFTResult:
        r"""Detailed FT slope for windows of ``k`` steps (as
        :func:`sgworld.thermo.fluctuation.detailed_fluctuation_theorem`).

        With ``resample="chains"`` and the same ``bins``, ``max_abs``, ``min_count`` and seed, the result
        equals that function's on ``window_sums(sigma, k)`` of the whole path; ``"blocks"``
        bootstraps blocks instead of chains.
        """
        n_boot, level = _check_bootstrap(n_boot, level)
        min_count = check_int_range("min_count", min_count, 1)
        self._check_resample(resample)
        acc = self._window(k)
        acc.calibrate()
        if acc.failed is not None:
            raise ValueError(acc.failed)
        bins, edges = self.bins, acc.edges
        per_unit = self._units(acc.hist_chain, acc.hist_block, acc.hist_block.data.shape[0], resample)
        per_unit = per_unit[per_unit.sum(1) > 0]
        total = per_unit.sum(0)
        boot = bootstrap_sums(per_unit, n_boot, make_rng(seed)) if n_boot else None
        counts = total[:-1]
        pair_counts = counts[bins:] + counts[bins - 1::-1]
        abs_sum = acc.abs_sum[:-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            centers = np.where(pair_counts > 0, (abs_sum[bins:] + abs_sum[bins - 1::-1]) / pair_counts,
                               0.5 * (edges[bins:-1] + edges[bins + 1:]))
        return dft_from_counts(counts.copy(), centers, edges.copy(), boot, bins=bins, min_count=min_count, level=level,
                               n_windows=acc.count * self.chains, n_units=per_unit.shape[0], resample=resample,
                               n_boot=n_boot, advice="feed more steps, use shorter windows, fewer bins or a "
                                                     "smaller max_abs")


# --------------------------------------------------------------------------- simulation


def simulate_linear_gaussian_chunks(F, noise_cov, steps: int, *, chains: int = 1, chunk_steps: int = 1 << 16,
                                    seed=0, mean=None) -> Iterator[np.ndarray]:
    r"""A stationary path of ``x_{n+1} - mu = F (x_n - mu) + xi_n``, ``xi_n ~ N(0, noise_cov)``, in chunks.

    ``x_0`` is drawn from the exact stationary law ``N(mu, C)``, ``C = F C F^T + noise_cov``
    (:func:`sgworld.theory.stationary.solve_lyapunov`, discrete). The recursion runs in the
    eigenbasis of ``F`` (``F = V diag(lambda) V^{-1}``), where each coordinate is a scalar AR(1)
    filtered along time by ``scipy.signal.lfilter``: a single chain of ``10^8`` steps costs a few
    seconds, with no Python loop over steps. Noise is drawn step-major (``(steps, chains, p)``), so
    the path does not depend on ``chunk_steps`` (up to round-off, ~1e-15).

    Parameters
    ----------
    F : (p, p) array          transition matrix, spectral radius < 1, diagonalisable
    noise_cov : (p, p) array  positive definite noise covariance ``N`` (``N = 2 D`` per step)
    steps : int               points per chain in total (``x_0`` included)
    chains : int
    chunk_steps : int         points per yielded chunk (the last one may be shorter)
    seed : int or numpy Generator
    mean : (p,) array, optional  ``mu`` (default 0)

    Yields
    ------
    (chains, m, p) float64 arrays; concatenated along axis 1 they are the whole path.
    """
    F = check_square(F, "F")
    noise_cov = check_square(noise_cov, "noise_cov", F.shape[0], like="F")
    p = F.shape[0]
    steps = check_int_range("steps", steps, 1)
    chains = check_int_range("chains", chains, 1)
    chunk_steps = check_int_range("chunk_steps", chunk_steps, 1)
    mu = np.zeros(p) if mean is None else as_float64(mean, "mean")
    C = solve_lyapunov(np.eye(p) - F, 0.5 * noise_cov, 1.0, symmetric=False, discrete=True)
    lam, V = np.linalg.eig(F)
    if np.linalg.cond(V) > 1e8:
        raise ValueError("F is (nearly) defective: its eigenvector matrix has condition number "
                         f"{np.linalg.cond(V):.3g}; the eigenbasis recursion needs a diagonalisable F")
    V = V.astype(complex)
    V_inv = np.linalg.inv(V)
    noise_map = (V_inv @ np.linalg.cholesky(0.5 * (noise_cov + noise_cov.T))).T  # N(0, I) -> V^{-1} xi
    rng = make_rng(seed)

    x0 = rng.standard_normal((chains, p)) @ np.linalg.cholesky(C).T
    z = x0 @ V_inv.T                                # eigen-coordinates of x_0 - mu, (chains, p)
    done = 0
    while done < steps:
        m = min(chunk_steps, steps - done) - (done == 0)  # new points (the first chunk starts with x_0)
        u = rng.standard_normal((m, chains, p)) @ noise_map
        path = np.empty((m, chains, p), dtype=complex)
        if m:
            for j in range(p):  # z_{n+1} = lambda z_n + u_n; zi carries lambda * z of the previous point
                path[:, :, j] = scipy.signal.lfilter([1.0], [1.0, -lam[j]], u[:, :, j], axis=0,
                                                     zi=(lam[j] * z[:, j])[None, :])[0]
            z = path[-1]
        x = np.real(path @ V.T).transpose(1, 0, 2) + mu
        if done == 0:
            x = np.concatenate([(x0 + mu)[:, None], x], axis=1)
        done += x.shape[1]
        yield x
