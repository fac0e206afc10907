"""Gradient estimators: ``estimate(position, batch_indices) -> g`` (K, p), independent of the integrator.

* :func:`minibatch_gradient` -- ``g(w) = grad L_B(w)``, the minibatch mean of ``grad U_i`` (the full
  gradient ``grad L`` when ``batch_indices`` is None).
* :func:`control_variate_gradient` -- Baker, Fearnhead, Fox & Nemeth (2019): around a fixed centre
  ``w_hat`` (typically the MAP),

      g(w) = grad L(w_hat) + grad L_B(w) - grad L_B(w_hat),

  unbiased for ``grad L(w)`` with the same batch B in both minibatch terms; its noise vanishes at
  ``w = w_hat`` and, for a quadratic L, has covariance ``(N-b)/(b(N-1)) Cov_i[(A_i - H)(w - w_hat)]``
  under ``wr`` instead of ``(N-b)/(b(N-1)) S(w)``. ``grad L(w_hat)`` is computed once, when the
  estimator is built (N per-sample gradients).

Reference: J. Baker, P. Fearnhead, E. B. Fox, C. Nemeth, "Control variates for stochastic gradient
MCMC", Statistics and Computing 29 (2019) 599-615.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..problems import Problem

GradientEstimator = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


def minibatch_gradient(problem: Problem) -> GradientEstimator:
    """``g(w) = grad L_B(w)`` for each chain's batch (``grad L`` for ``batch_indices=None``)."""
    return problem.batch_grad


def check_centre(problem: Problem, centre) -> torch.Tensor:
    """The control-variate centre as a (p,) tensor of the problem's dtype; a one-line error otherwise."""
    if centre is None:
        raise ValueError("centre is required for control variates: pass centre=<(p,) point near the mode>, e.g. "
                         "the MAP from a short full-batch optimisation (problem.target().mean for quadratic problems)")
    c = torch.as_tensor(centre, dtype=problem.dtype, device=problem.data[0].device)
    if c.shape != (problem.dim,):
        raise ValueError(f"centre must have shape ({problem.dim},) (one point in parameter space), "
                         f"got {tuple(c.shape)}")
    if not bool(torch.isfinite(c).all()):
        raise ValueError("centre contains non-finite values; give a finite (p,) point near the mode, e.g. the MAP")
    return c


def control_variate_gradient(problem: Problem, centre) -> GradientEstimator:
    """``g(w) = grad L(w_hat) + grad L_B(w) - grad L_B(w_hat)`` around ``centre`` ``w_hat`` (p,) (Baker et al. 2019).

    ``batch_indices=None`` (full batch) gives ``grad L(w)`` itself.
    """
    c = check_centre(problem, centre).unsqueeze(0)
    full_at_centre = problem.grad(c)  # (1, p), once

    def estimate(position: torch.Tensor, batch_indices: torch.Tensor | None) -> torch.Tensor:
        if batch_indices is None:
            return problem.grad(position)
        at_centre = problem.batch_grad(c.expand(position.shape[0], -1), batch_indices)
        return problem.batch_grad(position, batch_indices).sub_(at_centre).add_(full_at_centre)

    return estimate
