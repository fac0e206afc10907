"""SGLD (Welling & Teh 2011): ``w <- w - lr grad L_B(w) + sqrt(2 lr T) xi`` with ``wr`` minibatches.

Targets ``exp(-L/T)`` up to an O(lr) bias that carries an (N/b)-sized minibatch term and leaves the
stationary state out of equilibrium (arXiv 2306.03521). Welling & Teh's step size is ``eps = 2 lr``.
"""

from ..problems import Problem
from .base import Kernel
from .langevin import stochastic_gradient_kernel


def sgld(problem: Problem, lr: float, temperature: float = 1.0) -> Kernel:
    return stochastic_gradient_kernel(problem, lr, temperature, "wr", "sgld")
