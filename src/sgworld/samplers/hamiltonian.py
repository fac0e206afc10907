"""The Hamiltonian pieces shared by HMC, Look-Ahead HMC and Markov-jump HMC.

Phase-space state ``zeta = (x, v)`` of K chains, each a (K, p) tensor, with the Hamiltonian
``H(x, v) = E(x) + |v|^2 / 2`` and potential ``E(x) = L(x) / T`` (the target ``exp(-L/T)``, unit mass).
The operators of Sohl-Dickstein, Mudigonda & DeWeese (ICML 2014), section 3:

- ``L``: M leapfrog steps of size eps, each ``v -= eps/2 grad E; x += eps v; v -= eps/2 grad E``
  (volume-preserving, and ``F L F L = I``);
- ``F``: the momentum flip ``v -> -v``;
- ``R(beta)``: partial momentum refresh ``v <- sqrt(1 - beta) v + sqrt(beta) n``, ``n ~ N(0, I)``
  (their eq. 15), which leaves ``exp(-H)`` invariant; ``beta = 1`` is a full resample.

:func:`leap` applies ``L`` to a subset of the chains only (the others cost nothing), which is how the
look-ahead and jump kernels keep chains that need different numbers of leaps in one tensor program.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .._checks import check_int_range, check_positive
from ..problems import Problem
from ..rng import ChainRandom, normal_like, uniform_like


class Phase(NamedTuple):
    """Points of phase space for some chains: positions, momenta, L(x) and grad L(x)."""

    position: torch.Tensor  # (k, p)
    momentum: torch.Tensor  # (k, p)
    loss: torch.Tensor      # (k,)   L(position)
    grad: torch.Tensor      # (k, p) grad L(position)


def check_hamiltonian_settings(lr: float, temperature: float, leapfrog_steps: int, beta: float) -> tuple:
    """Validated ``(eps, T, M, beta)``: one-line errors naming the value and the allowed range."""
    lr = check_positive("step size lr (the leapfrog step eps)", lr)
    temperature = check_positive("temperature (Hamiltonian samplers need T > 0)", temperature)
    leapfrog_steps = check_int_range("leapfrog_steps", leapfrog_steps, 1)
    beta = float(beta)
    if not (math.isfinite(beta) and 0.0 < beta <= 1.0):
        raise ValueError(f"beta = {beta!r} is out of range; allowed: 0 < beta <= 1 (1 = full momentum resample)")
    return lr, temperature, leapfrog_steps, beta


def hamiltonian(loss: torch.Tensor, momentum: torch.Tensor, temperature: float) -> torch.Tensor:
    """``H = L(x)/T + |v|^2/2`` per chain, (k,). Non-finite losses give ``+inf`` (never NaN)."""
    h = loss / temperature + 0.5 * (momentum * momentum).sum(1)
    return torch.nan_to_num(h, nan=math.inf)


def leapfrog(problem: Problem, z: Phase, eps: float, steps: int, temperature: float) -> Phase:
    """``L``: ``steps`` leapfrog steps from ``z`` (all of its chains); costs ``steps`` gradients per chain
    (the gradient at the start is carried in ``z``)."""
    x, v, grad = z.position, z.momentum, z.grad
    half = 0.5 * eps / temperature
    v = v - half * grad
    for s in range(steps):
        x = x + eps * v
        grad = problem.grad(x)
        v = v - (half if s == steps - 1 else 2 * half) * grad
    return Phase(x, v, problem.loss(x), grad)


def leap(problem: Problem, z: Phase, active: torch.Tensor, eps: float, steps: int, temperature: float) -> Phase:
    """``L`` applied to the chains where ``active`` (bool, (K,)) is true; the others are returned as given.

    Only the active chains are integrated (their rows are gathered, integrated and scattered back), so a
    look-ahead costs gradients only for the chains still undecided.
    """
    if bool(active.all()):
        return leapfrog(problem, z, eps, steps, temperature)
    out = Phase(*(t.clone() for t in z))
    idx = active.nonzero().squeeze(1)
    if idx.numel() == 0:
        return out
    moved = leapfrog(problem, Phase(*(t.index_select(0, idx) for t in z)), eps, steps, temperature)
    for target, source in zip(out, moved):
        target.index_copy_(0, idx, source)
    return out


def flip(z: Phase) -> Phase:
    """``F``: the momentum flip."""
    return z._replace(momentum=-z.momentum)


def select(mask: torch.Tensor, a: Phase, b: Phase) -> Phase:
    """Per chain: ``a`` where ``mask`` (K,) is true, else ``b``."""
    return Phase(*(torch.where(mask.view(-1, *([1] * (s.ndim - 1))), s, t) for s, t in zip(a, b)))


def draw_momentum(shape, like: torch.Tensor, generator: ChainRandom | torch.Generator | None) -> torch.Tensor:
    """Standard normal momenta ``n ~ N(0, I)``, shaped like ``like``."""
    if tuple(shape) != tuple(like.shape):
        raise ValueError(f"momentum shape {tuple(shape)} differs from {tuple(like.shape)}")
    return normal_like(like, generator)


def refresh(momentum: torch.Tensor, beta: float, generator: torch.Generator | None) -> torch.Tensor:
    """``R(beta)``: ``v <- sqrt(1 - beta) v + sqrt(beta) n`` (eq. 15); ``beta = 1`` draws ``v`` afresh."""
    noise = draw_momentum(momentum.shape, momentum, generator)
    if beta == 1.0:
        return noise
    return momentum * math.sqrt(1.0 - beta) + noise * math.sqrt(beta)


def log1mexp(a: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(a))`` for ``a <= 0``, accurate at both ends (Maechler 2012); ``-inf`` at ``a = 0``."""
    return torch.where(a > -math.log(2.0), torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def uniform(k: int, like: torch.Tensor, generator: ChainRandom | torch.Generator | None) -> torch.Tensor:
    """One U(0, 1) per chain, (k,)."""
    if k != like.shape[0]:
        raise ValueError(f"{k} uniforms asked for {like.shape[0]} chains")
    return uniform_like(like, generator)
