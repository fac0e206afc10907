"""SGLD-CV: SGLD with a control-variate gradient (Baker, Fearnhead, Fox & Nemeth 2019).

``w' = w - lr P g(w) + sqrt(2 lr T) C xi`` with

    g(w) = grad L(w_hat) + grad L_B(w) - grad L_B(w_hat)

around a fixed centre ``w_hat`` (the MAP, ideally), ``grad L(w_hat)`` computed once
(:func:`~sgworld.samplers.gradients.control_variate_gradient`). The minibatch noise of ``g`` grows with
the distance from the centre instead of being the full gradient noise, so near the mode SGLD-CV's
stationary state approaches full-batch Langevin's at a fraction of its cost.

Reference: J. Baker, P. Fearnhead, E. B. Fox, C. Nemeth, "Control variates for stochastic gradient
MCMC", Statistics and Computing 29 (2019) 599-615.
"""

from __future__ import annotations

from ..problems import Problem
from .base import Kernel, describe_tensor
from .gradients import check_centre, control_variate_gradient
from .langevin import stochastic_gradient_kernel


def sgld_cv(problem: Problem, lr, temperature=1.0, *, centre=None, preconditioner=None) -> Kernel:
    """SGLD-CV kernel: the update rule with the control-variate gradient around ``centre`` (p,), ``wr`` batches.

    ``centre`` is required (a (p,) point, typically the MAP: ``problem.target().mean`` for quadratic
    problems, or the end of a short full-batch optimisation). ``lr`` and ``temperature`` are numbers or
    schedules; ``preconditioner`` a constant SPD P (p, p) as in :func:`~sgworld.samplers.sgld.sgld`.
    ``scheme=`` of ``sample`` picks another index stream (``wor``, ``iid``).
    """
    c = check_centre(problem, centre)
    settings = {"centre": describe_tensor(c)}
    return stochastic_gradient_kernel(problem, lr, temperature, "wr", "sgld_cv",
                                      gradient=control_variate_gradient(problem, c), preconditioner=preconditioner,
                                      settings=settings)

