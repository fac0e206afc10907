r"""Top-k Fokker–Planck analysis for networks too large for dense ``p x p`` matrices.

The dense path (:func:`sgworld.theory.wr.wr_theory`) forms the Hessian ``H``, the per-sample
gradient covariance ``S`` and the stationary covariance as ``p x p`` arrays: ``O(p^2)`` memory and
``O(p^3)`` time. Here only matrix-vector products are formed, and the analysis is restricted to a
k-dimensional subspace:

* Hessian-vector products ``H v = (1/N) sum_i grad^2 U_i(w) v`` by forward-over-reverse
  differentiation (``torch.func.jvp`` of ``torch.func.grad``), over data chunks;
* covariance-vector products ``S v = (1/N) J^T (J v - mean_i (J v)_i)``, with ``J`` the ``(N, p)``
  Jacobian whose rows are the per-sample gradients ``grad U_i(w)``: exactly centred, like
  :func:`sgworld.theory.minimum.gradient_covariance`, and equal to
  ``(1/N) sum_i g_i g_i^T v - g g^T v`` (``g = grad L``) without its cancellation. ``J`` is held in
  memory when it fits in ``cache_bytes``; otherwise ``J v`` (``jvp``) and ``J^T u`` (``vjp``) are
  recomputed chunk by chunk, so memory stays ``O(chunk * p)``;
* the leading k eigenpairs of either operator by Lanczos (``scipy.sparse.linalg.eigsh``).

The subspace. ``V`` (p, k) holds the top-k Hessian eigenvectors at the minimum ``w*``, ``z = V^T w``
the coordinates in their span. Because ``V^T H = Lambda V^T``, the linearised SGD update
``w_{n+1} - w* = (I - lr H)(w_n - w*) + xi_n``, ``Cov[xi_n] = 2 D``, projects to a *closed* recursion

    z_{n+1} - z* = (I - lr Lambda)(z_n - z*) + V^T xi_n,       Cov[V^T xi_n] = 2 V^T D V,

an Ornstein–Uhlenbeck process of its own with ``H_k = Lambda = diag(h_1..h_k)`` and
``D_k = V^T D V = (lr^2/2) f Cov_i[V^T grad U_i]``. Projecting the Lyapunov equation
``H Sigma + Sigma H = (2/lr) D`` with ``V`` gives ``Lambda Sigma_k + Sigma_k Lambda = (2/lr) D_k`` for
``Sigma_k = V^T Sigma V``, so the k x k solution (:func:`sgworld.theory.stationary.solve_lyapunov`,
the one Lyapunov solver) is exactly the top-k block of the full stationary covariance, and
``Q_k = (lr/2)(Lambda Sigma_k - Sigma_k Lambda) = V^T Q V`` that of the circulation. The
entropy-production rate ``-tr(Q_k D_k^{-1} Q_k Sigma_k^{-1})`` is that of the projected process
``z`` (the marginal of the full one): a coarse-graining, so it is at most the full rate, does not
decrease with k, and equals it at ``k = p``; it equals the full rate whenever the subspace is also
invariant under ``D`` (then the process splits into independent parts). Any H-invariant subspace
gives such a closed projected process; the top-k one is what Lanczos delivers cheaply, and it holds
the stiffest modes (largest ``lr h``). It need not hold most of the entropy production: the full
rate weighs the currents by ``D^{-1}`` and ``Sigma^{-1}``, so when the gradient noise spans many
decades it is dominated by soft, low-noise directions (on the MLPs of ``benchmarks/ANALYSIS.md``
k = 20-200 carried 0.06-4% of it). Trajectories project with ``z = w @ V``
(:meth:`TopKTheory.project`), so :func:`sgworld.thermo.trajectory.entropy_production_steps`
applies to them directly.

Reference: S. Adhikari, A. Kabakçıoğlu, A. Strang, D. Yuret, M. Hinczewski, "Machine learning in
and out of equilibrium", arXiv:2306.03521.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch.func import grad, jvp, vjp, vmap

from .._checks import (
    as_float64, check_at_minimum, check_choice, check_gradient_noise, check_int_range, check_nonnegative, check_point,
    check_positive,
)
from ..batching import STEPWISE_SCHEMES, noise_factor
from ..problems import Problem
from .minimum import _grad, _numpy
from .stationary import StationaryState, stationary_state
from .wr import diffusion

__all__ = [
    "hessian_operator",
    "covariance_operator",
    "subspace_gradient_covariance",
    "top_eigenpairs",
    "dense_matrix",
    "TopKTheory",
    "topk_theory",
]

_CHUNK = 8192  # (sample, vector) pairs differentiated at once: bounds the autodiff working set
_CACHE_BYTES = 1 << 30  # per-sample gradients (N, p) kept in memory up to this size


# --------------------------------------------------------------------------- operators


def _chunks(problem: Problem, size: int):
    """The data in consecutive chunks of ``size`` samples."""
    for start in range(0, problem.n, size):
        yield tuple(d[start:start + size] for d in problem.data)


def _as_operator(dim: int, apply: Callable[[torch.Tensor], torch.Tensor], dtype: torch.dtype) -> LinearOperator:
    """A float64 scipy LinearOperator from ``apply``: (m, p) tensor of vectors -> (m, p) tensor."""

    def matmat(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64).reshape(dim, -1)
        with torch.no_grad():
            out = apply(torch.as_tensor(X.T, dtype=dtype).contiguous())
        return _numpy(out).T

    return LinearOperator((dim, dim), matvec=lambda x: matmat(x).ravel(), matmat=matmat, dtype=np.float64)


def hessian_operator(problem: Problem, w, *, chunk_size: int = _CHUNK) -> LinearOperator:
    r"""``v -> H v``, the Hessian of the full loss ``L = (1/N) sum_i U_i`` at ``w``, without forming ``H``.

    Each product is ``jvp(grad L_c)`` (forward-over-reverse) summed over data chunks ``c``; a block of
    m vectors is one ``vmap`` over them, with ``chunk_size // m`` samples per chunk so the working
    set stays ``O(chunk_size)`` sample-vector pairs. Cost per product: a few gradient evaluations.

    Returns
    -------
    scipy.sparse.linalg.LinearOperator of shape (p, p), float64 (``matvec`` and ``matmat``).
    """
    w = check_point(problem, w)
    chunk_size = check_int_range("chunk_size", chunk_size, 1)

    def apply(T: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(T)
        for batch in _chunks(problem, max(1, chunk_size // T.shape[0])):
            g = grad(lambda w_: problem.potential_fn(w_, *batch).sum())
            out += vmap(lambda v: jvp(g, (w,), (v,))[1])(T)
        return out / problem.n

    return _as_operator(problem.dim, apply, problem.dtype)


class _SampleJacobian:
    """``J`` (N, p), rows ``grad U_i(w)``: products ``J X`` and ``J^T U``, cached or recomputed per chunk."""

    def __init__(self, problem: Problem, w: torch.Tensor, chunk_size: int, cache_bytes: float):
        self.problem, self.w, self.chunk_size = problem, w, chunk_size
        itemsize = torch.finfo(problem.dtype).bits // 8
        with torch.no_grad():
            cached = problem.n * problem.dim * itemsize <= cache_bytes
            self.G = problem.per_sample_grads(w, chunk_size) if cached else None

    def _potentials(self, batch):
        return lambda w_: self.problem.potential_fn(w_, *batch)

    def project(self, X: torch.Tensor) -> torch.Tensor:
        """``J X^T``: (m, p) vectors -> (N, m) directional derivatives ``grad U_i . x``."""
        if self.G is not None:
            return self.G @ X.T
        rows = max(1, self.chunk_size // X.shape[0])
        return torch.cat([vmap(lambda x: jvp(self._potentials(b), (self.w,), (x,))[1])(X).T
                          for b in _chunks(self.problem, rows)])

    def adjoint(self, U: torch.Tensor) -> torch.Tensor:
        """``(J^T U)^T``: (N, m) weights -> (m, p) weighted sums of per-sample gradients."""
        if self.G is not None:
            return U.T @ self.G
        rows = max(1, self.chunk_size // U.shape[1])
        out = torch.zeros(U.shape[1], self.problem.dim, dtype=U.dtype)
        for start, batch in zip(range(0, self.problem.n, rows), _chunks(self.problem, rows)):
            _, pull = vjp(self._potentials(batch), self.w)
            out += vmap(lambda u: pull(u)[0])(U[start:start + rows].T.contiguous())
        return out


def covariance_operator(problem: Problem, w, *, chunk_size: int = _CHUNK,
                        cache_bytes: float = _CACHE_BYTES) -> LinearOperator:
    r"""``v -> S v``, the per-sample gradient covariance at ``w``, without forming ``S``.

    ``S v = (1/N) J^T (u - mean(u))`` with ``u = J v`` (``J``: per-sample gradients as rows), the
    exactly centred ``S`` of :func:`sgworld.theory.minimum.gradient_covariance`.

    Parameters
    ----------
    problem, w
    chunk_size : int
        Sample-vector pairs differentiated at once (memory bound of the autodiff passes).
    cache_bytes : float
        Keep the ``(N, p)`` per-sample gradients in memory when they fit (each product is then two
        matrix products); otherwise recompute them per product as ``jvp`` then ``vjp`` in chunks.
    """
    w = check_point(problem, w)
    J = _SampleJacobian(problem, w, check_int_range("chunk_size", chunk_size, 1),
                        check_nonnegative("cache_bytes", cache_bytes))

    def apply(T: torch.Tensor) -> torch.Tensor:
        u = J.project(T)
        return J.adjoint(u - u.mean(0)) / problem.n

    return _as_operator(problem.dim, apply, problem.dtype)


def subspace_gradient_covariance(problem: Problem, w, basis, *, chunk_size: int = _CHUNK,
                                 cache_bytes: float = _CACHE_BYTES) -> np.ndarray:
    r"""``V^T S V = Cov_i[V^T grad U_i(w)]`` (k, k) for an orthonormal ``basis`` ``V`` (p, k).

    Only forward products ``J V`` are needed (k directional derivatives per sample), exactly centred.
    """
    w = check_point(problem, w)
    V = as_float64(basis, "basis")
    if V.ndim != 2 or V.shape[0] != problem.dim:
        raise ValueError(f"basis must have shape ({problem.dim}, k), got {V.shape}")
    J = _SampleJacobian(problem, w, check_int_range("chunk_size", chunk_size, 1),
                        check_nonnegative("cache_bytes", cache_bytes))
    with torch.no_grad():
        u = J.project(torch.as_tensor(V.T, dtype=problem.dtype).contiguous())
        u = u - u.mean(0)
        S = _numpy(u.T @ u / problem.n)
    return 0.5 * (S + S.T)


def dense_matrix(operator: LinearOperator, *, block: int = 16) -> np.ndarray:
    """The matrix of a symmetric operator, applied to the identity ``block`` columns at a time.

    For :func:`hessian_operator` this is the dense Hessian in ``p / block`` vmapped batches of
    Hessian-vector products, with memory bounded by the operator's ``chunk_size`` (in contrast to
    ``torch.func.hessian``, which carries all p tangents through each data chunk at once). The
    time is that of p products, compute-bound (~10 N p^2 flops for an MLP); small blocks with
    correspondingly larger data chunks were the fastest in a sweep (p = 5,000, N = 6,000).
    """
    p = operator.shape[0]
    block = check_int_range("block", block, 1)
    M = np.empty((p, p))
    for start in range(0, p, block):
        stop = min(start + block, p)
        M[:, start:stop] = operator.matmat(np.eye(p, stop - start, -start))
    return 0.5 * (M + M.T)


def top_eigenpairs(operator: LinearOperator, k: int, *, tol: float = 0.0, seed: int = 0,
                   maxiter: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""Leading k eigenpairs (largest algebraic eigenvalues) of a symmetric operator.

    Implicitly restarted Lanczos (ARPACK, ``scipy.sparse.linalg.eigsh``) from a seeded start
    vector; ``tol = 0`` converges to machine precision. When ``2k + 1 >= p`` Lanczos would need
    the whole space anyway, so the matrix is formed with :func:`dense_matrix` and diagonalised.

    Returns
    -------
    eigenvalues : (k,) descending
    eigenvectors : (p, k) orthonormal columns, each signed so that its largest entry is positive
    """
    p = operator.shape[0]
    k = check_int_range("k", k, 1, p)
    if 2 * k + 1 >= p:
        lam, V = np.linalg.eigh(dense_matrix(operator))
    else:
        v0 = np.random.default_rng(seed).standard_normal(p)
        lam, V = eigsh(operator, k=k, which="LA", tol=check_nonnegative("tol", tol), v0=v0, maxiter=maxiter)
    order = np.argsort(lam)[::-1][:k]
    lam, V = lam[order], V[:, order]
    signs = np.sign(V[np.abs(V).argmax(0), np.arange(k)])
    return lam, V * np.where(signs == 0, 1.0, signs)


