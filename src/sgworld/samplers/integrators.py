"""Integrators: one update rule each, shared by the kernels and by ``sgworld.optim``.

Every function maps the current state and a gradient estimate ``g`` (of ``L``, the full loss of
docs/concepts.md, so the target is ``exp(-L/T)``) to the next state, for all chains at once (rows of a
(K, p) tensor; the optimizers pass one parameter tensor of any shape). The standard normal noise ``xi``
is drawn from ``generator`` (a :class:`~sgworld.rng.ChainRandom` or a ``torch.Generator``) unless given.
``lr`` and ``T`` are numbers, or (K, 1) tensors when a schedule sets them per step (then the noise is
drawn at every step, also at ``T = 0``, so the random stream does not depend on the schedule).

* :func:`langevin_update` (SGD, SGLD, SGWORLD, SGLD-CV, cyclical SGLD; optionally with a constant
  preconditioner ``P = C C^T``): ``w' = w - lr P g + sqrt(2 lr T) C xi``.
* :func:`sghmc_update` (Chen, Fox & Guestrin 2014, eq. 15, the "SGD with momentum" form), state (w, v)::

      v' = (1 - alpha) v - lr g + sqrt(2 (alpha - beta_hat) lr T) xi,    w' = w + v'.

* :func:`sgnht_update` (Ding et al. 2014), state (w, v, zeta), one thermostat zeta per chain::

      v' = (1 - zeta) v - lr g + sqrt(2 a lr T) xi,   w' = w + v',   zeta' = zeta + |v'|^2 / p - lr T.

* :func:`rmsprop_langevin_update` (pSGLD, Li et al. 2016), state (w, V)::

      V' = rho V + (1 - rho) g * g,   G = 1 / (lambda + sqrt(V')),   w' = w - lr G * g + sqrt(2 lr T G) * xi.

References: T. Chen, E. B. Fox, C. Guestrin, "Stochastic gradient Hamiltonian Monte Carlo", ICML 2014;
N. Ding et al., "Bayesian sampling using stochastic gradient thermostats", NeurIPS 2014; C. Li, C. Chen,
D. Carlson, L. Carin, "Preconditioned stochastic gradient Langevin dynamics for deep neural networks",
AAAI 2016; S. Adhikari et al., "Machine learning in and out of equilibrium", arXiv:2306.03521.
"""

from __future__ import annotations

import math
from numbers import Number

import torch

from ..rng import ChainRandom, normal_like

Generator = ChainRandom | torch.Generator | None


def _is_zero(value) -> bool:
    return isinstance(value, Number) and value == 0


def _noise_scale(lr, temperature, factor: float = 2.0):
    """``sqrt(factor * lr * T)``: a number, or a (K, 1) tensor when lr or T is one."""
    if isinstance(lr, Number) and isinstance(temperature, Number):
        return math.sqrt(factor * lr * temperature)
    return torch.sqrt(factor * lr * temperature)


def _add_scaled(out: torch.Tensor, noise: torch.Tensor, scale) -> torch.Tensor:
    """``out += scale * noise`` in place, ``scale`` a number or a broadcastable tensor."""
    return out.add_(noise, alpha=scale) if isinstance(scale, Number) else out.add_(noise * scale)


class Preconditioner:
    """A constant symmetric positive definite ``P`` (p x p) and its Cholesky factor ``C`` (``P = C C^T``).

    ``apply(g)`` is ``P g`` and ``apply_sqrt(xi)`` is ``C xi`` for every row of a (K, p) tensor. A typical
    choice is the inverse Hessian at the MAP, with which ``lr P H`` has all eigenvalues ``lr`` near it.
    """

    def __init__(self, matrix, dim: int, dtype: torch.dtype = torch.float64, device=None):
        P = torch.as_tensor(matrix, dtype=dtype, device=device)
        if P.shape != (dim, dim):
            raise ValueError(f"preconditioner must be a ({dim}, {dim}) matrix for this problem's {dim} parameters, "
                             f"got shape {tuple(P.shape)}")
        if not bool(torch.isfinite(P).all()):
            raise ValueError("preconditioner contains non-finite values; give a finite symmetric positive definite "
                             "matrix")
        asym = float((P - P.T).abs().max()) if dim > 1 else 0.0
        scale = float(P.abs().max())
        if asym > 1e-10 * max(scale, 1e-300):
            raise ValueError(f"preconditioner is not symmetric (max |P - P^T| = {asym:.3g}); give a symmetric "
                             "positive definite matrix, e.g. (P + P.T) / 2")
        P = 0.5 * (P + P.T)
        C, info = torch.linalg.cholesky_ex(P)
        if int(info) != 0:
            smallest = float(torch.linalg.eigvalsh(P)[0])
            raise ValueError(f"preconditioner is not positive definite (smallest eigenvalue {smallest:.3g}); give a "
                             "symmetric positive definite matrix, e.g. the inverse Hessian at the MAP")
        self.matrix, self.factor = P, C

    def apply(self, gradient: torch.Tensor) -> torch.Tensor:
        return gradient @ self.matrix  # rows: (P g)^T = g^T P, P symmetric

    def apply_sqrt(self, noise: torch.Tensor) -> torch.Tensor:
        return noise @ self.factor.T   # rows: (C xi)^T


