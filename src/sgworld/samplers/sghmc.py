"""SGHMC: stochastic-gradient Hamiltonian Monte Carlo (Chen, Fox & Guestrin 2014), state (w, v).

The "SGD with momentum" form of Chen et al. (2014, eq. 15), momentum first and then the position with
the new momentum (:func:`~sgworld.samplers.integrators.sghmc_update`)::

    v' = (1 - alpha) v - lr g(w) + sqrt(2 (alpha - beta_hat) lr T) xi,     w' = w + v',

``g`` the minibatch gradient of L (docs/concepts.md), ``alpha`` in (0, 1] the friction and ``beta_hat``
in [0, alpha) the estimate of the gradient-noise term: the minibatch noise adds ``lr^2 Cov[g]`` to v per
step, i.e. ``2 beta lr T`` with ``beta = lr B / (2 T)``, ``B`` the (scalar) gradient-noise variance; 0 is
the usual choice. The initial momentum is ``v_0 = 0`` unless ``initial_momentum`` is given. As
``lr -> 0`` the stationary law has ``w ~ exp(-L/T)``; the momentum ``v`` (the last displacement) has
stationary covariance ``lr T I`` to leading order in alpha (exactly ``lr T 2 / (2 - alpha) I`` at a
quadratic minimum as ``lr -> 0``). ``alpha = 1``, ``beta_hat = 0`` is SGLD exactly. On a quadratic L with
Hessian H the mean dynamics are stable iff ``lr h_max < 2 (2 - alpha)``; the driver refuses larger lr
where ``h_max`` is known.

Mapping to other parametrisations (mass ``M = I``; ``eps`` is their step size):

* Chen et al. (2014) eq. 15: ``eta = lr``, ``alpha = alpha``, ``beta_hat = beta_hat``, ``v = v``, their
  ``U`` our ``L`` at ``T = 1``; from their Hamiltonian form (eq. 13, step ``eps``, friction ``C``):
  ``lr = eps^2``, ``alpha = eps C``, ``v = eps r``.
* BlackJAX ``blackjax.sghmc(grad_estimator, num_integration_steps, alpha=a, beta=b)`` with
  ``step_size = eps`` and ``temperature = T`` (blackjax/sgmcmc/diffusions.py:
  ``x' = x + eps r``, ``r' = (1 - eps a) r + eps grad log p(x) + sqrt(eps T (2 a - eps T b)) n``):
  ``lr = eps^2``, ``alpha = eps a``, ``beta_hat = eps^2 T b / 2``, ``v = eps r``, ``grad log p = -grad L``.
  Two differences: BlackJAX moves the position with the old momentum before updating the momentum at
  the old position (the same continuous-time limit, different discrete chains), and it redraws the
  momentum from N(0, I) at the start of every call, i.e. every ``num_integration_steps`` steps.
* posteriors ``posteriors.sgmcmc.sghmc.build(log_posterior, lr=eps, alpha=a, beta=b, sigma=1,
  temperature=T_p)`` (the same position-first order as BlackJAX): with ``log_posterior = -L`` this is
  ``lr = eps^2``, ``alpha = eps a``, ``beta_hat = eps^2 T_p b / 2``, ``v = eps m``, ``T = T_p``. posteriors
  recommends ``log_posterior = -L / N`` (mean log-likelihood + log prior / N) with ``T_p = 1 / N``: then
  ``lr = eps^2 / N``, ``alpha = eps a``, ``T = N T_p`` (1 for the posterior), ``v = eps m``.

Reference: T. Chen, E. B. Fox, C. Guestrin, "Stochastic gradient Hamiltonian Monte Carlo", ICML 2014.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._checks import check_positive
from ..batching import STEPWISE_SCHEMES  # schemes whose gradient noise is independent from step to step
from ..problems import Problem
from ..schedules import schedule_value
from .base import Kernel, StepInfo, describe_tensor
from .gradients import minibatch_gradient
from .integrators import sghmc_update
from .langevin import schedule_settings, schedules_of, step_counter


class SGHMCState(NamedTuple):
    position: torch.Tensor        # (K, p)
    momentum: torch.Tensor        # (K, p)  v: the last step's displacement w_n - w_{n-1}
    step: torch.Tensor | None     # (K,) int64 steps taken, when lr or T is a schedule


def check_friction(alpha, beta_hat) -> tuple[float, float]:
    """``alpha`` in (0, 1] and ``beta_hat`` in [0, alpha), or a one-line error naming the range."""
    alpha = check_positive("alpha (friction)", alpha)
    if alpha > 1:
        raise ValueError(f"alpha (friction) = {alpha!r} is out of range; allowed: 0 < alpha <= 1 (momentum decay "
                         "1 - alpha per step)")
    beta_hat = float(beta_hat)
    if not 0 <= beta_hat < alpha:
        raise ValueError(f"beta_hat (gradient-noise estimate) = {beta_hat!r} is out of range; allowed: 0 <= beta_hat "
                         f"< alpha = {alpha!r}")
    return alpha, beta_hat


def momentum_settings(initial_momentum, record_momentum: bool) -> dict:
    """The metadata of the momentum options shared by SGHMC and SGNHT (JSON: the tensor described)."""
    out = {}
    if initial_momentum is not None:
        out["initial_momentum"] = describe_tensor(torch.as_tensor(initial_momentum))
    if record_momentum:
        out["record_momentum"] = True
    return out


def initial_momentum_of(problem: Problem, momentum, position: torch.Tensor) -> torch.Tensor:
    """(K, p) initial momenta: zeros, or ``momentum`` given as (p,) or (K, p)."""
    if momentum is None:
        return torch.zeros_like(position)
    v = torch.as_tensor(momentum, dtype=position.dtype, device=position.device)
    if v.shape not in ((problem.dim,), tuple(position.shape)):
        raise ValueError(f"initial_momentum must have shape ({problem.dim},) or {tuple(position.shape)}, "
                         f"got {tuple(v.shape)}")
    return v.expand_as(position).clone()


def position_and_momentum(state) -> torch.Tensor:
    """A momentum sampler's record when momenta are asked for: ``[w, v]`` (K, 2p), positions first."""
    return torch.cat([state.position, state.momentum], 1)


