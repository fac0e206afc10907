"""pSGLD: SGLD with an RMSprop preconditioner (Li, Chen, Carlson & Carin 2016), state (w, V).

(:func:`~sgworld.samplers.integrators.rmsprop_langevin_update`; elementwise products)::

    V' = rho V + (1 - rho) g * g,    G = 1 / (lambda + sqrt(V')),    w' = w - lr G * g + sqrt(2 lr T G) * xi,

``g`` the minibatch gradient of L, ``rho`` in (0, 1) the decay (``eps`` here is the paper's ``lambda > 0``),
``V_0 = 0`` (the paper's Algorithm 1; where the first gradients are near zero, e.g. a start at a mode,
the first steps are large, ``G ~ 1 / lambda``: start where the gradients are typical, or burn in). The
correction term ``lr Gamma(w)`` of the paper (the divergence
of G, which depends on w through V) is dropped, as in the paper's experiments: the stationary law is
``exp(-L/T)`` only up to an error that vanishes as ``rho -> 1`` and ``lr -> 0``. Because the effective
step ``lr G`` adapts to the gradients, the driver sets no up-front step-size limit (growth is still
detected). Welling & Teh's step size is ``eps = 2 lr``, as for SGLD.

Reference: C. Li, C. Chen, D. Carlson, L. Carin, "Preconditioned stochastic gradient Langevin dynamics
for deep neural networks", AAAI 2016.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._checks import check_positive
from ..problems import Problem
from ..schedules import schedule_value
from .base import Kernel, StepInfo
from .gradients import minibatch_gradient
from .integrators import rmsprop_langevin_update
from .langevin import schedule_settings, schedules_of, step_counter


class PSGLDState(NamedTuple):
    position: torch.Tensor        # (K, p)
    square_avg: torch.Tensor      # (K, p)  V, the running average of g * g
    step: torch.Tensor | None     # (K,) int64 steps taken, when lr or T is a schedule


def psgld(problem: Problem, lr, temperature=1.0, *, rho: float = 0.99, eps: float = 1e-5) -> Kernel:
    """pSGLD kernel (module docstring): decay ``rho`` in (0, 1), ``eps`` (the paper's lambda) > 0; scheme ``wr``."""
    lr_s, t_s = schedules_of(lr, temperature)
    rho = float(rho)
    if not 0 < rho < 1:
        raise ValueError(f"rho (pSGLD's decay of the squared-gradient average) = {rho!r} is out of range; "
                         "allowed: 0 < rho < 1 (e.g. 0.99)")
    eps = check_positive("eps (pSGLD's lambda, added to sqrt(V))", eps)
    estimate = minibatch_gradient(problem)
    scheduled = not (lr_s.constant and t_s.constant)

    def init(position):
        problem.check_params(position)
        return PSGLDState(position, torch.zeros_like(position), step_counter(position) if scheduled else None)

    def step(state, batch_indices, generator):
        lr_n = schedule_value(lr_s, state.step, state.position)
        t_n = schedule_value(t_s, state.step, state.position)
        g = estimate(state.position, batch_indices)
        position, square_avg = rmsprop_langevin_update(state.position, state.square_avg, g, lr_n, t_n, rho, eps,
                                                       generator)
        return PSGLDState(position, square_avg, None if state.step is None else state.step + 1), StepInfo()

    return Kernel(name="psgld", lr=lr_s.maximum, temperature=t_s.maximum, scheme="wr", init=init, step=step,
                  settings={"rho": rho, "eps": eps, **schedule_settings(lr_s, t_s)},
                  lr_limit=lambda problem_, scheme: None)
