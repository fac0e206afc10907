"""The point the Fokker–Planck theory expands around: the minimum ``w*`` of ``L`` and the gradient noise there.

* :func:`find_minimum`: Newton's method with a backtracking line search (saddle-free steps where the
  Hessian ``H = problem.hessian(w)`` is not positive definite); the Newton machinery is shared with
  the WOR effective loss (:func:`sgworld.theory.wor.minimize_effective_loss`).
* :func:`gradient_covariance`: the per-sample gradient covariance, exactly centred::

    S(w) = (1/N) sum_i grad U_i grad U_i^T - grad L grad L^T

  whose multiple ``f S`` is the covariance of the batch-mean gradient per step
  (:func:`sgworld.batching.noise_factor`; docs/concepts.md, "SGD near a minimum").

Everything is computed with ``torch.func`` through the Problem (per-sample gradients via
``batch_grad`` with batches of one sample, Hessians via ``problem.hessian``) in the problem's dtype
(float64 for analysis) and returned as float64 numpy arrays.

Reference: S. Adhikari, A. Kabakçıoğlu, A. Strang, D. Yuret, M. Hinczewski, "Machine learning in
and out of equilibrium", arXiv:2306.03521.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .._checks import check_int_range, check_point, check_positive
from ..problems import Problem

__all__ = ["NewtonResult", "find_minimum", "gradient_covariance"]


# --------------------------------------------------------------------------- values at a point (shared by theory/)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _loss(problem: Problem, w: torch.Tensor) -> torch.Tensor:
    return problem.loss(w.unsqueeze(0))[0]


def _grad(problem: Problem, w: torch.Tensor) -> torch.Tensor:
    return problem.grad(w.unsqueeze(0))[0]


def _sample_grads(problem: Problem, w: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """``grad U_i(w)`` for i in [start, stop), shape (stop - start, p): ``batch_grad`` with batches of one."""
    idx = torch.arange(start, stop).unsqueeze(1)
    return problem.batch_grad(w.expand(stop - start, -1), idx)


# --------------------------------------------------------------------------- Newton's method


@dataclass(frozen=True)
class NewtonResult:
    """Outcome of Newton's method.

    Attributes
    ----------
    w : (p,)              the minimiser
    iterations : int      Newton steps taken (a quadratic from anywhere: 1)
    grad_norm : float     |grad| at ``w``
    step_norm : float     max-norm of the last Newton step (the convergence test)
    value : float         objective at ``w``
    regularised_steps : int  steps where the Hessian was not positive definite and was replaced
                          by |H| (eigenvalues by their absolute values, floored)
    """

    w: np.ndarray
    iterations: int
    grad_norm: float
    step_norm: float
    value: float
    regularised_steps: int


def _newton_direction(g: torch.Tensor, H: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``-H^{-1} g``; where ``H`` is not (numerically) positive definite, ``-|H|^{-1} g`` (a descent direction).

    ``|H|`` has the eigenvalues' absolute values, floored at 1e-8 of the largest: the damped step of
    "saddle-free" Newton, which moves away from saddles and maxima instead of towards them.
    """
    lam, V = torch.linalg.eigh(0.5 * (H + H.T))
    top = float(lam.abs().max())
    regularised = bool(lam[0] <= H.shape[0] * np.finfo(float).eps * top) or top == 0
    if regularised:
        lam = lam.abs().clamp_min(1e-8 * top if top > 0 else 1.0)
    return -(V @ ((V.T @ g) / lam)), regularised


def _dense_direction(hess_fn: Callable) -> Callable:
    """The Newton direction from the dense Hessian ``hess_fn(w)`` (:func:`_newton_direction`), for :func:`_newton`."""
    def direction(w: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, bool]:
        H = hess_fn(w)
        if not torch.isfinite(H).all():
            raise FloatingPointError("the Hessian is not finite")
        return _newton_direction(g, H)
    return direction


