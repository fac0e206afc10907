"""Step-size and temperature schedules: ``lr_n`` and ``T_n`` as functions of the step index n.

Every sampler's ``lr=`` and ``temperature=`` take a number (a :class:`Constant`) or a schedule. Step n
(n = 0, 1, ... counts the steps already taken, so the first step uses ``lr_0``) applies
``lr_n`` and ``T_n`` in its update rule. A schedule is evaluated at an int (a float back) or at an int64
tensor of step counts (a tensor back, of the dtype asked for), so kernels can evaluate it without
reading the step count on the host.

* :class:`Constant` -- ``lr_n = value``.
* :class:`PolynomialDecay` -- ``lr_n = a (b + n)^(-gamma)``, ``gamma`` in (0.5, 1] (Welling & Teh 2011,
  after Robbins & Monro: ``sum lr_n = inf``, ``sum lr_n^2 < inf``).
* :class:`Cyclical` -- the cosine cycles of cyclical SGLD (Zhang et al. 2020, eq. 1):
  ``lr_n = lr_0 / 2 (cos(pi mod(n, C) / C) + 1)`` with ``C = ceil(total_steps / cycles)`` steps per cycle.
* :class:`CyclicalPhase` -- ``T_n = 0`` during the first ``exploration`` fraction of each cycle
  (``mod(n, C) / C < exploration``: the exploration stage, plain SGD) and ``T`` after it (sampling).

``describe()`` gives a JSON-serialisable record (kind and parameters) for the trace metadata; ``maximum``
is the largest value over all steps (the lr that the step-size check and the metadata's ``lr`` use).

References: M. Welling, Y. W. Teh, "Bayesian learning via stochastic gradient Langevin dynamics",
ICML 2011; R. Zhang, C. Li, J. Zhang, C. Chen, A. G. Wilson, "Cyclical stochastic gradient MCMC for
Bayesian deep learning", ICLR 2020.
"""

from __future__ import annotations

import math
import numbers

import torch

from ._checks import check_int_range, check_nonnegative, check_positive

__all__ = ["Schedule", "Constant", "PolynomialDecay", "Cyclical", "CyclicalPhase", "as_schedule"]


class Schedule:
    """A value per step: ``schedule(n)`` for an int n (a float) or an int64 tensor of step counts."""

    def __call__(self, step):
        if isinstance(step, torch.Tensor):
            return self.at_tensor(step, torch.float64)
        return self.at(check_int_range("step", step, 0))

    def at(self, step: int) -> float:
        """The value at step ``step`` (an int >= 0)."""
        raise NotImplementedError

    def at_tensor(self, step: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The values at the step counts ``step`` (int64 tensor), as a tensor of ``dtype``."""
        raise NotImplementedError

    @property
    def maximum(self) -> float:
        """The largest value over all steps."""
        raise NotImplementedError

    @property
    def constant(self) -> bool:
        return False

    def describe(self) -> dict:
        """A JSON-serialisable record of the schedule (its kind and parameters)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "kind")
        return f"{type(self).__name__}({params})"


class Constant(Schedule):
    """``value`` at every step."""

    def __init__(self, value: float, name: str = "value", *, allow_zero: bool = False):
        self.value = check_nonnegative(name, value) if allow_zero else check_positive(name, value)

    def at(self, step: int) -> float:
        return self.value

    def at_tensor(self, step, dtype):
        return torch.full(step.shape, self.value, dtype=dtype, device=step.device)

    @property
    def maximum(self) -> float:
        return self.value

    @property
    def constant(self) -> bool:
        return True

    def describe(self) -> dict:
        return {"kind": "constant", "value": self.value}


class PolynomialDecay(Schedule):
    """``lr_n = a (b + n)^(-gamma)`` (Welling & Teh 2011), ``a > 0``, ``b > 0``, ``gamma`` in (0.5, 1].

    For ``gamma`` in (0.5, 1] the steps satisfy ``sum lr_n = inf`` and ``sum lr_n^2 < inf``, the
    conditions under which SGLD's bias vanishes as n grows.
    """

    def __init__(self, a: float, b: float = 1.0, gamma: float = 0.55):
        self.a = check_positive("a of PolynomialDecay (lr_n = a (b + n)^-gamma)", a)
        self.b = check_positive("b of PolynomialDecay (lr_n = a (b + n)^-gamma)", b)
        gamma = float(gamma)
        if not 0.5 < gamma <= 1.0:
            raise ValueError(f"gamma of PolynomialDecay = {gamma!r} is out of range; allowed: 0.5 < gamma <= 1 "
                             "(Welling & Teh's conditions sum lr_n = inf, sum lr_n^2 < inf)")
        self.gamma = gamma

    def at(self, step: int) -> float:
        return self.a * (self.b + step) ** (-self.gamma)

    def at_tensor(self, step, dtype):
        return self.a * (self.b + step.to(dtype)) ** (-self.gamma)

    @property
    def maximum(self) -> float:
        return self.at(0)

    def describe(self) -> dict:
        return {"kind": "polynomial_decay", "a": self.a, "b": self.b, "gamma": self.gamma}