def sghmc(problem: Problem, lr, temperature=1.0, *, alpha: float = 0.1, beta_hat: float = 0.0,
          initial_momentum=None, record_momentum: bool = False) -> Kernel:
    """SGHMC kernel (module docstring): friction ``alpha`` in (0, 1], noise estimate ``beta_hat`` in [0, alpha).

    ``lr`` and ``temperature`` are numbers or schedules. Default scheme ``wr``; with ``beta_hat > 0`` only
    the step-wise schemes ``wr`` and ``iid`` (the correction assumes gradient noise independent between
    steps). The trace records the positions; with ``record_momentum=True`` each draw is ``[w, v]`` (2p
    numbers: ``trace.draws[..., :p]`` the positions, ``[..., p:]`` the momenta).
    """
    lr_s, t_s = schedules_of(lr, temperature)
    alpha, beta_hat = check_friction(alpha, beta_hat)
    estimate = minibatch_gradient(problem)
    scheduled = not (lr_s.constant and t_s.constant)
    settings = {"alpha": alpha, "beta_hat": beta_hat, **schedule_settings(lr_s, t_s)}
    settings.update(momentum_settings(initial_momentum, record_momentum))

    def init(position):
        problem.check_params(position)
        return SGHMCState(position, initial_momentum_of(problem, initial_momentum, position),
                          step_counter(position) if scheduled else None)

    def step(state, batch_indices, generator):
        lr_n = schedule_value(lr_s, state.step, state.position)
        t_n = schedule_value(t_s, state.step, state.position)
        g = estimate(state.position, batch_indices)
        position, momentum = sghmc_update(state.position, state.momentum, g, lr_n, t_n, alpha, beta_hat, generator)
        return SGHMCState(position, momentum, None if state.step is None else state.step + 1), StepInfo()

    def lr_limit(problem_, scheme):
        plain = getattr(problem_, "lr_limit", None)
        base = plain(scheme) if plain is not None else None
        return None if base is None else (2.0 - alpha) * base

    def check_scheme(scheme):
        if beta_hat > 0 and scheme not in STEPWISE_SCHEMES:
            raise ValueError(f"sghmc with beta_hat = {beta_hat!r} > 0 cannot use scheme {scheme!r}: beta_hat corrects "
                             "for gradient noise independent from step to step; use scheme 'wr' or 'iid', or "
                             "beta_hat=0")

    return Kernel(name="sghmc", lr=lr_s.maximum, temperature=t_s.maximum, scheme="wr", init=init, step=step,
                  settings=settings, lr_limit=lr_limit, check_scheme=check_scheme,
                  record=position_and_momentum if record_momentum else None)