# --------------------------------------------------------------------------- restricted theory


@dataclass(frozen=True, eq=False)
class TopKTheory:
    """Stationary state of step-wise SGD restricted to the top-k Hessian eigenspace at a minimum.

    All matrices are in the coordinates ``z = V^T w`` of the subspace (see the module docstring).

    Attributes
    ----------
    basis : (p, k)                ``V``, the top-k Hessian eigenvectors (orthonormal)
    hessian_eigenvalues : (k,)    their eigenvalues, descending (``state.H = diag`` of them)
    state : StationaryState       ``mean = V^T w*``, ``H = Lambda``, ``D = V^T D V``,
                                  ``Sigma = V^T Sigma V``, ``Q = V^T Q V`` (per step); from them
                                  ``state.ep_rate``, the entropy production per step of the projected
                                  process (a lower bound on the full rate; equal at k = p),
                                  ``state.commutator_ratio`` (``|[Lambda, D_k]|_F / |Lambda D_k|_F``,
                                  0 iff the projected process is in equilibrium) and ``state.lr_hmax``
                                  (exact: h_max is the first eigenvalue)
    S : (k, k)                    ``V^T S V``, covariance of the projected per-sample gradients
    noise_factor : float          f of the scheme
    """

    basis: np.ndarray
    hessian_eigenvalues: np.ndarray
    state: StationaryState
    S: np.ndarray
    noise_factor: float

    @property
    def k(self) -> int:
        return self.basis.shape[1]

    def project(self, w) -> np.ndarray:
        """Subspace coordinates ``z = V^T w`` of points or a trajectory ``(..., p) -> (..., k)``."""
        w = as_float64(w, "w")
        if w.shape[-1:] != self.basis.shape[:1]:
            raise ValueError(f"w must have shape (..., {self.basis.shape[0]}), got {w.shape}")
        return w @ self.basis

    def lift(self, M) -> np.ndarray:
        """A subspace matrix ``(k, k)`` in parameter space, ``V M V^T`` (p, p): e.g. ``lift(state.Sigma)``."""
        return self.basis @ as_float64(M, "M") @ self.basis.T