class _Cycles(Schedule):
    """Cycles of ``C = ceil(total_steps / cycles)`` steps; ``phase(n) = mod(n, C) / C`` in [0, 1)."""

    def __init__(self, total_steps: int, cycles: int):
        self.total_steps = check_int_range("total_steps", total_steps, 1)
        self.cycles = check_int_range("cycles", cycles, 1, self.total_steps)
        self.cycle_length = math.ceil(self.total_steps / self.cycles)

    def phase(self, step: int) -> float:
        return (step % self.cycle_length) / self.cycle_length

    def phase_tensor(self, step: torch.Tensor, dtype) -> torch.Tensor:
        return torch.remainder(step, self.cycle_length).to(dtype) / self.cycle_length


class Cyclical(_Cycles):
    """The cosine cycles of Zhang et al. (2020): ``lr_n = lr_0 / 2 (cos(pi mod(n, C) / C) + 1)``.

    ``C = ceil(total_steps / cycles)``; each cycle starts at ``lr_0`` and decays to near 0.
    """

    def __init__(self, value: float, total_steps: int, cycles: int):
        self.value = check_positive("lr_0 of the cyclical schedule", value)
        super().__init__(total_steps, cycles)

    def at(self, step: int) -> float:
        return 0.5 * self.value * (math.cos(math.pi * self.phase(step)) + 1.0)

    def at_tensor(self, step, dtype):
        return 0.5 * self.value * (torch.cos(math.pi * self.phase_tensor(step, dtype)) + 1.0)

    @property
    def maximum(self) -> float:
        return self.value

    def describe(self) -> dict:
        return {"kind": "cyclical", "value": self.value, "total_steps": self.total_steps, "cycles": self.cycles,
                "cycle_length": self.cycle_length}


class CyclicalPhase(_Cycles):
    """``0`` in the exploration stage of each cycle (``mod(n, C) / C < exploration``), ``value`` after it.

    The temperature of cyclical SGLD (Zhang et al. 2020): SGD while exploring, Langevin dynamics at
    temperature ``value`` while sampling. ``exploration`` in [0, 1).
    """

    def __init__(self, value: float, total_steps: int, cycles: int, exploration: float):
        self.value = check_nonnegative("temperature", value)
        exploration = float(exploration)
        if not 0.0 <= exploration < 1.0:
            raise ValueError(f"exploration = {exploration!r} is out of range; allowed: 0 <= exploration < 1 "
                             "(the fraction of each cycle run as SGD)")
        self.exploration = exploration
        super().__init__(total_steps, cycles)

    def sampling(self, step: int) -> bool:
        """Whether step ``step`` is in a sampling stage (after the exploration stage of its cycle)."""
        return self.phase(step) >= self.exploration

    def at(self, step: int) -> float:
        return self.value if self.sampling(step) else 0.0

    def at_tensor(self, step, dtype):
        on = self.phase_tensor(step, dtype) >= self.exploration
        return torch.where(on, self.value, 0.0).to(dtype)

    @property
    def maximum(self) -> float:
        return self.value

    def describe(self) -> dict:
        return {"kind": "cyclical_phase", "value": self.value, "total_steps": self.total_steps,
                "cycles": self.cycles, "cycle_length": self.cycle_length, "exploration": self.exploration}


def as_schedule(name: str, value, *, allow_zero: bool = False) -> Schedule:
    """``value`` as a Schedule: a number becomes a :class:`Constant` (checked > 0, or >= 0 with
    ``allow_zero``); a schedule is returned as it is. Anything else is refused."""
    if isinstance(value, Schedule):
        if not allow_zero and not value.maximum > 0:
            raise ValueError(f"{name} schedule {value!r} is never positive; allowed: values > 0")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real) and not (
            isinstance(value, torch.Tensor) and value.numel() == 1):
        raise ValueError(f"{name} must be a number or a schedule (sgworld.schedules), got {value!r}")
    return Constant(float(value), name, allow_zero=allow_zero)


def schedule_value(schedule: Schedule, step: torch.Tensor | None, like: torch.Tensor):
    """The value for the next step of every chain: a float for a constant schedule, else a (K, 1)
    tensor of ``like``'s dtype from the chains' step counts ``step`` (K,)."""
    if schedule.constant:
        return schedule.value
    return schedule.at_tensor(step, like.dtype).unsqueeze(1)
