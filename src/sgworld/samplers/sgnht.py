"""SGNHT: the stochastic-gradient Nose-Hoover thermostat (Ding et al. 2014), state (w, v, zeta).

In the "SGD with momentum" form of SGHMC (:mod:`sgworld.samplers.sghmc`), with the friction replaced
by a thermostat ``zeta`` per chain that adapts to the gradient noise
(:func:`~sgworld.samplers.integrators.sgnht_update`)::

    v' = (1 - zeta) v - lr g(w) + sqrt(2 a lr T) xi,    w' = w + v',    zeta' = zeta + |v'|^2 / p - lr T,

``a > 0`` the injected diffusion, ``zeta_0 = a`` and ``v_0 = 0`` unless given. At stationarity
``E[zeta'] = E[zeta]``, so ``E|v'|^2 / p = lr T`` exactly, whatever the gradient noise: the thermostat
enforces the kinetic temperature. The scheme is not affine (zeta multiplies v).

Accuracy (derived for a quadratic L with Hessian H; stated and tested in tests/samplers/test_family.py):
at a fixed friction zeta, the recursion is SGHMC with ``alpha = zeta`` and injected noise
``2 a lr T = 2 zeta lr T_eff``, whose stationary law as ``lr -> 0`` has ``Cov[w] = T_eff H^-1`` and
``E|v|^2 / p = lr T_eff 2 / (2 - zeta)``. The thermostat sets the latter to ``lr T``, so
``zeta (2 - zeta) = 2 a`` (plus the gradient-noise share ``O(lr)``), i.e. ``zeta* = 1 - sqrt(1 - 2 a)`` and
``Cov[w] -> T (1 - zeta*/2) H^-1 = T (1 + sqrt(1 - 2 a)) / 2 H^-1``: a relative bias of about ``a / 2`` at
small lr besides the O(lr) discretisation error. Ding et al.'s parametrisation ties ``a`` to the step
(``a = A eps = A sqrt(lr)``), so the bias vanishes as ``lr -> 0``; take ``a`` small (or scale it with
``sqrt(lr)``) for accurate moments. ``a < 1/2`` is required for the fixed point to exist.

Mapping (``eps`` their step size): Ding et al. (2014) Algorithm 1 with ``h = eps``, ``A``: ``lr = eps^2``,
``a = A eps``, ``zeta = eps xi``, ``v = eps p``. BlackJAX ``blackjax.sgnht(grad_estimator, alpha=A, beta=b)``
with ``step_size = eps`` (blackjax/sgmcmc/diffusions.py; position first with the old momentum, then
``r' = (1 - xi eps) r + eps grad log p + sqrt(eps T (2 A - eps T b)) n``, ``xi' = xi + eps (|r'|^2/d - T)``):
``lr = eps^2``, ``a = eps A`` (``b = 0``), ``zeta = eps xi``, ``v = eps r``. posteriors
``posteriors.sgmcmc.sgnht.build(log_posterior, lr=eps, alpha=A, sigma=1, temperature=T_p)``: the same
with ``T = T_p`` for ``log_posterior = -L``, except that its thermostat uses the old momentum ``m_t``;
for its recommended ``log_posterior = -L / N``, ``T_p = 1 / N``: ``lr = eps^2 / N``, ``T = N T_p``.

Reference: N. Ding, Y. Fang, R. Babbush, C. Chen, R. D. Skeel, H. Neven, "Bayesian sampling using
stochastic gradient thermostats", NeurIPS 2014.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..problems import Problem
from ..schedules import schedule_value
from .base import Kernel, StepInfo
from .gradients import minibatch_gradient
from .integrators import sgnht_update
from .langevin import schedule_settings, schedules_of, step_counter
from .sghmc import initial_momentum_of, momentum_settings, position_and_momentum


class SGNHTState(NamedTuple):
    position: torch.Tensor        # (K, p)
    momentum: torch.Tensor        # (K, p)
    thermostat: torch.Tensor      # (K,)   zeta, one per chain
    step: torch.Tensor | None     # (K,) int64 steps taken, when lr or T is a schedule


def check_diffusion(a) -> float:
    a = float(a)
    if not 0 < a < 0.5:
        raise ValueError(f"a (SGNHT's injected diffusion) = {a!r} is out of range; allowed: 0 < a < 0.5 (the "
                         "thermostat's fixed point zeta(2 - zeta) = 2a needs a < 1/2; small a is accurate)")
    return a


def sgnht(problem: Problem, lr, temperature=1.0, *, a: float = 0.01, initial_thermostat: float | None = None,
          initial_momentum=None, record_momentum: bool = False) -> Kernel:
    """SGNHT kernel (module docstring): diffusion ``a`` in (0, 0.5), ``zeta_0 = initial_thermostat`` (default a).

    ``lr`` and ``temperature`` are numbers or schedules; every index scheme works (the thermostat adapts to
    the gradient noise). Default scheme ``wr``. ``record_momentum=True`` records ``[w, v]`` per draw (2p).
    """
    lr_s, t_s = schedules_of(lr, temperature)
    a = check_diffusion(a)
    zeta0 = a if initial_thermostat is None else float(initial_thermostat)
    if not -1.0 < zeta0 < 2.0:
        raise ValueError(f"initial_thermostat = {zeta0!r} is out of range; allowed: -1 < zeta_0 < 2 (|1 - zeta_0| < 1; "
                         "default a)")
    estimate = minibatch_gradient(problem)
    scheduled = not (lr_s.constant and t_s.constant)
    settings = {"a": a, "initial_thermostat": zeta0, **schedule_settings(lr_s, t_s)}
    settings.update(momentum_settings(initial_momentum, record_momentum))

    def init(position):
        problem.check_params(position)
        return SGNHTState(position, initial_momentum_of(problem, initial_momentum, position),
                          torch.full((position.shape[0],), zeta0, dtype=position.dtype, device=position.device),
                          step_counter(position) if scheduled else None)

    def step(state, batch_indices, generator):
        lr_n = schedule_value(lr_s, state.step, state.position)
        t_n = schedule_value(t_s, state.step, state.position)
        g = estimate(state.position, batch_indices)
        position, momentum, zeta = sgnht_update(state.position, state.momentum, state.thermostat, g, lr_n, t_n, a,
                                                generator)
        return SGNHTState(position, momentum, zeta, None if state.step is None else state.step + 1), StepInfo()

    return Kernel(name="sgnht", lr=lr_s.maximum, temperature=t_s.maximum, scheme="wr", init=init, step=step,
                  settings=settings, lr_limit=lambda problem_, scheme: None,
                  record=position_and_momentum if record_momentum else None)