def topk_theory(problem: Problem, w_star, lr: float, batch_size: int, k: int, scheme: str = "wr", *,
                chunk_size: int = _CHUNK, cache_bytes: float = _CACHE_BYTES, tol: float = 0.0,
                seed: int = 0) -> TopKTheory:
    r"""Fokker–Planck stationary state of step-wise SGD at ``w_star`` in the top-k Hessian eigenspace.

    ``V``, ``Lambda`` from :func:`top_eigenpairs` of :func:`hessian_operator`;
    ``D_k = (lr^2/2) f V^T S V`` (:func:`subspace_gradient_covariance`,
    :func:`sgworld.theory.wr.diffusion`); then ``Lambda Sigma_k + Sigma_k Lambda = (2/lr) D_k``,
    ``Q_k`` and the entropy-production rate by :func:`sgworld.theory.stationary.stationary_state`.
    Memory ``O(chunk_size * p + k p)`` (plus ``N p`` when the per-sample gradients fit in
    ``cache_bytes``); time a few hundred Hessian-vector products and ``k`` forward products.

    Parameters
    ----------
    problem, w_star, lr, batch_size, scheme
        As in :func:`sgworld.theory.wr.wr_theory`.
    k : int
        Subspace dimension (``1 <= k <= p``; ``k = p`` reproduces the dense theory).
    chunk_size, cache_bytes
        Memory controls, see :func:`covariance_operator`.
    tol, seed
        Lanczos tolerance (0: machine precision) and start-vector seed, see :func:`top_eigenpairs`.

    Raises
    ------
    ValueError
        A top-k Hessian eigenvalue is not positive (not a minimum; only the top k are checked, the
        rest of the spectrum is never formed), ``w_star`` not at the minimum within the subspace's
        stationary spread, or ``D_k`` singular.
    """
    w = check_point(problem, w_star, "w_star")
    lr = check_positive("lr", lr)
    batch_size = check_int_range("batch_size", batch_size, 1, problem.n)
    check_choice("scheme", scheme, STEPWISE_SCHEMES)
    k = check_int_range("k", k, 1, problem.dim)
    lam, V = top_eigenpairs(hessian_operator(problem, w, chunk_size=chunk_size), k, tol=tol, seed=seed)
    if lam[-1] <= 0:
        raise ValueError(f"w_star is not a minimum of L: the Hessian has eigenvalue {lam[-1]:.6g} <= 0 among its "
                         f"top {k} (largest {lam[0]:.6g}); find a minimum first, or lower k")
    S_k = subspace_gradient_covariance(problem, w, V, chunk_size=chunk_size, cache_bytes=cache_bytes)
    factor = noise_factor(scheme, problem.n, batch_size)
    check_gradient_noise(S_k, factor, problem.n, batch_size, scheme)
    D_k = diffusion(S_k, lr, batch_size, scheme, n=problem.n)
    H_k = np.diag(lam)
    state = stationary_state(H_k, D_k, lr, _numpy(w) @ V)
    with torch.no_grad():
        g_k = _numpy(_grad(problem, w)) @ V
    check_at_minimum(H_k, g_k, state.Sigma, "w_star")
    state.ep_rate  # evaluated (and cached) here: a D_k too singular for D_k^{-1} is reported by topk_theory itself
    return TopKTheory(basis=V, hessian_eigenvalues=lam, state=state, S=S_k, noise_factor=factor)
