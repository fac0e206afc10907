"""Samplers as small kernels of pure functions: ``init(position)`` and ``step(state, idx, generator)``."""

from .base import Kernel, SamplerState, StepInfo, langevin_update
from .langevin import stochastic_gradient_kernel
from .mala import MALAState, mala
from .sgd import sgd
from .sgld import sgld
from .sgworld import sgworld
from .ula import ula

METHODS = {"sgd": sgd, "sgld": sgld, "sgworld": sgworld, "ula": ula, "mala": mala}

__all__ = ["Kernel", "SamplerState", "StepInfo", "MALAState", "langevin_update", "stochastic_gradient_kernel",
           "sgd", "sgld", "sgworld", "ula", "mala", "METHODS"]