def langevin_update(position: torch.Tensor, gradient: torch.Tensor, lr, temperature, generator: Generator,
                    noise: torch.Tensor | None = None, preconditioner: Preconditioner | None = None) -> torch.Tensor:
    """The one update rule of sgworld (docs/concepts.md), optionally with a constant preconditioner ``P = C C^T``:

    ``w <- w - lr * P grad + sqrt(2 * lr * T) * C xi``,  ``xi ~ N(0, I)`` (``P = C = I`` by default).

    ``xi`` is drawn from ``generator`` unless ``noise`` (already standard normal) is given.
    A constant ``T = 0`` is plain gradient descent (no noise is drawn).
    """
    if preconditioner is not None:
        gradient = preconditioner.apply(gradient)
    # Three tensor ops (one fused multiply-add each): per-step overhead matters at small K.
    if isinstance(lr, Number):
        drift = torch.add(position, gradient, alpha=-lr)
    else:
        drift = position - lr * gradient
    if _is_zero(temperature):
        return drift
    if noise is None:
        noise = normal_like(position, generator)
    if preconditioner is not None:
        noise = preconditioner.apply_sqrt(noise)
    return _add_scaled(drift, noise, _noise_scale(lr, temperature))


def sghmc_update(position: torch.Tensor, momentum: torch.Tensor, gradient: torch.Tensor, lr, temperature,
                 alpha: float, beta_hat: float, generator: Generator,
                 noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """SGHMC (Chen, Fox & Guestrin 2014, eq. 15): momentum first, then the position with the new momentum:

    ``v' = (1 - alpha) v - lr g + sqrt(2 (alpha - beta_hat) lr T) xi``,  ``w' = w + v'``.

    Returns ``(w', v')``. ``alpha`` in (0, 1] is the friction, ``beta_hat`` in [0, alpha) the estimate of
    the gradient-noise term. A constant ``T = 0`` (or ``beta_hat = alpha``) draws no noise: heavy-ball
    SGD, i.e. ``torch.optim.SGD(momentum=1 - alpha, dampening=0)`` with ``v = -lr * buf``.
    """
    new_momentum = momentum.mul(1.0 - alpha)
    if isinstance(lr, Number):
        new_momentum.add_(gradient, alpha=-lr)
    else:
        new_momentum.sub_(lr * gradient)
    if not _is_zero(temperature) and alpha > beta_hat:
        if noise is None:
            noise = normal_like(position, generator)
        _add_scaled(new_momentum, noise, _noise_scale(lr, temperature, 2.0 * (alpha - beta_hat)))
    return position + new_momentum, new_momentum


def sgnht_update(position: torch.Tensor, momentum: torch.Tensor, thermostat: torch.Tensor, gradient: torch.Tensor,
                 lr, temperature, a: float, generator: Generator,
                 noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SGNHT (Ding et al. 2014) for K chains (``momentum`` (K, p), one thermostat per chain ``thermostat`` (K,)):

    ``v' = (1 - zeta) v - lr g + sqrt(2 a lr T) xi``,  ``w' = w + v'``,  ``zeta' = zeta + |v'|^2 / p - lr T``.

    Returns ``(w', v', zeta')``. ``a > 0`` is the injected-diffusion parameter (Ding et al.'s ``A``; see
    :mod:`sgworld.samplers.sgnht` for the mapping). At stationarity ``E[zeta'] = E[zeta]`` gives
    ``E|v'|^2 / p = lr T`` exactly, whatever the gradient noise.
    """
    new_momentum = momentum - thermostat.unsqueeze(1) * momentum
    if isinstance(lr, Number):
        new_momentum.add_(gradient, alpha=-lr)
    else:
        new_momentum.sub_(lr * gradient)
    if not _is_zero(temperature):
        if noise is None:
            noise = normal_like(position, generator)
        _add_scaled(new_momentum, noise, _noise_scale(lr, temperature, 2.0 * a))
    target = lr * temperature
    if isinstance(target, torch.Tensor):
        target = target.squeeze(1)
    kinetic = new_momentum.pow(2).mean(1)
    return position + new_momentum, new_momentum, thermostat + (kinetic - target)


def rmsprop_langevin_update(position: torch.Tensor, square_avg: torch.Tensor, gradient: torch.Tensor, lr,
                            temperature, rho: float, eps: float, generator: Generator,
                            noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """pSGLD's step (Li et al. 2016, Algorithm 1, without the Gamma correction term):

    ``V' = rho V + (1 - rho) g * g``,  ``G = 1 / (lambda + sqrt(V'))``,  ``w' = w - lr G * g + sqrt(2 lr T G) * xi``

    (elementwise; ``lambda`` is ``eps``). Returns ``(w', V')``.
    """
    new_avg = torch.addcmul(square_avg * rho, gradient, gradient, value=1.0 - rho)
    G = 1.0 / (new_avg.sqrt() + eps)
    if isinstance(lr, Number):
        new_position = torch.addcmul(position, G, gradient, value=-lr)
    else:
        new_position = position - lr * G * gradient
    if _is_zero(temperature):
        return new_position, new_avg
    if noise is None:
        noise = normal_like(position, generator)
    return _add_scaled(new_position, noise * G.sqrt(), _noise_scale(lr, temperature)), new_avg
