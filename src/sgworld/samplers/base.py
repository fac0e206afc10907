"""The sampler interface: small kernels of pure functions (BlackJAX / optax style).

A :class:`Kernel` bundles ``init(position) -> state`` and
``step(state, batch_indices, generator) -> (state, info)``. ``position`` is the (K, p) tensor of
K chains; ``batch_indices`` is (K, b) for stochastic-gradient kernels and ``None`` for full-batch
ones; ``info`` is a :class:`StepInfo`. Kernels hold no mutable state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import torch

from .integrators import langevin_update  # noqa: F401  (the one update rule; re-exported here)


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
    # A JSON-serialisable record of the kernel's settings beyond lr and T (friction, schedules, a digest
    # of a preconditioner or centre, ...), written to the trace metadata as ``kernel_options``.
    settings: dict = field(default_factory=dict)
    # Optional: ``lr_limit(problem, scheme) -> float | None``, the step size at and above which this
    # kernel has no stationary state on ``problem`` (when known); the driver refuses lr at or above it.
    lr_limit: Callable[..., float | None] | None = None
    # Optional: ``check_scheme(scheme)`` raises a one-line ValueError for an index scheme (None: full
    # batch) this kernel cannot use; the driver calls it before the first step.
    check_scheme: Callable[[str | None], None] | None = None
    # Optional: ``record(state) -> (K, q)``, what the driver records of each drawn state instead of the
    # position, e.g. ``[position, momentum]`` (q = 2p) for momentum samplers asked to record momenta.
    record: Callable[[NamedTuple], torch.Tensor] | None = None


def describe_tensor(t: torch.Tensor, inline_max: int = 64) -> list | dict:
    """A JSON record of a setting given as a tensor: its values when small, else its shape and a digest."""
    t = t.detach().cpu().double()
    if t.numel() <= inline_max:
        return t.tolist()
    return {"shape": list(t.shape), "sha256": hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16]}
