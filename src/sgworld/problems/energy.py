"""Problems given by an energy function alone (no data): test targets ``exp(-E(x)/T)`` for samplers.

:class:`EnergyProblem` wraps a batched energy ``E(x)`` of (K, p) positions, so ``L = E`` (a single
"sample" with ``U_1 = E``); its gradient is ``torch.func`` autodiff unless a closed form is given.
Two ready-made targets from Sohl-Dickstein, Mudigonda & DeWeese (2014), section 5:

- :func:`ill_conditioned_gaussian`: ``E = x^T J x / 2`` with ``J = diag(exp(linspace(log 1e-6, 0, D)))``
  (covariance eigenvalues log-spaced from 1 to 1e6);
- :func:`rough_well`: ``E = sum_i x_i^2 / (2 sigma1^2) + cos(pi x_i / sigma2)`` (their eq. 34, sigma1 = 100,
  sigma2 = 2): a broad well covered in small ripples.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.func import grad, vmap

from .._checks import check_int_range, check_positive
from .base import Problem


class EnergyProblem(Problem):
    """A target ``exp(-E(x)/T)`` from ``energy(x)``: (K, p) -> (K,), a pure torch function.

    ``energy_grad`` (optional, (K, p) -> (K, p)) replaces autodiff where a closed form is cheaper.
    ``device`` places the problem (and its chains); an energy that closes over tensors must have them there
    too, so :meth:`to` moves only problems whose energy holds none (or that know how to rebuild themselves).
    """

    def __init__(self, energy: Callable[[torch.Tensor], torch.Tensor], dim: int, *,
                 energy_grad: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 initial: torch.Tensor | None = None, name: str = "energy", dtype: torch.dtype = torch.float64,
                 device=None):
        dim = check_int_range("dim", dim, 1)
        self.energy = energy
        self._energy_grad = energy_grad or vmap(grad(lambda w: energy(w.unsqueeze(0)).squeeze(0)))
        # one dummy data point: U_1(w) = E(w), so L = E and the Problem machinery (Hessian, ...) applies
        potential = lambda w, dummy: energy(w.unsqueeze(0)).expand(dummy.shape[0])
        super().__init__(potential, (torch.zeros(1, 1, dtype=dtype, device=device),), dim, initial=initial, name=name)

    def batch_loss(self, w, idx=None):
        self.check_params(w)
        return self.energy(w)

    def batch_grad(self, w, idx=None):
        self.check_params(w)
        return self._energy_grad(w)


def ill_conditioned_gaussian(dim: int, smallest: float = 1e-6, largest: float = 1.0, *,
                             device=None) -> EnergyProblem:
    """``E = x^T J x / 2``, ``J = diag(exp(linspace(log smallest, log largest, dim)))``; covariance ``J^-1``."""
    dim = check_int_range("dim", dim, 1)
    smallest, largest = check_positive("smallest", smallest), check_positive("largest", largest)
    precision = torch.exp(torch.linspace(math.log(smallest), math.log(largest), dim, dtype=torch.float64,
                                         device=device))
    problem = EnergyProblem(lambda x: 0.5 * (x * x * precision).sum(-1), dim, energy_grad=lambda x: x * precision,
                            name=f"gaussian{dim}d", device=device)
    problem.precision = precision
    problem._builder = lambda to: ill_conditioned_gaussian(dim, smallest, largest, device=to)
    return problem


def rough_well(dim: int = 2, sigma1: float = 100.0, sigma2: float = 2.0) -> EnergyProblem:
    """``E = sum_i x_i^2 / (2 sigma1^2) + cos(pi x_i / sigma2)`` (eq. 34 of the look-ahead HMC paper)."""
    dim = check_int_range("dim", dim, 1)
    sigma1, sigma2 = check_positive("sigma1", sigma1), check_positive("sigma2", sigma2)
    k = math.pi / sigma2
    problem = EnergyProblem(lambda x: (x * x / (2 * sigma1**2) + torch.cos(k * x)).sum(-1), dim,
                            energy_grad=lambda x: x / sigma1**2 - k * torch.sin(k * x), name="rough_well")
    problem.sigma1, problem.sigma2 = sigma1, sigma2
    return problem
