"""Divergence of the update rule caught early: the step-size limit up front, and growth while finite.

Two checks of :func:`sgworld.sample`, besides its sparse check for non-finite positions:

* **Up front.** For a quadratic potential with Hessian ``H`` the update rule (docs/concepts.md) moves the mean
  by ``E[w'] - w* = (I - lr H)(E[w] - w*)`` each step, and each eigen-mode's variance by
  ``v' = (1 - lr h)^2 v + (noise)``: there is no stationary state, and the chains diverge
  geometrically, once ``|1 - lr h_max| >= 1``, i.e. ``lr >= 2 / h_max``. Where the problem knows
  ``h_max`` cheaply (``problem.lr_limit(scheme)``, e.g. :class:`~sgworld.problems.QuadraticProblem`)
  the Langevin kernels (``LANGEVIN_KERNELS``) are refused before the first step with
  :class:`~sgworld.errors.StepSizeError`, which names the limit.
* **Growth.** Elsewhere a diverging chain can stay finite for thousands of steps (a factor 1.2 per step
  takes 3900 steps to overflow), filling the trace with numbers like 1e126. :class:`GrowthMonitor`
  flags it long before, by the criterion in its docstring.
"""

from __future__ import annotations

import torch

from .errors import StepSizeError

GROWTH = 1e6  # growth of the distance from the start, over at most ~3/4 of the run so far, that is a divergence
# kernels of stochastic-gradient updates without a Metropolis test (growth is monitored); not csgld, whose
# chains may sit still at a minimum through an exploration stage (T = 0) and then move: no divergence
LANGEVIN_KERNELS = ("sgd", "sgld", "sgworld", "ula", "sgld_cv", "sghmc", "sgnht", "psgld")


def check_step_size(problem, kernel, scheme: str | None) -> float | None:
    """The stability limit of ``kernel`` on ``problem`` when known (else None): the kernel's own
    ``kernel.lr_limit(problem, scheme)`` if it has one (e.g. ``2 (2 - alpha) / h_max`` for SGHMC), else
    ``2 / h_max`` for the Langevin kernels; raises StepSizeError when lr is at or above it."""
    limit_of = getattr(problem, "lr_limit", None)
    own = getattr(kernel, "lr_limit", None)
    if own is not None:
        limit = own(problem, scheme)
    elif kernel.name not in LANGEVIN_KERNELS or limit_of is None:
        return None
    else:
        limit = limit_of(scheme)
    if limit is not None and kernel.lr >= limit:
        raise StepSizeError(kernel.lr, 2.0 / limit, f"{kernel.name} on {problem.name!r} has no stationary state "
                            "and its chains diverge geometrically")
    return limit


class GrowthMonitor:
    r"""Flags chains whose distance from their start grows without bound while staying finite.

    Criterion. At the driver's progress points (every <= 256 steps) the distance
    ``d_k(t) = |w_k(t) - w_k(0)|`` of every chain is measured. Marks are taken at progress points whose
    steps at least double (``t_{j+1} >= 2 t_j``); ``R_k`` is the largest distance chain k had reached by
    the next-to-last mark, so it looks back to between about a quarter and a half of the steps run.
    Chain k diverges at t when ``d_k(t) > GROWTH * R_k`` (``GROWTH = 1e6``, ``R_k > 0``).

    Why healthy chains never trip it: a chain that relaxes to its stationary region, however far from a
    bad start, gets there at most about linearly in time (its drift per step is bounded along the way)
    and then stays, so ``d(t) / R`` is a few, not a million; diffusion grows like ``sqrt(t)``; a first
    jump (``lr h = 1`` lands on the minimum in one step) is part of ``R`` itself. A million-fold growth
    within a doubling of the run is exponential growth, which for the update rule means a mode with
    ``|1 - lr h| > 1`` (or a potential unbounded below). Such a mode, growing by ``rho`` per step, is
    caught after about ``2 ln(1e6) / ln(rho)`` steps (about 150 at ``rho = 1.2``), far from overflow.
    Not covered: a chain started exactly on a saddle with almost no noise (T = 0, tiny minibatch noise)
    also escapes exponentially; if it travels more than a million times its first displacement it is
    reported; start elsewhere, or use T > 0. Metropolis kernels (MALA, HMC) cannot grow unboundedly and
    can legitimately sit still and then jump, so the driver monitors only ``LANGEVIN_KERNELS``.
    """

    def __init__(self, start: torch.Tensor):
        self.start = start  # not copied (no extra (K, p) memory): the kernels never write into their input
        chains = start.shape[0]
        on = start.device
        self.running = torch.zeros(chains, dtype=start.dtype, device=on)    # largest distance seen so far
        self.latest = torch.zeros(chains, dtype=start.dtype, device=on)     # largest distance by the last mark
        self.reference = torch.zeros(chains, dtype=start.dtype, device=on)  # ... by the mark before (R_k)
        self.mark = 0
        self.first_step = torch.zeros(chains, dtype=torch.long, device=on)  # step at which a chain was flagged (0: never)

    def update(self, position: torch.Tensor, step: int) -> None:
        """Measure the chains at ``step`` (a progress point) and flag those that grew past the bound."""
        distance = torch.linalg.vector_norm(position - self.start, dim=1)
        grown = (self.reference > 0) & (distance > GROWTH * self.reference)
        self.first_step.masked_fill_(grown & (self.first_step == 0), step)
        self.running = torch.fmax(self.running, distance)  # fmax: a non-finite chain is the other check's
        if step >= 2 * self.mark:
            self.reference, self.latest, self.mark = self.latest, self.running.clone(), step

    def state_dict(self) -> dict:
        return {"running": self.running, "latest": self.latest, "reference": self.reference, "mark": self.mark,
                "first_step": self.first_step}

    def load_state_dict(self, state: dict | None) -> None:
        """Restore from a checkpoint (None, from a checkpoint written before this check existed: start over)."""
        if state is not None:
            self.running, self.latest, self.reference = state["running"], state["latest"], state["reference"]
            self.mark, self.first_step = int(state["mark"]), state["first_step"]
