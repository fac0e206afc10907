"""The sampler interface: small kernels of pure functions (BlackJAX / optax style).

A :class:`Kernel` bundles ``init(position) -> state`` and
``step(state, batch_indices, generator) -> (state, info)``. ``position`` is the (K, p) tensor of
K chains; ``batch_indices`` is (K, b) for stochastic-gradient kernels and ``None`` for full-batch
ones; ``info`` is a :class:`StepInfo`. Kernels hold no mutable state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch


class SamplerState(NamedTuple):
    position: torch.Tensor  # (K, p)


class StepInfo(NamedTuple):
    accepted: torch.Tensor | None = None  # (K,) bool, Metropolis kernels only
    grad_evals: torch.Tensor | None = None  # (K,) int64: full-batch gradients each chain spent on this step
    transitions: torch.Tensor | None = None  # (K, n) int64: transitions of each kind made on this step
    transition_names: tuple[str, ...] | None = None  # the n kinds, e.g. ("F", "L", "L^2") for look-ahead HMC
    weight: torch.Tensor | None = None  # (K,) holding-time weight of the new state (embedded jump chains)


@dataclass(frozen=True)
class Kernel:
    name: str
    lr: float
    temperature: float
    scheme: str | None  # default index scheme; None = full batch (no minibatches)
    init: Callable[[torch.Tensor], NamedTuple]
    step: Callable[..., tuple[NamedTuple, StepInfo]]
    # Optional: ``block(position, indices, noise) -> positions`` runs S steps of ``step`` with the
    # minibatch indices (S, K, b) (or None) and the unit Gaussian noise (S, K, p) (or None at T = 0)
    # given, and returns the S positions (S, K, p). It draws nothing, so it can be compiled.
    block: Callable[..., torch.Tensor] | None = None


def langevin_update(position: torch.Tensor, gradient: torch.Tensor, lr: float, temperature: float,
                    generator: torch.Generator | None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """The one update rule of sgworld (DESIGN 1):

    ``w <- w - lr * grad + sqrt(2 * lr * T) * xi``,  ``xi ~ N(0, I)``.

    ``xi`` is drawn from ``generator`` unless ``noise`` (already standard normal) is given.
    ``T = 0`` is plain gradient descent (no noise is drawn).
    """
    # Three tensor ops (one fused multiply-add each): per-step overhead matters at small K.
    drift = torch.add(position, gradient, alpha=-lr)
    if temperature == 0:
        return drift
    if noise is None:
        noise = torch.randn(position.shape, generator=generator, dtype=position.dtype, device=position.device)
    return drift.add_(noise, alpha=math.sqrt(2.0 * lr * temperature))
