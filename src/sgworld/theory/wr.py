"""Stationary state of step-wise SGD (``wr``, ``iid``) near a minimum, from a Problem.

With batches drawn independently every step (:data:`sgworld.batching.STEPWISE_SCHEMES`), the
minibatch noise acts per step (docs/concepts.md, "SGD near a minimum")::

    D_WR  = (lr^2 / 2) f S,   f = (N-b)/(b(N-1))   (``iid``: f = 1/b)
    H Sigma + Sigma H = (2/lr) D_WR,   Q = (lr/2)(H Sigma - Sigma H)

with ``S`` the per-sample gradient covariance (:func:`sgworld.theory.minimum.gradient_covariance`) and
``H`` the Hessian at the minimum ``w*``. The Lyapunov solver, circulation and entropy production live
in :mod:`sgworld.theory.stationary`; this module supplies their inputs from a Problem.

Reference: S. Adhikari, A. Kabakçıoğlu, A. Strang, D. Yuret, M. Hinczewski, "Machine learning in
and out of equilibrium", arXiv:2306.03521.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._checks import (
    check_at_minimum, check_choice, check_gradient_noise, check_int_range, check_minimum, check_point, check_positive,
    check_square,
)
from ..batching import STEPWISE_SCHEMES, noise_factor
from ..problems import Problem
from .minimum import _grad, _numpy, gradient_covariance
from .stationary import StationaryState, stationary_state

__all__ = ["diffusion", "WRTheory", "wr_theory"]


def diffusion(source, lr: float, batch_size: int, scheme: str = "wr", *, w=None, n: int | None = None,
              chunk_size: int = 1024) -> np.ndarray:
    r"""Per-step diffusion of minibatch SGD, ``D = (lr^2 / 2) f S`` (half the per-step noise covariance).

    ``f`` is :func:`sgworld.batching.noise_factor`: ``(N-b)/(b(N-1))`` for ``wr``, ``1/b`` for ``iid``.

    Parameters
    ----------
    source : Problem or (p, p) array
        A Problem (then ``w`` is required and ``S = gradient_covariance(problem, w)``), or ``S`` itself
        (then ``n`` is required).
    lr, batch_size, scheme
        Step size, minibatch size b and the step-wise scheme (``"wr"`` or ``"iid"``). For ``wor`` the
        diffusion is per epoch and O(lr^4): use :func:`sgworld.theory.wor.wor_epoch_diffusion`.
    """
    lr = check_positive("lr", lr)
    if scheme not in STEPWISE_SCHEMES:
        if scheme == "wor":
            raise ValueError("scheme 'wor' has no per-step diffusion (its noise is per epoch and O(lr^4)); "
                             "use wor_epoch_diffusion(problem, w, lr, batch_size)")
        check_choice("scheme", scheme, STEPWISE_SCHEMES)
    if isinstance(source, Problem):
        if w is None:
            raise ValueError("diffusion(problem, ...) needs the point: pass w=<(p,) array>")
        S, n = gradient_covariance(source, w, chunk_size), source.n
    else:
        if n is None:
            raise ValueError("diffusion(S, ...) needs the number of samples: pass n=N")
        S = check_square(source, "S")
        n = check_int_range("n (number of samples)", n, 1)
    batch_size = check_int_range("batch_size", batch_size, 1, n)
    return 0.5 * lr * lr * noise_factor(scheme, n, batch_size) * S


@dataclass(frozen=True, eq=False)
class WRTheory:
    """Stationary state of step-wise SGD (``wr`` / ``iid``) at a minimum.

    Attributes
    ----------
    state : StationaryState   mean ``w*``, ``H``, ``D`` (per step), ``Sigma``, ``Q``, ``lr``, and from them
                              ``state.ep_rate`` (mean entropy production per step),
                              ``state.commutator_ratio`` (0 iff equilibrium) and ``state.lr_hmax``
                              (the Lyapunov / small-step approximation needs it << 1)
    S : (p, p)                per-sample gradient covariance at w*
    noise_factor : float      f of the scheme
    """

    state: StationaryState
    S: np.ndarray
    noise_factor: float


def wr_theory(problem: Problem, w_star, lr: float, batch_size: int, scheme: str = "wr", *,
              chunk_size: int = 1024) -> WRTheory:
    r"""Fokker–Planck stationary state of step-wise SGD at the minimum ``w_star``.

    ``H = problem.hessian(w*)``, ``D = (lr^2/2) f S(w*)`` (:func:`diffusion`), and the stationary
    state ``H Sigma + Sigma H = (2/lr) D``, ``Q = (lr/2)(H Sigma - Sigma H)`` with its entropy
    production from :func:`sgworld.theory.stationary.stationary_state` (arXiv 2306.03521).

    Raises
    ------
    ValueError
        ``w_star`` is not a minimum (Hessian not positive definite, or a gradient that moves the
        minimum by more than the stationary spread): use :func:`sgworld.theory.minimum.find_minimum`.
        ``D`` singular (no noise along some direction).
    """
    w = check_point(problem, w_star, "w_star")
    lr = check_positive("lr", lr)
    batch_size = check_int_range("batch_size", batch_size, 1, problem.n)
    if scheme not in STEPWISE_SCHEMES:
        raise ValueError(f"wr_theory covers the step-wise schemes {', '.join(STEPWISE_SCHEMES)}, got {scheme!r}; "
                         "for 'wor' use wor_theory")
    with torch.no_grad():
        H = _numpy(problem.hessian(w))
        g = _numpy(_grad(problem, w))
    check_minimum(H, "w_star")
    S = gradient_covariance(problem, w, chunk_size)
    factor = noise_factor(scheme, problem.n, batch_size)
    check_gradient_noise(S, factor, problem.n, batch_size, scheme)
    D = diffusion(S, lr, batch_size, scheme, n=problem.n)
    state = stationary_state(H, D, lr, _numpy(w))
    check_at_minimum(H, g, state.Sigma, "w_star")
    state.ep_rate  # evaluated (and cached) here: a D too singular for D^{-1} is reported by wr_theory itself
    return WRTheory(state=state, S=S, noise_factor=factor)

