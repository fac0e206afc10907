"""Markov-jump HMC: HMC as a continuous-time Markov jump process (Berger, Mudigonda, DeWeese &
Sohl-Dickstein 2015, "A Markov Jump Process for More Efficient Hamiltonian Monte Carlo",
arXiv 1509.03808).

From ``zeta = (x, v)`` the process jumps to ``L zeta`` (M leapfrog steps), to ``F zeta`` (momentum
flip) or to ``(x, n)``, ``n ~ N(0, I)`` (momentum resample), with the rates

    Gamma_L = exp((H(zeta) - H(L zeta)) / 2),      Gamma_Linv = exp((H(zeta) - H(L^-1 zeta)) / 2),
    Gamma_F = max(0, Gamma_Linv - Gamma_L),        Gamma_R = gamma = -log(1 - beta) / 2,

where ``L^-1 = F L F``. The inflow into zeta, ``max(sqrt(p p_+), sqrt(p p_-))`` (p_+- the densities at
``L^+-1 zeta``), equals the outflow ``p max(Gamma_L, Gamma_Linv)``, so ``p ~ exp(-H)`` is the stationary
law of the process in continuous time: time averages are exact. ``gamma`` matches the momentum
decorrelation ``sqrt(1 - beta)`` of one discrete HMC step per unit time; ``beta`` must be in (0, 1)
(no refresh, beta = 0, is not ergodic; beta = 1 would resample at an infinite rate).

The jump sequence (the embedded chain) has stationary law ``p Gamma_tot``, ``Gamma_tot =
max(Gamma_L, Gamma_Linv) + gamma``, not p. The kernel therefore offers two readings:

- ``time_step = dt`` (default 1.0): every step advances each chain by ``dt`` units of time, making
  as many jumps as its exponential holding times fit (a different number per chain, masked, no loop
  over chains; exact by memorylessness). The draws are the process at uniform times, so plain
  averages over the trace are the time-weighted averages, i.e. exact.
- ``time_step = None``: one jump per step (the embedded chain); ``StepInfo.weight`` is the expected
  holding time ``1 / Gamma_tot`` of the new state, and :func:`time_weighted_moments` gives the exact
  mean and covariance. Unweighted averages of this chain are biased (shown in the tests).

Both neighbours ``L zeta`` and ``L^-1 zeta`` are cached in the state: after an L jump the new backward
neighbour is the old state (M gradients for the new forward one), after an F jump both neighbours are
the flipped old ones (no gradients), after a resample both are new (2 M). Rates are kept as logs
(``Gamma_F`` via ``expm1``): no overflow, and non-finite energies give rate 0.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from .._checks import check_positive
from ..problems import Problem
from .base import Kernel, StepInfo
from .hamiltonian import (Phase, check_hamiltonian_settings, draw_momentum, flip, hamiltonian, leap, log1mexp, select,
                          uniform)

TRANSITION_NAMES = ("L", "F", "R")


class MJHMCState(NamedTuple):
    position: torch.Tensor                 # (K, p)
    momentum: torch.Tensor | None          # (K, p); None before the first step
    loss: torch.Tensor                     # (K,)
    grad: torch.Tensor                     # (K, p)
    forward: tuple | None = None           # Phase of L zeta
    backward: tuple | None = None          # Phase of L^-1 zeta = F L F zeta


def refresh_rate(beta: float) -> float:
    """``gamma = -log(1 - beta) / 2``: the resample rate whose momentum decorrelation per unit time
    equals the ``sqrt(1 - beta)`` of one partial-refresh HMC step."""
    beta = float(beta)
    if not (math.isfinite(beta) and 0.0 < beta < 1.0):
        raise ValueError(f"beta = {beta!r} gives MJHMC the momentum refresh rate -log(1 - beta)/2 = "
                         f"{'0 (not ergodic)' if beta == 0 else 'infinite' if beta == 1 else 'undefined'}; "
                         "allowed: 0 < beta < 1 (e.g. beta = 0.1)")
    return -0.5 * math.log1p(-beta)


def log_rates(h: torch.Tensor, h_forward: torch.Tensor, h_backward: torch.Tensor, log_gamma: float):
    """``(log Gamma_L, log Gamma_F, log Gamma_R, log Gamma_tot)``, each (k,), from the energies of zeta,
    ``L zeta`` and ``L^-1 zeta``; a non-finite neighbour energy gives that jump rate 0."""
    clean = lambda t: torch.nan_to_num(t, nan=-math.inf)
    log_l = clean(0.5 * (h - h_forward))
    log_linv = clean(0.5 * (h - h_backward))
    log_f = torch.where(log_linv > log_l, log_linv + log1mexp(torch.clamp(log_l - log_linv, max=0.0)),
                        torch.full_like(log_l, -math.inf))
    log_r = torch.full_like(log_l, log_gamma)
    log_total = torch.logaddexp(torch.maximum(log_l, log_linv), log_r)
    return log_l, log_f, log_r, log_total


def time_weighted_moments(positions, weights) -> tuple[np.ndarray, np.ndarray]:
    """Mean (p,) and covariance (p, p) of draws ``positions`` (..., p) weighted by their holding times
    ``weights`` (...): ``E_p f ~= sum_i w_i f(x_i) / sum_i w_i`` (the embedded chain's estimator)."""
    x = np.asarray(positions, dtype=float).reshape(-1, np.shape(positions)[-1])
    w = np.asarray(weights, dtype=float).reshape(-1)
    if w.shape[0] != x.shape[0]:
        raise ValueError(f"weights must match the draws: {w.shape[0]} weights for {x.shape[0]} draws")
    w = w / w.sum()
    mean = w @ x
    centred = x - mean
    return mean, (centred * w[:, None]).T @ centred


def mjhmc(problem: Problem, lr: float, temperature: float = 1.0, *, leapfrog_steps: int = 10, beta: float = 0.1,
          time_step: float | None = 1.0) -> Kernel:
    """Markov-jump HMC kernel: leapfrog step ``eps = lr``, M = ``leapfrog_steps``, resample rate
    ``-log(1 - beta)/2`` with beta in (0, 1), and ``time_step`` units of time per step (None: one jump)."""
    eps, temperature, steps, _ = check_hamiltonian_settings(lr, temperature, leapfrog_steps, 1.0)
    log_gamma = math.log(refresh_rate(beta))
    if time_step is not None:
        time_step = check_positive("time_step (units of process time per step; None for one jump per step)",
                                   time_step)

    def init(position):
        problem.check_params(position)
        return MJHMCState(position, None, problem.loss(position), problem.grad(position))

    energy = lambda z: hamiltonian(z.loss, z.momentum, temperature)

    def neighbours(z: Phase, active: torch.Tensor) -> tuple[Phase, Phase]:
        """``L z`` and ``L^-1 z = F L F z`` for the active chains (2 M gradients each)."""
        return leap(problem, z, active, eps, steps, temperature), flip(leap(problem, flip(z), active, eps, steps,
                                                                           temperature))

    def rates(z: Phase, fwd: Phase, bwd: Phase):
        return log_rates(energy(z), energy(fwd), energy(bwd), log_gamma)

    def jump(z: Phase, fwd: Phase, bwd: Phase, active: torch.Tensor, log_r, generator):
        """One jump for the active chains: returns the new (z, fwd, bwd), the kind (K,) (-1: no jump), and
        the gradients spent (K,)."""
        log_l, log_f, _, log_total = log_r
        k = z.position.shape[0]
        u = uniform(k, z.position, generator)
        p_l, p_f = torch.exp(log_l - log_total), torch.exp(log_f - log_total)
        kind = torch.where(u < p_l, 0, torch.where(u < p_l + p_f, 1, 2))
        kind = torch.where(active, kind, -1)
        go_l, go_f, go_r = kind == 0, kind == 1, kind == 2
        # L: zeta <- L zeta, new backward = old zeta, new forward = L (L zeta)
        new_fwd_l = leap(problem, fwd, go_l, eps, steps, temperature)
        # R: zeta <- (x, n), both neighbours anew
        fresh = z._replace(momentum=torch.where(go_r.unsqueeze(1),
                                                draw_momentum(z.momentum.shape, z.momentum, generator), z.momentum))
        fwd_r, bwd_r = neighbours(fresh, go_r)
        new_z = select(go_l, fwd, select(go_f, flip(z), fresh))
        # chains that do not jump keep their neighbours
        new_fwd = select(go_l, new_fwd_l, select(go_f, flip(bwd), select(go_r, fwd_r, fwd)))
        new_bwd = select(go_l, z, select(go_f, flip(fwd), select(go_r, bwd_r, bwd)))
        cost = steps * (go_l.long() + 2 * go_r.long())
        return new_z, new_fwd, new_bwd, kind, cost

    def step(state, batch_indices, generator):
        k, device = state.position.shape[0], state.position.device
        grad_evals = torch.zeros(k, dtype=torch.long, device=device)
        z = Phase(state.position, state.momentum, state.loss, state.grad)
        if state.momentum is None:  # first step: draw the momentum, find both neighbours
            z = z._replace(momentum=draw_momentum(z.position.shape, z.position, generator))
            fwd, bwd = neighbours(z, torch.ones(k, dtype=torch.bool, device=device))
            grad_evals += 2 * steps
        else:
            fwd, bwd = Phase(*state.forward), Phase(*state.backward)
        counts = torch.zeros(k, len(TRANSITION_NAMES), dtype=torch.long, device=device)
        log_r = rates(z, fwd, bwd)
        if time_step is None:
            active = torch.ones(k, dtype=torch.bool, device=device)
            z, fwd, bwd, kind, cost = jump(z, fwd, bwd, active, log_r, generator)
            grad_evals += cost
            counts.scatter_add_(1, kind.clamp(min=0).unsqueeze(1), active.long().unsqueeze(1))
            log_r = rates(z, fwd, bwd)
            weight = torch.exp(-log_r[3])
        else:
            log_left = torch.full((k,), math.log(time_step), dtype=z.position.dtype, device=device)
            running = torch.ones(k, dtype=torch.bool, device=device)  # chains whose current holding time is still unknown
            while True:
                # holding time tau ~ Exp(Gamma_tot); jump if it ends within the time left
                e = -torch.log1p(-uniform(k, z.position, generator))  # Exp(1)
                log_tau = torch.log(e) - log_r[3]
                active = running & (log_tau < log_left)
                running = active
                if not bool(active.any()):
                    break
                log_left = torch.where(active, log_left + log1mexp(torch.clamp(log_tau - log_left, max=0.0)),
                                       log_left)
                z, fwd, bwd, kind, cost = jump(z, fwd, bwd, active, log_r, generator)
                grad_evals += cost
                counts.scatter_add_(1, kind.clamp(min=0).unsqueeze(1), active.long().unsqueeze(1))
                log_r = rates(z, fwd, bwd)
            weight = None
        new = MJHMCState(z.position, z.momentum, z.loss, z.grad, tuple(fwd), tuple(bwd))
        return new, StepInfo(grad_evals=grad_evals, transitions=counts, transition_names=TRANSITION_NAMES,
                             weight=weight)

    return Kernel(name="mjhmc", lr=eps, temperature=temperature, scheme=None, init=init, step=step)
