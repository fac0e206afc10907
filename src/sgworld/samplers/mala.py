"""MALA: the full-batch Langevin proposal with a Metropolis–Hastings correction; exact target.

Proposal ``w' = w - lr grad L(w) + sqrt(2 lr T) xi``, i.e. ``q(w'|w) = N(w - lr grad L(w), 2 lr T I)``;
accepted with probability ``min(1, exp(-(L(w') - L(w))/T) q(w|w') / q(w'|w))``. The stationary
law is exactly ``exp(-L/T)`` for any lr; the acceptance rate is reported per chain.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._checks import check_positive
from ..problems import Problem
from ..rng import uniform_like
from .base import Kernel, StepInfo, langevin_update


class MALAState(NamedTuple):
    position: torch.Tensor  # (K, p)
    loss: torch.Tensor      # (K,)  L(position)
    grad: torch.Tensor      # (K, p) grad L(position)


def mala(problem: Problem, lr: float, temperature: float = 1.0) -> Kernel:
    lr = check_positive("lr", lr)
    temperature = check_positive("temperature (MALA needs T > 0)", temperature)

    def loss_and_grad(position):
        return problem.loss(position), problem.grad(position)

    def init(position):
        problem.check_params(position)
        return MALAState(position, *loss_and_grad(position))

    def log_q(to, frm, grad_frm):  # log q(to | frm) up to a constant
        return -((to - frm + lr * grad_frm) ** 2).sum(1) / (4 * lr * temperature)

    def step(state, batch_indices, generator):
        proposal = langevin_update(state.position, state.grad, lr, temperature, generator)
        loss_p, grad_p = loss_and_grad(proposal)
        log_ratio = (state.loss - loss_p) / temperature \
            + log_q(state.position, proposal, grad_p) - log_q(proposal, state.position, state.grad)
        u = uniform_like(state.position, generator)
        # NaN log-ratios (a non-finite proposal) are rejected.
        accept = torch.log(u) < log_ratio
        keep = accept.unsqueeze(1)
        new = MALAState(torch.where(keep, proposal, state.position),
                        torch.where(accept, loss_p, state.loss),
                        torch.where(keep, grad_p, state.grad))
        return new, StepInfo(accepted=accept)

    return Kernel(name="mala", lr=lr, temperature=temperature, scheme=None, init=init, step=step)
