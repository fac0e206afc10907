"""Stochastic-gradient Langevin kernel shared by SGD, SGLD, SGWORLD, SGLD-CV, cyclical SGLD and ULA.

``w_{n+1} = w_n - lr_n P g_n + sqrt(2 lr_n T_n) C xi_n`` (:func:`~sgworld.samplers.integrators.langevin_update`)
with a gradient estimate ``g_n`` (:mod:`sgworld.samplers.gradients`: ``grad L_{B_n}(w_n)`` or a control
variate) and an optional constant preconditioner ``P = C C^T``. Which minibatches ``B_n`` are used (the
scheme) is the only difference between SGLD (``wr``) and SGWORLD (``wor``); ULA uses the full gradient
(``B_n`` = all data). ``lr`` and ``T`` are numbers or schedules (:mod:`sgworld.schedules`); with a
schedule the state carries the step count n of each chain. Reference: arXiv 2306.03521 (Adhikari et al.).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..problems import Problem
from ..schedules import as_schedule, schedule_value
from .base import Kernel, SamplerState, StepInfo, describe_tensor
from .gradients import GradientEstimator, minibatch_gradient
from .integrators import Preconditioner, langevin_update


class ScheduledState(NamedTuple):
    position: torch.Tensor  # (K, p)
    step: torch.Tensor      # (K,) int64: steps taken (the schedules' n)


def schedules_of(lr, temperature):
    """``(lr schedule, T schedule)`` from numbers or schedules, checked (lr > 0, T >= 0)."""
    return as_schedule("lr", lr), as_schedule("temperature", temperature, allow_zero=True)


def schedule_settings(lr_schedule, t_schedule) -> dict:
    """The schedules' descriptions for the trace metadata (empty for constants)."""
    out = {}
    if not lr_schedule.constant:
        out["lr_schedule"] = lr_schedule.describe()
    if not t_schedule.constant:
        out["temperature_schedule"] = t_schedule.describe()
    return out


def step_counter(position: torch.Tensor) -> torch.Tensor:
    """(K,) zeros: the step counts of K chains that have not moved yet."""
    return torch.zeros(position.shape[0], dtype=torch.long, device=position.device)


def make_preconditioner(problem: Problem, preconditioner) -> Preconditioner | None:
    if preconditioner is None or isinstance(preconditioner, Preconditioner):
        return preconditioner
    return Preconditioner(preconditioner, problem.dim, problem.dtype, problem.data[0].device)


def preconditioned_lr_limit(preconditioner: Preconditioner | None):
    """The kernel's step-size limit ``2 / h_max(C^T H C)`` on problems that know their constant Hessian
    (``lr P H`` has the eigenvalues of ``lr C^T H C``); without a preconditioner, the problem's own limit."""
    def limit(problem, scheme):
        plain = getattr(problem, "lr_limit", None)
        base = plain(scheme) if plain is not None else None
        if base is None or preconditioner is None:
            return base
        H = torch.as_tensor(problem.hessian(), dtype=preconditioner.factor.dtype)
        C = preconditioner.factor
        h = float(torch.linalg.eigvalsh(C.T @ H @ C)[-1])
        return 2.0 / h if h > 0 else None
    return limit


def stochastic_gradient_kernel(problem: Problem, lr, temperature, scheme: str | None, name: str, *,
                               gradient: GradientEstimator | None = None, preconditioner=None,
                               settings: dict | None = None) -> Kernel:
    """The Langevin kernel with gradient estimator ``gradient`` (default: the minibatch gradient),
    ``lr`` and ``temperature`` numbers or schedules, and an optional constant SPD ``preconditioner`` (p, p)."""
    lr_s, t_s = schedules_of(lr, temperature)
    estimate = gradient or minibatch_gradient(problem)
    precond = make_preconditioner(problem, preconditioner)
    scheduled = not (lr_s.constant and t_s.constant)
    settings = {**(settings or {}), **schedule_settings(lr_s, t_s)}
    if precond is not None:
        eig = torch.linalg.eigvalsh(precond.matrix)
        settings["preconditioner"] = {"eig_min": float(eig[0]), "eig_max": float(eig[-1]),
                                      "matrix": describe_tensor(precond.matrix)}

    if not scheduled:
        lr_c, t_c = lr_s.value, t_s.value

        def init(position):
            return SamplerState(problem.check_params(position))

        def step(state, batch_indices, generator):
            g = estimate(state.position, batch_indices)
            return SamplerState(langevin_update(state.position, g, lr_c, t_c, generator,
                                                preconditioner=precond)), StepInfo()

        def block(position, indices, noise):
            steps = (indices if indices is not None else noise).shape[0]
            out = []
            for s in range(steps):
                g = estimate(position, None if indices is None else indices[s])
                position = langevin_update(position, g, lr_c, t_c, None, None if noise is None else noise[s],
                                           preconditioner=precond)
                out.append(position)
            return torch.stack(out)
    else:
        block = None

        def init(position):
            return ScheduledState(problem.check_params(position), step_counter(position))

        def step(state, batch_indices, generator):
            lr_n = schedule_value(lr_s, state.step, state.position)
            t_n = schedule_value(t_s, state.step, state.position)
            g = estimate(state.position, batch_indices)
            position = langevin_update(state.position, g, lr_n, t_n, generator, preconditioner=precond)
            return ScheduledState(position, state.step + 1), StepInfo()

    return Kernel(name=name, lr=lr_s.maximum, temperature=t_s.maximum, scheme=scheme, init=init, step=step,
                  block=block, settings=settings, lr_limit=preconditioned_lr_limit(precond))
