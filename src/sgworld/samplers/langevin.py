"""Stochastic-gradient Langevin kernel shared by SGD, SGLD, SGWORLD and full-batch ULA.

``w_{n+1} = w_n - lr * grad L_{B_n}(w_n) + sqrt(2 lr T) xi_n``; which minibatches ``B_n`` are used
(the scheme) is the only difference between SGLD (``wr``) and SGWORLD (``wor``); ULA uses the full
gradient (``B_n`` = all data). Reference: arXiv 2306.03521 (Adhikari et al.).
"""

from __future__ import annotations

import torch

from .._checks import check_nonnegative, check_positive
from ..problems import Problem
from .base import Kernel, SamplerState, StepInfo, langevin_update


def stochastic_gradient_kernel(problem: Problem, lr: float, temperature: float, scheme: str | None,
                               name: str) -> Kernel:
    lr = check_positive("lr", lr)
    temperature = check_nonnegative("temperature", temperature)

    def init(position):
        return SamplerState(problem.check_params(position))

    def step(state, batch_indices, generator):
        gradient = problem.batch_grad(state.position, batch_indices)
        return SamplerState(langevin_update(state.position, gradient, lr, temperature, generator)), StepInfo()

    def block(position, indices, noise):
        steps = (indices if indices is not None else noise).shape[0]
        out = []
        for s in range(steps):
            gradient = problem.batch_grad(position, None if indices is None else indices[s])
            position = langevin_update(position, gradient, lr, temperature, None, None if noise is None else noise[s])
            out.append(position)
        return torch.stack(out)

    return Kernel(name=name, lr=lr, temperature=temperature, scheme=scheme, init=init, step=step, block=block)
