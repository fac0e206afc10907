"""Hamiltonian Monte Carlo with partial momentum refresh (Horowitz 1991; Neal 2011, section 5.5.3).

One step for every chain, in the notation of :mod:`sgworld.samplers.hamiltonian`
(Sohl-Dickstein, Mudigonda & DeWeese 2014, section 3):

1. ``u ~ U(0, 1)``; propose ``L zeta`` (M leapfrog steps of size eps);
2. accept if ``log u < H(zeta) - H(L zeta)``; otherwise flip the momentum, ``zeta <- F zeta``;
3. partial refresh ``v <- sqrt(1 - beta) v + sqrt(beta) n`` (``beta = 1``: the textbook HMC resample).

The flip on rejection makes the step an exact target-preserving map for every beta; with beta < 1
the momentum persists across steps, and every rejection reverses the chain's direction (what
look-ahead HMC, :mod:`sgworld.samplers.lahmc`, reduces). Target ``exp(-L/T)`` with ``E = L/T``.
Each step costs M gradient evaluations per chain (the gradient at the current point is cached).
The first step draws the momentum afresh (``init`` takes no random numbers).
"""

from __future__ import annotations

import torch

from ..problems import Problem
from .base import Kernel, StepInfo
from .hamiltonian import (
    Phase, check_hamiltonian_settings, draw_momentum, flip, hamiltonian, leapfrog, refresh, select, uniform,
)

HMCState = Phase  # position, momentum (None before the first step), loss, grad


def init_phase(problem: Problem, position: torch.Tensor) -> Phase:
    """The kernels' initial state: L and grad L at ``position``; the momentum is drawn at the first step."""
    problem.check_params(position)
    return Phase(position, None, problem.loss(position), problem.grad(position))


def with_momentum(state: Phase, generator) -> Phase:
    """The state with a fresh momentum ``n ~ N(0, I)`` if it has none yet (the first step)."""
    if state.momentum is not None:
        return state
    return state._replace(momentum=draw_momentum(state.position.shape, state.position, generator))


def hmc(problem: Problem, lr: float, temperature: float = 1.0, *, leapfrog_steps: int = 10,
        beta: float = 1.0) -> Kernel:
    """HMC kernel: leapfrog step ``eps = lr``, ``leapfrog_steps`` M, refresh ``beta`` in (0, 1]."""
    eps, temperature, steps, beta = check_hamiltonian_settings(lr, temperature, leapfrog_steps, beta)

    def init(position):
        return init_phase(problem, position)

    def step(state, batch_indices, generator):
        z = with_momentum(state, generator)
        log_u = torch.log(uniform(z.position.shape[0], z.position, generator))
        proposal = leapfrog(problem, z, eps, steps, temperature)
        log_ratio = hamiltonian(z.loss, z.momentum, temperature) - hamiltonian(proposal.loss, proposal.momentum,
                                                                              temperature)
        accept = log_u < log_ratio  # NaN / -inf (a non-finite proposal) is a rejection
        new = select(accept, proposal, flip(z))
        new = new._replace(momentum=refresh(new.momentum, beta, generator))
        k = accept.shape[0]
        kinds = torch.stack([~accept, accept], 1).long()  # F, L
        return new, StepInfo(accepted=accept, grad_evals=torch.full((k,), steps, dtype=torch.long),
                             transitions=kinds, transition_names=("F", "L"))

    return Kernel(name="hmc", lr=eps, temperature=temperature, scheme=None, init=init, step=step)
