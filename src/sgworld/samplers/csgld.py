"""Cyclical SGLD (Zhang, Li, Zhang, Chen & Wilson 2020): the update rule with cyclical lr and temperature.

``w_{n+1} = w_n - lr_n g_n + sqrt(2 lr_n T_n) xi_n`` with (:mod:`sgworld.schedules`)

    lr_n = lr_0 / 2 (cos(pi mod(n, C) / C) + 1),    C = ceil(total_steps / cycles),
    T_n  = 0 while mod(n, C) / C < exploration (SGD: the exploration stage), T afterwards (sampling).

Each cycle starts with large steps that leave the current mode and ends with small ones that settle
into one, so over many cycles the chains visit several modes of a multimodal target where SGLD with a
small constant step stays in the first it finds. Draws from the sampling stages are the samples (Zhang
et al. collect them at the end of each cycle): record with ``thin`` a divisor of C and keep the draws whose
step is in a sampling stage (``CyclicalPhase.sampling``), or ``thin = C`` for one draw per cycle end.
``lr`` here is ``lr_0``; the state carries each chain's step count n.

Reference: R. Zhang, C. Li, J. Zhang, C. Chen, A. G. Wilson, "Cyclical stochastic gradient MCMC for
Bayesian deep learning", ICLR 2020.
"""

from __future__ import annotations

from ..problems import Problem
from ..schedules import Cyclical, CyclicalPhase, Schedule
from .base import Kernel
from .langevin import stochastic_gradient_kernel


def csgld(problem: Problem, lr: float, temperature: float = 1.0, *, total_steps: int | None = None, cycles: int = 4,
          exploration: float = 0.5) -> Kernel:
    """Cyclical SGLD kernel: ``lr`` is ``lr_0`` (> 0), ``temperature`` the sampling-stage T; ``total_steps`` the
    length of the run (``burn_in + num_draws * thin`` in ``sample``), ``cycles`` >= 1, ``exploration`` in
    [0, 1) the fraction of each cycle run as SGD. Default scheme ``wr``."""
    if isinstance(lr, Schedule) or isinstance(temperature, Schedule):
        raise ValueError("csgld sets its own cyclical lr and temperature schedules: pass numbers (lr = lr_0, "
                         "temperature = the sampling-stage T), or use 'sgld' with lr=Cyclical(...)")
    if total_steps is None:
        raise ValueError("csgld needs total_steps: pass kernel_options={'total_steps': burn_in + num_draws * thin} "
                         "(the cycle length is ceil(total_steps / cycles))")
    lr_schedule = Cyclical(lr, total_steps, cycles)
    t_schedule = CyclicalPhase(temperature, total_steps, cycles, exploration)
    return stochastic_gradient_kernel(problem, lr_schedule, t_schedule, "wr", "csgld")
