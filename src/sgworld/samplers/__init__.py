"""Samplers as small kernels of pure functions: ``init(position)`` and ``step(state, idx, generator)``."""

from .base import Kernel, SamplerState, StepInfo, langevin_update
from .hmc import HMCState, hmc
from .lahmc import lahmc
from .langevin import stochastic_gradient_kernel
from .mala import MALAState, mala
from .mjhmc import MJHMCState, mjhmc, time_weighted_moments
from .sgd import sgd
from .sgld import sgld
from .sgworld import sgworld
from .ula import ula

METHODS = {"sgd": sgd, "sgld": sgld, "sgworld": sgworld, "ula": ula, "mala": mala,
           "hmc": hmc, "lahmc": lahmc, "mjhmc": mjhmc}

__all__ = ["Kernel", "SamplerState", "StepInfo", "MALAState", "langevin_update", "stochastic_gradient_kernel",
           "sgd", "sgld", "sgworld", "ula", "mala", "hmc", "lahmc", "mjhmc", "HMCState", "MJHMCState",
           "time_weighted_moments", "METHODS"]
