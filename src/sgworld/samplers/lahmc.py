"""Look-Ahead HMC: Hamiltonian Monte Carlo without detailed balance (Sohl-Dickstein, Mudigonda &
DeWeese, ICML 2014, arXiv 1409.5191, section 4).

Where HMC flips the momentum on a rejection, look-ahead HMC first tries to continue the trajectory:
from ``zeta`` it may move to ``L^a zeta`` for a = 1..K (each ``L`` is M leapfrog steps), and flips
only when none is taken. With ``H_a = H(L^a zeta)`` (and ``H(F zeta) = H(zeta)``) the probability of
the transition to ``L^a zeta`` is their eq. 25,

    pi_a(zeta) = min[ 1 - sum_{b<a} pi_b(zeta),
                      exp(H_0 - H_a) (1 - sum_{b<a} pi_b(F L^a zeta)) ],   pi_F = 1 - sum_a pi_a,

computed through the cumulative probabilities ``C(i, j)`` of moving from the i-th to the j-th state of
the same trajectory (``s = sign(j - i)``; the reverse terms reuse the same energies, no extra
gradients):

    C(i, i +- 1) = min(1, exp(H_i - H_j)),
    C(i, j) = C(i, j - s) + min(1 - C(i, j - s), exp(H_i - H_j) (1 - C(j, i + s))).

The chain keeps its stationary law exactly (their eq. 26, ``p(zeta) pi_a(zeta) = p(F L^a zeta)
pi_a(F L^a zeta)``) without satisfying detailed balance. One ``u ~ U(0, 1)`` per step: the transition
is the first a with ``u < C(0, a)``; then ``R(beta)`` refreshes the momentum. K = 1 is HMC, step for
step with the same random numbers (:mod:`sgworld.samplers.hmc`).

Everything is in log space: ``log C`` with ``log(1 - C)`` from :func:`log1mexp`, so an energy jump of
any size neither overflows nor produces NaN; a non-finite energy makes that transition impossible
(probability 0), never freezes a chain. Leap a integrates only the chains still undecided (u not yet
below ``C(0, a - 1)``), so a transition to ``L^a`` costs a M gradients and a flip K M.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_int_range
from ..problems import Problem
from .base import Kernel, StepInfo
from .hamiltonian import check_hamiltonian_settings, flip, hamiltonian, leap, log1mexp, refresh, select, uniform
from .hmc import init_phase, with_momentum


class CumulativeLeapProbabilities:
    """``log C(i, j)`` for the energies ``H[0], H[1], ...`` along one trajectory (per chain, (k,) tensors),
    memoised; ``H`` may grow between calls (the look-ahead appends one energy per leap)."""

    def __init__(self, energies: list[torch.Tensor]):
        self.energies = energies
        self.memo: dict[tuple[int, int], torch.Tensor] = {}

    def _log_ratio(self, i: int, j: int) -> torch.Tensor:
        # log p(zeta_j) / p(zeta_i); NaN (inf - inf) means a transition between impossible states: -inf
        return torch.nan_to_num(self.energies[i] - self.energies[j], nan=-math.inf, posinf=math.inf)

    def log_c(self, i: int, j: int) -> torch.Tensor:
        key = (i, j)
        if key in self.memo:
            return self.memo[key]
        s = 1 if j > i else -1
        d = self._log_ratio(i, j)
        if abs(j - i) == 1:
            out = d.clamp(max=0.0)
        else:
            previous = self.log_c(i, j - s)
            reverse = self.log_c(j, i + s)
            term = torch.nan_to_num(torch.minimum(log1mexp(previous), d + log1mexp(reverse)), nan=-math.inf)
            out = torch.logaddexp(previous, term.clamp(max=0.0)).clamp(max=0.0)
        self.memo[key] = out
        return out

    def transition_probabilities(self, look_ahead: int) -> torch.Tensor:
        """``(pi_F, pi_1, ..., pi_K)`` from the first state, (k, K + 1) (for checks; sums to 1)."""
        cum = torch.stack([torch.zeros_like(self.energies[0])]
                          + [self.log_c(0, a).exp() for a in range(1, look_ahead + 1)], 1)
        pi = cum.diff(dim=1)
        return torch.cat([1.0 - cum[:, -1:], pi], 1)


def transition_names(look_ahead: int) -> tuple[str, ...]:
    return ("F", "L") + tuple(f"L^{a}" for a in range(2, look_ahead + 1))


def lahmc(problem: Problem, lr: float, temperature: float = 1.0, *, leapfrog_steps: int = 10, look_ahead: int = 4,
          beta: float = 1.0) -> Kernel:
    """Look-ahead HMC kernel: leapfrog step ``eps = lr``, M = ``leapfrog_steps``, K = ``look_ahead`` >= 1
    leaps, refresh ``beta`` in (0, 1]."""
    eps, temperature, steps, beta = check_hamiltonian_settings(lr, temperature, leapfrog_steps, beta)
    look_ahead = check_int_range("look_ahead (K, the number of look-ahead leaps)", look_ahead, 1)
    names = transition_names(look_ahead)

    def init(position):
        return init_phase(problem, position)

    def step(state, batch_indices, generator):
        z = with_momentum(state, generator)
        k = z.position.shape[0]
        log_u = torch.log(uniform(k, z.position, generator))
        cumulative = CumulativeLeapProbabilities([hamiltonian(z.loss, z.momentum, temperature)])
        undecided = torch.ones(k, dtype=torch.bool, device=z.position.device)
        chosen = torch.zeros(k, dtype=torch.long)
        grad_evals = torch.zeros(k, dtype=torch.long)
        current, result = z, z
        for a in range(1, look_ahead + 1):
            current = leap(problem, current, undecided, eps, steps, temperature)
            grad_evals += steps * undecided
            cumulative.energies.append(hamiltonian(current.loss, current.momentum, temperature))
            take = undecided & (log_u < cumulative.log_c(0, a))
            result = select(take, current, result)
            chosen.masked_fill_(take, a)
            undecided &= ~take
            if not bool(undecided.any()):
                break
        result = select(undecided, flip(z), result)
        result = result._replace(momentum=refresh(result.momentum, beta, generator))
        kinds = torch.nn.functional.one_hot(chosen, look_ahead + 1)
        return result, StepInfo(accepted=chosen > 0, grad_evals=grad_evals, transitions=kinds,
                                transition_names=names)

    return Kernel(name="lahmc", lr=eps, temperature=temperature, scheme=None, init=init, step=step)
