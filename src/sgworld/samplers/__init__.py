"""Samplers as small kernels of pure functions: ``init(position)`` and ``step(state, idx, generator)``.

Stochastic-gradient kernels combine a gradient estimator (:mod:`.gradients`) with an integrator
(:mod:`.integrators`); ``lr`` and ``temperature`` take numbers or schedules (:mod:`sgworld.schedules`).
"""

from .base import Kernel, SamplerState, StepInfo, langevin_update
from .csgld import csgld
from .gradients import control_variate_gradient, minibatch_gradient
from .hmc import HMCState, hmc
from .integrators import Preconditioner, rmsprop_langevin_update, sghmc_update, sgnht_update
from .lahmc import lahmc
from .langevin import ScheduledState, stochastic_gradient_kernel
from .mala import MALAState, mala
from .mjhmc import MJHMCState, mjhmc, time_weighted_moments
from .psgld import PSGLDState, psgld
from .sgd import sgd
from .sghmc import SGHMCState, sghmc
from .sgld import sgld
from .sgld_cv import sgld_cv
from .sgnht import SGNHTState, sgnht
from .sgworld import sgworld
from .ula import ula

METHODS = {"sgd": sgd, "sgld": sgld, "sgworld": sgworld, "ula": ula, "mala": mala,
           "hmc": hmc, "lahmc": lahmc, "mjhmc": mjhmc,
           "sghmc": sghmc, "sgnht": sgnht, "psgld": psgld, "sgld_cv": sgld_cv, "csgld": csgld}

__all__ = ["Kernel", "SamplerState", "ScheduledState", "StepInfo", "MALAState", "langevin_update",
           "stochastic_gradient_kernel", "sgd", "sgld", "sgworld", "ula", "mala", "hmc", "lahmc", "mjhmc", "HMCState",
           "MJHMCState", "time_weighted_moments", "sghmc", "SGHMCState", "sgnht", "SGNHTState", "psgld", "PSGLDState",
           "sgld_cv", "csgld", "Preconditioner", "sghmc_update", "sgnht_update", "rmsprop_langevin_update",
           "minibatch_gradient", "control_variate_gradient", "METHODS"]
