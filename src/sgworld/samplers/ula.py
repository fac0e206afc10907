"""Full-batch (unadjusted) Langevin: ``w <- w - lr grad L(w) + sqrt(2 lr T) xi``.

An exact-gradient reference; for a quadratic L with Hessian H its stationary covariance is
``T (H - lr H^2 / 2)^{-1}``.
"""

from ..problems import Problem
from .base import Kernel
from .langevin import stochastic_gradient_kernel


def ula(problem: Problem, lr: float, temperature: float = 1.0) -> Kernel:
    return stochastic_gradient_kernel(problem, lr, temperature, None, "ula")
