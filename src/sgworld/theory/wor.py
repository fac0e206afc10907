"""Stationary state of WOR SGD (random reshuffling, ``wor``) near a minimum, from a Problem.

Without replacement (``M = N/b`` steps per epoch) the batch-gradient errors of an epoch sum to zero
at fixed w, so one epoch maps ``w -> w + Delta(w)`` with::

    Delta = -lr sum_t g_t + lr^2 sum_{s<t} H_t g_s + O(lr^3)

(``g_t``, ``H_t``: gradient and Hessian of the t-th batch loss at the epoch's start). Its mean
follows the effective loss ``L_eff = L + (lr/4)[|grad L|^2 + f tr S]`` (whose minimiser, not w*,
is the stationary mean); its fluctuation is O(lr^2), so the per-epoch diffusion
``D_WOR = Cov[Delta]/2`` is O(lr^4) and ``lr M (H Sigma + Sigma H) = 2 D_WOR`` makes the WOR
stationary covariance O(lr^3). The expansion is valid while ``lr M h_max << 1``
(docs/concepts.md, "SGD near a minimum").

The Lyapunov solver lives in :mod:`sgworld.theory.stationary`, Newton's method and ``S`` in
:mod:`sgworld.theory.minimum`; this module supplies ``w_eff`` and ``D_WOR`` and bundles the state.

Reference: S. Adhikari, A. Kabakçıoğlu, A. Strang, D. Yuret, M. Hinczewski, "Machine learning in
and out of equilibrium", arXiv:2306.03521.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy.linalg import cho_factor, cho_solve
from scipy.sparse.linalg import LinearOperator, cg
from torch.func import grad as func_grad
from torch.func import jacrev
from torch.func import jvp
from torch.func import vjp

from .._checks import as_float64, check_gradient_noise, check_int_range, check_minimum, check_point, check_positive
from ..batching import IndexStream, noise_factor
from ..errors import StepSizeError, TheoryRangeWarning
from ..problems import Problem
from ..samplers import sgd
from .minimum import NewtonResult, _dense_direction, _grad, _loss, _newton, _numpy, _sample_grads, gradient_covariance
from .stationary import StationaryState, solve_lyapunov, stationary_state

__all__ = [
    "effective_loss",
    "EffectiveMinimum",
    "minimize_effective_loss",
    "EpochDiffusion",
    "wor_epoch_diffusion",
    "wor_diffusion_leading",
    "sigma_wor",
    "wor_sigma_standard_error",
    "wor_eigen_variance_standard_error",
    "wor_validity",
    "WOR_VALIDITY",
    "WORTheory",
    "wor_theory",
]

_EPOCH_CHUNK = 8192      # independent epochs simulated at once (bounds memory: chunk * M * b indices)
_HESSIAN_COLUMNS = 8      # Hessian columns of L_eff per reverse pass (bounds memory: chunk * N * p)
# Above this many parameters L_eff is minimised with Hessian-vector products, not its dense Hessian.
DENSE_EFFECTIVE_HESSIAN_MAX_P = 64
# wor_sigma_standard_error: one epoch per batch mean while epochs * p^3 stays within this many
# multiply-adds (seconds); above it, batch means of epochs, at least MIN_SE_GROUPS of them.
SE_FLOP_BUDGET = 2e10
MIN_SE_GROUPS = 64


def _eigh(M: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    M = np.asarray(M.detach().cpu().double().numpy() if isinstance(M, torch.Tensor) else M, dtype=np.float64)
    return np.linalg.eigh(0.5 * (M + M.T))


def _check_step_size(lr: float, h_max: float, method: str) -> None:
    """StepSizeError when ``lr h_max >= 2``: the iteration has no stationary state to describe."""
    if lr * h_max >= 2:
        raise StepSizeError(lr, h_max, f"{method} has no stationary state around w_star (its chains diverge)")


# --------------------------------------------------------------------------- effective loss (WOR mean)


def effective_loss(problem: Problem, lr: float, batch_size: int,
                   chunk_size: int = 1024) -> Callable[[torch.Tensor], torch.Tensor]:
    r"""The WOR effective loss ``L_eff(w) = L + (lr/4) [ |grad L|^2 + f tr S(w) ]`` as a torch function.

    ``f = (N-b)/(b(N-1))``, ``tr S = (1/N) sum_i |grad U_i|^2 - |grad L|^2``. One WOR epoch moves the
    mean by ``-lr M grad L_eff + O(lr^3)`` (the batch errors of an epoch sum to zero; the ``f tr S``
    term is the average of ``lr^2 sum_{s<t} (H_t - H)(g_s - g)`` over permutations, the ``|grad L|^2``
    term the discrete-step correction of gradient descent), so its minimiser is the stationary mean
    (arXiv 2306.03521; docs/concepts.md, "SGD near a minimum"). Assumes every sample is used each epoch
    (N divisible by b).

    The returned callable maps ``w`` (p,) to a 0-d tensor and is differentiable with ``torch.func``
    (``grad``, ``hessian``); it costs one pass of per-sample gradients over the data (chunked).
    """
    lr = check_positive("lr", lr)
    batch_size = check_int_range("batch_size", batch_size, 1, problem.n)
    f = noise_factor("wr", problem.n, batch_size)

    def correction(w: torch.Tensor) -> torch.Tensor:
        g = _grad(problem, w)
        sq = sum((_sample_grads(problem, w, s, min(s + chunk_size, problem.n)) ** 2).sum()
                 for s in range(0, problem.n, chunk_size)) / problem.n
        gg = (g * g).sum()
        return 0.25 * lr * (gg + f * (sq - gg))

    def l_eff(w: torch.Tensor) -> torch.Tensor:
        return _loss(problem, w) + correction(w)

    return l_eff


@dataclass(frozen=True)
class EffectiveMinimum:
    """Minimiser of ``L_eff`` (the predicted WOR stationary mean), two ways.

    Attributes
    ----------
    w_eff : (p,)          Newton's method on ``L_eff`` started at w* (exact minimiser of L_eff)
    w_first_order : (p,)  ``w* - H^{-1} grad L_eff(w*)``: one Newton step with L's Hessian; differs
                          from ``w_eff`` by O(lr^2)
    shift : (p,)          ``w_eff - w*`` (O(lr))
    difference : float    ``max |w_eff - w_first_order|`` (the O(lr^2) size of the expansion's error)
    newton : NewtonResult
    """

    w_eff: np.ndarray
    w_first_order: np.ndarray
    shift: np.ndarray
    difference: float
    newton: NewtonResult


def minimize_effective_loss(problem: Problem, lr: float, batch_size: int, w_star, *, tol: float = 1e-13,
                            max_iter: int = 50) -> EffectiveMinimum:
    """Minimiser of :func:`effective_loss` starting from the minimum ``w*`` of L, with the first-order formula.

    Both are returned. They differ at O(lr^2), the order to which ``L_eff`` itself describes the
    stationary mean, so either is the theory's prediction (``w_eff`` is the one :func:`wor_theory`
    uses). Against the exact WOR mean of a quadratic problem both err by about 0.1 lr M h_max
    relative to the shift ``w_eff - w*`` (tests/theory/test_wor.py).

    Newton's method on ``L_eff``: up to ``DENSE_EFFECTIVE_HESSIAN_MAX_P`` parameters with its dense
    Hessian (p reverse passes per step), above that with conjugate gradients on Hessian-vector
    products, preconditioned by L's Hessian at w* (``L_eff = L + O(lr)``, so a few products per step).
    """
    w_star_t = check_point(problem, w_star, "w_star")
    l_eff = effective_loss(problem, lr, batch_size)
    grad_eff = func_grad(l_eff)
    H = problem.hessian(w_star_t)
    check_minimum(_numpy(H), "w_star")
    first = w_star_t - torch.linalg.solve(H, grad_eff(w_star_t).detach())
    if problem.dim <= DENSE_EFFECTIVE_HESSIAN_MAX_P:
        # The Hessian as the Jacobian of the gradient, a few columns at a time: memory O(chunk * N * p), not
        # the O(p * N * p) of forward-over-reverse with all p tangents at once.
        hess_eff = jacrev(grad_eff, chunk_size=_HESSIAN_COLUMNS)
        direction = _dense_direction(lambda x: hess_eff(x).detach())
    else:
        direction = _preconditioned_cg_direction(grad_eff, H)
    result = _newton(lambda x: l_eff(x).detach(), lambda x: grad_eff(x).detach(), direction,
                     w_star_t, tol=tol, max_iter=max_iter, what="minimize_effective_loss")
    first = _numpy(first)
    return EffectiveMinimum(w_eff=result.w, w_first_order=first, shift=result.w - _numpy(w_star_t),
                            difference=float(np.max(np.abs(result.w - first))), newton=result)


def _preconditioned_cg_direction(grad_fn: Callable, H0: torch.Tensor, rtol: float = 1e-10) -> Callable:
    """``-H^{-1} g`` for :func:`sgworld.theory.minimum._newton` by conjugate gradients (scipy) on the
    Hessian-vector products of ``grad_fn`` (reverse over reverse, ``torch.func.vjp``; the Hessian is
    symmetric), preconditioned by the Cholesky factor of ``H0``. A solve that does not converge, or meets
    negative curvature, returns the preconditioned gradient step ``-H0^{-1} g`` as a regularised step."""
    factor = cho_factor(_numpy(H0))
    p = H0.shape[0]

    def direction(w: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, bool]:
        _, hvp = vjp(grad_fn, w)
        curvature = []

        def matvec(v):
            v = np.ravel(v)
            hv = _numpy(hvp(torch.as_tensor(v, dtype=w.dtype, device=w.device))[0])
            if v @ v > 0:
                curvature.append(float(v @ hv) / float(v @ v))
            return hv

        op = LinearOperator((p, p), matvec=matvec, dtype=np.float64)
        precondition = LinearOperator((p, p), matvec=lambda v: cho_solve(factor, v), dtype=np.float64)
        rhs = -_numpy(g)
        x, info = cg(op, rhs, M=precondition, rtol=rtol, atol=0.0, maxiter=max(50, p // 10))
        if info != 0 or min(curvature, default=1.0) <= 0 or not np.isfinite(x).all():
            return torch.as_tensor(cho_solve(factor, rhs), dtype=w.dtype, device=w.device), True
        return torch.as_tensor(x, dtype=w.dtype, device=w.device), False

    return direction


# --------------------------------------------------------------------------- WOR epoch diffusion


@dataclass(frozen=True)
class EpochDiffusion:
    """Per-epoch diffusion ``D_WOR = Cov[Delta]/2`` of WOR SGD started at ``w``, two ways, same permutations.

    Attributes
    ----------
    D, D_se : (p, p)          from simulated one-epoch displacements (exact to all orders in lr)
    D_second_order, D_second_order_se : (p, p)
                              from the second-order epoch map ``-lr sum_t g_t + lr^2 sum_{s<t} H_t g_s``
                              evaluated on the same permutations (the O(lr^4) theory)
    difference_se : (p, p)    standard error of ``D - D_second_order`` (paired: the same permutations)
    mean_displacement, mean_displacement_se : (p,)
                              mean simulated epoch displacement (``-lr M grad L_eff`` + O(lr^3))
    epochs : int              independent epochs (one fresh permutation each)
    steps_per_epoch : int     M
    displacements, second_order_displacements : (epochs, p)
                              the per-epoch displacements themselves (for standard errors of derived
                              quantities, e.g. ``WORTheory.Sigma_se``)
    """

    D: np.ndarray
    D_se: np.ndarray
    D_second_order: np.ndarray
    D_second_order_se: np.ndarray
    difference_se: np.ndarray
    mean_displacement: np.ndarray
    mean_displacement_se: np.ndarray
    epochs: int
    steps_per_epoch: int
    displacements: np.ndarray
    second_order_displacements: np.ndarray


def _epoch_batches(n: int, batch_size: int, epochs: int, generator: torch.Generator) -> torch.Tensor:
    """(epochs, M, b) indices: each row one fresh uniform permutation cut into M batches (remainder dropped)."""
    stream = IndexStream("wor", n, batch_size, epochs, generator)
    return torch.stack([next(stream) for _ in range(stream.steps_per_epoch)], dim=1)


def _simulated_displacements(problem: Problem, w: torch.Tensor, lr: float, batches: torch.Tensor) -> torch.Tensor:
    """One epoch of SGD (the sampler's own kernel) from ``w`` for every row of ``batches``: (epochs, p)."""
    kernel = sgd(problem, lr, scheme="wor")
    state = kernel.init(w.expand(batches.shape[0], -1).clone())
    for t in range(batches.shape[1]):
        state, _ = kernel.step(state, batches[:, t], None)
    return state.position - w


def _second_order_displacements(problem: Problem, w: torch.Tensor, lr: float, batches: torch.Tensor) -> torch.Tensor:
    """``-lr sum_t g_t + lr^2 sum_t H_t (sum_{s<t} g_s)`` at ``w`` for every row of ``batches``: (epochs, p).

    ``H_t c`` is a Hessian-vector product of the batch gradient (``torch.func.jvp``), so no per-sample
    Hessians are formed: memory O(epochs * p).
    """
    W = w.expand(batches.shape[0], -1).clone()
    earlier = torch.zeros_like(W)  # sum_{s<t} g_s
    second = torch.zeros_like(W)   # sum_t H_t sum_{s<t} g_s
    for t in range(batches.shape[1]):
        idx = batches[:, t]
        g_t, h_t = jvp(lambda x: problem.batch_grad(x, idx), (W,), (earlier,))
        second += h_t
        earlier += g_t
    return -lr * earlier + lr * lr * second


def _covariance_with_se(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Covariances of the rows of ``x`` and ``y`` (n, p each, paired rows), the standard error of each entry,
    and the standard error of each entry of their difference.

    The standard error of an entry is that of the mean of the centred products ``dx_i dx_j`` over the n rows;
    their variances come from fourth moments formed as p x p matrix products, so memory stays O(n p + p^2)
    (the products themselves, n x p x p, are never formed).
    """
    n = x.shape[0]
    dx, dy = x - x.mean(0), y - y.mean(0)
    cx, cy = dx.T @ dx / n, dy.T @ dy / n

    def se(second: np.ndarray, fourth: np.ndarray) -> np.ndarray:
        var = np.maximum(fourth - second ** 2, 0.0) * n / (n - 1)
        return np.sqrt(var / n)

    xx, yy = dx * dx, dy * dy
    se_x, se_y = se(cx, xx.T @ xx / n), se(cy, yy.T @ yy / n)
    cross = (dx * dy).T @ (dx * dy) / n  # E[dx_i dy_i dx_j dy_j]
    se_diff = se(cx - cy, xx.T @ xx / n + yy.T @ yy / n - 2.0 * cross)
    return cx * n / (n - 1), se_x, cy * n / (n - 1), se_y, se_diff


def wor_epoch_diffusion(problem: Problem, w, lr: float, batch_size: int, *, epochs: int = 20000,
                        seed: int = 0, progress: bool | None = False) -> EpochDiffusion:
    r"""Per-epoch WOR diffusion ``D_WOR = Cov[Delta]/2`` at ``w``: simulated and second-order formula.

    ``epochs`` independent one-epoch SGD runs start at ``w``, each with a fresh uniform permutation
    (the ``wor`` index stream, remainder dropped) and the sampler's own SGD kernel; ``Delta`` is the
    displacement after ``M = floor(N/b)`` steps. On the same permutations the second-order epoch map

    .. math:: \Delta_2 = -lr \sum_t g_t + lr^2 \sum_{s<t} H_t g_s

    is evaluated exactly (``g_t``, ``H_t``: gradient and Hessian of batch t's loss at ``w``). When every
    sample is used once per epoch, ``sum_t g_t = M grad L`` is the same for every permutation, so the
    fluctuation of ``Delta`` is ``lr^2 [sum_{s<t} H_t g_s - mean]``: at a minimum, with ``g_s = e_s``
    (batch errors, summing to zero) and ``H_t = H + E_t``,
    ``sum_{s<t} H_t e_s = H sum_s (M-1-s) e_s + sum_{s<t} E_t e_s``. The first term alone gives the
    closed form :func:`wor_diffusion_leading`; the second (spread of the per-sample Hessians) matters
    in soft directions. ``D`` and ``D_second_order`` differ by O(lr M h_max) relative (third order).
    A dropped remainder (N not divisible by b) adds an O(lr^2) term, included in both.

    Standard errors are those of a covariance entry from ``epochs`` i.i.d. displacements.

    Parameters
    ----------
    problem, w, lr, batch_size
    epochs : int
        Independent epochs (relative standard error of D about ``sqrt(2 / epochs)``).
    seed : int
        Seeds the permutations; nothing else is random.
    progress : bool | None
        Progress bar over the epochs (None: only on a terminal).
    """
    from tqdm.auto import tqdm

    w = check_point(problem, w)
    lr = check_positive("lr", lr)
    batch_size = check_int_range("batch_size", batch_size, 1, problem.n)
    epochs = check_int_range("epochs", epochs, 2)
    generator = torch.Generator().manual_seed(int(seed))
    sim, second = [], []
    with torch.no_grad(), tqdm(total=epochs, desc="D_WOR", unit="epoch", leave=False,
                               disable=None if progress is None else not progress) as bar:
        for start in range(0, epochs, _EPOCH_CHUNK):
            batches = _epoch_batches(problem.n, batch_size, min(_EPOCH_CHUNK, epochs - start), generator)
            sim.append(_simulated_displacements(problem, w, lr, batches))
            second.append(_second_order_displacements(problem, w, lr, batches))
            bar.update(batches.shape[0])
    sim, second = _numpy(torch.cat(sim)), _numpy(torch.cat(second))
    cov_sim, se_sim, cov_2, se_2, diff_se = _covariance_with_se(sim, second)
    return EpochDiffusion(D=0.5 * cov_sim, D_se=0.5 * se_sim, D_second_order=0.5 * cov_2, D_second_order_se=0.5 * se_2,
                          difference_se=0.5 * diff_se, mean_displacement=sim.mean(0),
                          mean_displacement_se=sim.std(0, ddof=1) / math.sqrt(epochs), epochs=epochs,
                          steps_per_epoch=problem.n // batch_size, displacements=sim, second_order_displacements=second)


def wor_diffusion_leading(H, S, lr: float, n: int, batch_size: int) -> np.ndarray:
    r"""Closed-form leading WOR epoch diffusion ``D = lr^4 M^2 (M^2 - 1) / (24 (N-1)) H S H``.

    At a minimum, the fluctuating epoch displacement is ``lr^2 H sum_s (M-1-s) e_s`` plus the
    per-sample-Hessian term. With ``Cov[e_s] = f S`` and ``Cov[e_s, e_t] = -S/(N-1)`` (s != t) for
    disjoint batches of one permutation, ``Cov[sum_s c_s e_s] = (M/(N-1)) [sum c^2 - (sum c)^2/M] S
    = M^2 (M^2-1)/(12 (N-1)) S``. Exact for problems whose per-sample Hessians are all equal (e.g.
    :class:`sgworld.problems.GaussianLocation`); otherwise use :func:`wor_epoch_diffusion`.
    Requires N divisible by b.
    """
    n = check_int_range("n (number of samples)", n, 2)
    batch_size = check_int_range("batch_size", batch_size, 1, n)
    if n % batch_size:
        raise ValueError(f"the closed form needs N divisible by b (N = {n}, b = {batch_size}); a dropped remainder "
                         "adds O(lr^2) noise per epoch: use wor_epoch_diffusion")
    m = n // batch_size
    H, S = as_float64(H, "H"), as_float64(S, "S")
    D = check_positive("lr", lr) ** 4 * m * m * (m * m - 1) / (24.0 * (n - 1)) * (H @ S @ H)
    return 0.5 * (D + D.T)


def _epoch_drift(H: np.ndarray, lr: float, steps_per_epoch: int) -> np.ndarray:
    """``I - (I - lr H)^M`` (the linearised epoch map's contraction), digit-safe via ``expm1``/``log1p``
    where ``lr h < 1`` (a negative base, ``lr h > 1``, is raised to the integer power directly)."""
    lam, V = _eigh(H)
    x = lr * lam
    small = x < 1
    k = np.empty_like(x)
    k[small] = -np.expm1(steps_per_epoch * np.log1p(-x[small]))
    k[~small] = 1.0 - np.power(1.0 - x[~small], steps_per_epoch)
    return (V * k) @ V.T


WOR_VALIDITY = 0.1  # lr M h_max up to which the second-order WOR theory is within ~5% (sigma_wor's table)


def sigma_wor(H, D_wor, lr: float, steps_per_epoch: int, *, discrete: bool = False) -> np.ndarray:
    r"""WOR stationary covariance at epoch boundaries from ``lr M (H Sigma + Sigma H) = 2 D_WOR``.

    Solved with :func:`sgworld.theory.stationary.solve_lyapunov` (``scale = M``). With
    ``discrete=True`` the exact linear epoch map is used instead of its small-``lr M H`` limit:
    ``Sigma = F Sigma F + 2 D_WOR`` with ``F = (I - lr H)^M``.

    ``D_wor`` is a (p, p) matrix or an :class:`EpochDiffusion` (:func:`wor_epoch_diffusion`); given the
    latter, each form takes the diffusion it is consistent with: ``discrete=True`` the all-orders
    (simulated) ``D``, the continuous form the second-order ``D_second_order``.

    Validity, measured against the exact discrete-time WOR covariance
    (:func:`sgworld.theory.exact.epoch_stationary_moments`; Gaussian location, N = 20, b = 2, trace of
    Sigma over the exact one):

    ==========================  =====  =====  =====  =====  =====  =====
    lr M h_max                  0.01   0.1    0.3    0.5    1.1    1.9
    continuous, second-order D  0.97   0.96   0.94   0.92   0.93   1.03
    discrete, all-orders D      0.97   0.97   0.97   0.97   0.97   0.97
    discrete, second-order D    0.98   1.05   1.23   1.44   2.27   3.99
    ==========================  =====  =====  =====  =====  =====  =====

    (the common 3% is the Monte Carlo error of the 4000 epochs behind D). ``discrete=True`` is exact
    for the linear epoch map only with the all-orders D: the exact ``F`` with a truncated D is off by a
    factor of about ``1 + 1.2 lr M h_max``. The continuous form is an expansion in ``lr M h_max``,
    within about 5% up to ``WOR_VALIDITY = 0.1``. So a bare matrix with ``lr M h_max >
    WOR_VALIDITY`` (whose order this function cannot know), and the continuous form there, give a
    :class:`~sgworld.errors.TheoryRangeWarning`; ``lr h_max >= 2`` (no stationary state at all) raises
    :class:`~sgworld.errors.StepSizeError`.
    """
    lr = check_positive("lr", lr)
    steps = check_int_range("steps_per_epoch", steps_per_epoch, 1)
    H = as_float64(H, "H")
    h_max = float(np.linalg.eigvalsh(H)[-1])
    _check_step_size(lr, h_max, "WOR SGD")
    spread = lr * steps * h_max
    if isinstance(D_wor, EpochDiffusion):
        D_wor, known = (D_wor.D if discrete else D_wor.D_second_order), True
    else:
        known = False
    if spread > WOR_VALIDITY and (discrete is False or not known):
        fix = ("use discrete=True with the EpochDiffusion from wor_epoch_diffusion" if not discrete
               else "pass the EpochDiffusion from wor_epoch_diffusion, so that the all-orders D is used")
        warnings.warn(f"sigma_wor at lr M h_max = {spread:.3g} > {WOR_VALIDITY}: outside the range where its error "
                      f"is a few percent (see its docstring); {fix}", TheoryRangeWarning, stacklevel=2)
    if discrete:
        return solve_lyapunov(_epoch_drift(H, lr, steps), D_wor, 1.0, discrete=True)
    return solve_lyapunov(H, D_wor, lr, scale=steps)


def wor_sigma_standard_error(H, displacements, lr: float, steps_per_epoch: int, basis=None,
                             groups: int | None = None) -> np.ndarray:
    """Monte Carlo standard error of :func:`sigma_wor` (continuous) from the epoch displacements behind D_WOR.

    ``lr M (H Sigma + Sigma H) = Cov[displacements]`` is linear in the covariance, so ``Sigma`` is an
    average over epochs of per-epoch solutions, in H's eigenbasis ``z_k z_l / (lr M (h_k + h_l))``
    with ``z`` the centred displacement; their spread gives the standard error of every entry of
    ``basis^T Sigma basis`` (default basis: the identity, i.e. the entries of Sigma).

    Each solution costs two p x p products, so the spread is taken over ``groups`` batch means of
    consecutive epochs (independent permutations, so the batch means are independent): by default one
    epoch per group while ``epochs p^3`` stays within ``SE_FLOP_BUDGET``, else as many groups as that
    budget allows, at least ``MIN_SE_GROUPS`` (the standard error's own relative error is then about
    ``1 / sqrt(2 (groups - 1))``).
    """
    lam, V = _eigh(as_float64(H, "H"))
    x = as_float64(displacements, "displacements")
    z = (x - x.mean(0)) @ V
    weight = 1.0 / (lr * steps_per_epoch * (lam[:, None] + lam[None, :]))
    B = V.T if basis is None else V.T @ as_float64(basis, "basis")  # basis^T Sigma basis = B^T Sigma_eig B
    n, p = x.shape
    if groups is None:
        groups = n if n * p**3 <= SE_FLOP_BUDGET else max(MIN_SE_GROUPS, int(SE_FLOP_BUDGET // p**3))
    groups = check_int_range("groups", groups, 2, n)
    mean = B.T @ ((z.T @ z / n) * weight) @ B
    squares = np.zeros_like(mean)
    if groups == n:  # one epoch per group, in chunks: (epochs, p, p) at once would not fit at a few hundred p
        chunk = max(1, (1 << 22) // mean.size)
        for start in range(0, n, chunk):
            zc = z[start:start + chunk]
            deviation = B.T @ (zc[:, :, None] * zc[:, None, :] * weight) @ B - mean
            squares += (deviation * deviation).sum(0)
    else:
        for zg in np.array_split(z, groups):
            deviation = B.T @ ((zg.T @ zg / zg.shape[0]) * weight) @ B - mean
            squares += deviation * deviation
    return np.sqrt(squares / (groups - 1)) / math.sqrt(groups)


def wor_eigen_variance_standard_error(H, displacements, lr: float, steps_per_epoch: int) -> np.ndarray:
    """Standard errors of the diagonal of :func:`wor_sigma_standard_error`'s ``basis^T Sigma basis`` for the
    eigenvectors of H as the basis (ascending eigenvalues): the variances of ``Sigma`` along them.

    Per epoch those are ``z_k^2 / (2 lr M h_k)``, so this costs O(epochs p) where the full matrix costs
    O(epochs p^3).
    """
    lam, V = _eigh(as_float64(H, "H"))
    x = as_float64(displacements, "displacements")
    z = (x - x.mean(0)) @ V
    per_epoch = z * z / (2.0 * lr * steps_per_epoch * lam)
    return per_epoch.std(0, ddof=1) / math.sqrt(x.shape[0])


def wor_validity(H, lr: float, steps_per_epoch: int) -> float:
    """``lr M h_max``: the WOR expansion (and ``sigma_wor``) needs it ``<< 1``."""
    return float(check_positive("lr", lr) * steps_per_epoch * np.linalg.eigvalsh(as_float64(H, "H"))[-1])


# --------------------------------------------------------------------------- bundled theory


@dataclass(frozen=True, eq=False)
class WORTheory:
    """Stationary state of WOR SGD (random reshuffling) at epoch boundaries, near the minimum w*.

    Attributes
    ----------
    w_star : (p,)             minimum of L
    effective : EffectiveMinimum  ``w_eff`` (Newton on L_eff) and the first-order formula
    S : (p, p)                per-sample gradient covariance at ``w_eff``
    diffusion : EpochDiffusion  per-epoch ``D_WOR`` at ``w_eff``, second-order formula and simulated
    state : StationaryState   the state at epoch boundaries, with time step one epoch (``state.lr =
                              lr M``): mean ``w_eff``, ``H`` (Hessian of L at ``w_eff``), ``D = D_WOR``
                              (second order), ``Sigma`` from ``lr M (H Sigma + Sigma H) = 2 D_WOR``,
                              ``Q`` and ``state.ep_rate`` per epoch, ``state.lr_hmax = lr M h_max``
                              (the validity measure, << 1), ``state.commutator_ratio``
    Sigma_se : (p, p)         Monte Carlo standard error of ``Sigma`` from the finite number of
                              permutations behind ``D_WOR`` (the Lyapunov map is linear)
    Sigma_discrete : (p, p)   refinement: simulated ``D_WOR`` (all orders in lr at a fixed start) and
                              the linear epoch map ``(I - lr H)^M`` instead of its small-``lr M H``
                              limit (in the regression example the permutation-averaged epoch
                              Jacobian equals ``(I - lr H)^M`` to 3e-4 relative)
    steps_per_epoch : int     M
    """

    w_star: np.ndarray
    effective: EffectiveMinimum
    S: np.ndarray
    diffusion: EpochDiffusion
    state: StationaryState
    Sigma_se: np.ndarray
    Sigma_discrete: np.ndarray
    steps_per_epoch: int


def wor_theory(problem: Problem, w_star, lr: float, batch_size: int, *, epochs: int = 20000, seed: int = 0,
               chunk_size: int = 1024, progress: bool | None = False) -> WORTheory:
    r"""WOR stationary state: mean ``w_eff = argmin L_eff`` and covariance from the per-epoch diffusion.

    ``w_eff`` by :func:`minimize_effective_loss` from ``w_star``; at ``w_eff``: ``H``, ``S`` and
    ``D_WOR`` (:func:`wor_epoch_diffusion`: the second-order formula, averaged over ``epochs``
    permutations, defines the theory; the simulated value rides along as a check), then
    ``lr M (H Sigma + Sigma H) = 2 D_WOR`` (:func:`sigma_wor`). arXiv 2306.03521; docs/concepts.md,
    "SGD near a minimum".

    Raises
    ------
    ValueError
        ``w_star`` not a minimum (use :func:`sgworld.theory.minimum.find_minimum`); N not divisible by b
        (the effective-loss mean and the O(lr^3) covariance assume every sample is used once per epoch).
    """
    w0 = check_point(problem, w_star, "w_star")
    lr = check_positive("lr", lr)
    batch_size = check_int_range("batch_size", batch_size, 1, problem.n)
    if problem.n % batch_size:
        raise ValueError(f"wor_theory needs N divisible by b (N = {problem.n}, b = {batch_size}): with a dropped "
                         "remainder the epoch noise is O(lr^2), not O(lr^4); choose b dividing N")
    with torch.no_grad():
        H0 = _numpy(problem.hessian(w0))
    check_minimum(H0, "w_star")
    _check_step_size(lr, float(np.linalg.eigvalsh(H0)[-1]), "WOR SGD")
    effective = minimize_effective_loss(problem, lr, batch_size, w0)
    w_eff = torch.as_tensor(effective.w_eff, dtype=problem.dtype)
    with torch.no_grad():
        H = _numpy(problem.hessian(w_eff))
    S = gradient_covariance(problem, w_eff, chunk_size)
    check_gradient_noise(S, noise_factor("wr", problem.n, batch_size), problem.n, batch_size, "wor")
    m = problem.n // batch_size
    epoch = wor_epoch_diffusion(problem, w_eff, lr, batch_size, epochs=epochs, seed=seed, progress=progress)
    state = stationary_state(H, epoch.D_second_order, lr * m, effective.w_eff)
    return WORTheory(w_star=_numpy(w0), effective=effective, S=S, diffusion=epoch, state=state,
                     Sigma_se=wor_sigma_standard_error(H, epoch.second_order_displacements, lr, m),
                     Sigma_discrete=sigma_wor(H, epoch, lr, m, discrete=True), steps_per_epoch=m)
