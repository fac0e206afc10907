"""SGD: the update rule at T = 0, ``w <- w - lr grad L_B(w)``; minibatches with replacement by default."""

from ..problems import Problem
from .base import Kernel
from .langevin import stochastic_gradient_kernel


def sgd(problem: Problem, lr: float, scheme: str = "wr") -> Kernel:
    return stochastic_gradient_kernel(problem, lr, 0.0, scheme, "sgd")