def _newton(value_fn: Callable, grad_fn: Callable, direction_fn: Callable, w0: torch.Tensor, *, tol: float,
            max_iter: int, what: str) -> NewtonResult:
    """Newton's method with a backtracking (Armijo) line search on ``value_fn``.

    ``direction_fn(w, g)`` gives the step ``p`` (``-H^{-1} g``) and whether it was regularised (the
    Hessian not positive definite, a damped descent step instead): :func:`_dense_direction`, or
    a Krylov solve with Hessian-vector products for many parameters. Converged when the max-norm of
    the Newton step is ``<= tol * (1 + |w|_max)`` and the step was not regularised. Near the minimum
    the predicted decrease ``|g.p|/2`` falls below what the objective's round-off can resolve; the
    full step is then taken without a line search (the quadratic-convergence region).
    """
    tol = check_positive("tol", tol)
    max_iter = check_int_range("max_iter", max_iter, 1)
    w = w0.clone()
    regularised_steps = 0
    step_norm = math.inf
    for it in range(max_iter + 1):
        g = grad_fn(w)
        try:
            if not torch.isfinite(g).all():
                raise FloatingPointError("the gradient is not finite")
            p, regularised = direction_fn(w, g)
        except FloatingPointError as exc:
            raise ValueError(f"{what}: {exc} at iteration {it}; start closer to a minimum (e.g. after a short "
                             "SGD run)") from None
        step_norm = float(p.abs().max())
        if not regularised and step_norm <= tol * (1.0 + float(w.abs().max())):
            w = w + p
            return NewtonResult(w=_numpy(w), iterations=it, grad_norm=float(grad_fn(w).norm()),
                                step_norm=step_norm, value=float(value_fn(w)), regularised_steps=regularised_steps)
        if it == max_iter:
            break
        regularised_steps += regularised
        w = _line_search(value_fn, w, g, p, regularised, what)
    raise ValueError(
        f"{what}: Newton's method did not converge in {max_iter} iterations (last step {step_norm:.3g}, "
        f"|grad| = {float(grad_fn(w).norm()):.3g}). Start closer to a minimum, e.g. at the final position "
        "of a short SGD run (sgworld.sample(problem, 'sgd', ...)), or raise max_iter")


def _line_search(value_fn, w, g, p, regularised: bool, what: str) -> torch.Tensor:
    f0 = float(value_fn(w))
    slope = float(g @ p)
    resolution = 1e3 * np.finfo(float).eps * max(abs(f0), 1.0)
    if not regularised and -0.5 * slope < resolution:
        return w + p  # the loss cannot resolve the step: pure Newton (quadratic region)
    t = 1.0
    for _ in range(60):
        trial = w + t * p
        f = float(value_fn(trial))
        if math.isfinite(f) and f <= f0 + 1e-4 * t * slope:
            return trial
        t *= 0.5
    raise ValueError(f"{what}: the line search found no decrease of the objective from the current point "
                     f"(objective {f0:.6g}, directional derivative {slope:.3g}); start closer to a minimum, "
                     "e.g. after a short SGD run")


def find_minimum(problem: Problem, w0=None, *, tol: float = 1e-12,
                 max_iter: int = 100) -> tuple[np.ndarray, NewtonResult]:
    """Minimum ``w*`` of the full loss ``L`` by Newton's method with a backtracking line search.

    Steps ``p = -H^{-1} grad L`` with ``H = problem.hessian(w)``; where ``H`` is not positive definite
    the step uses ``|H|`` (eigenvalues by their absolute values), a damped descent step. Converges
    when the Newton step is below ``tol * (1 + |w|_max)`` at a positive definite Hessian.

    Parameters
    ----------
    problem : Problem
    w0 : (p,) array, optional
        Starting point (default: ``problem.initial_params()``).
    tol : float
        Relative max-norm of the final Newton step.
    max_iter : int

    Returns
    -------
    (w_star, NewtonResult)
        ``w_star`` (p,) float64.

    Raises
    ------
    ValueError
        No convergence within ``max_iter`` (the message suggests a better start, e.g. a short SGD run).
    """
    w = check_point(problem, problem.initial_params() if w0 is None else w0, "w0")
    with torch.no_grad():
        result = _newton(lambda x: _loss(problem, x), lambda x: _grad(problem, x),
                         _dense_direction(problem.hessian), w,
                         tol=tol, max_iter=max_iter, what="find_minimum")
    return result.w, result


# --------------------------------------------------------------------------- gradient noise


def gradient_covariance(problem: Problem, w, chunk_size: int = 1024) -> np.ndarray:
    r"""Per-sample gradient covariance ``S(w) = (1/N) sum_i grad U_i grad U_i^T - grad L grad L^T``.

    Exactly centred: chunks of per-sample gradients are merged with Chan's pairwise update of the
    mean and centred sum of squares, so no ``E[gg^T] - E[g]E[g]^T`` cancellation occurs and memory is
    ``O(chunk_size * p + p^2)``. The batch-mean gradient noise per step is ``f S``
    (docs/concepts.md, "SGD near a minimum").

    Returns
    -------
    S : (p, p) float64, symmetric positive semidefinite.
    """
    w = check_point(problem, w)
    chunk_size = check_int_range("chunk_size", chunk_size, 1)
    p = problem.dim
    count, mean, m2 = 0, torch.zeros(p, dtype=w.dtype), torch.zeros(p, p, dtype=w.dtype)
    with torch.no_grad():
        for start in range(0, problem.n, chunk_size):
            G = _sample_grads(problem, w, start, min(start + chunk_size, problem.n))
            c_mean = G.mean(0)
            dG = G - c_mean
            c = G.shape[0]
            delta = c_mean - mean
            m2 += dG.T @ dG + torch.outer(delta, delta) * (count * c / (count + c))
            mean += delta * (c / (count + c))
            count += c
    S = _numpy(m2 / count)
    return 0.5 * (S + S.T)

