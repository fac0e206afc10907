"""SGWORLD: Stochastic Gradient WithOut Replacement Langevin Dynamics (arXiv 2306.03521).

The SGLD update ``w <- w - lr grad L_B(w) + sqrt(2 lr T) xi`` with ``wor`` minibatches (a fresh
permutation each epoch). Within an epoch the batch-gradient errors sum to zero, so the minibatch
noise is O(lr^4) per epoch and is swamped by the injected noise: the stationary state is, to leading
order, in equilibrium, with an error of the order of full-batch Langevin's O(lr) discretisation bias.
"""

from ..problems import Problem
from .base import Kernel
from .langevin import stochastic_gradient_kernel


def sgworld(problem: Problem, lr: float, temperature: float = 1.0) -> Kernel:
    return stochastic_gradient_kernel(problem, lr, temperature, "wor", "sgworld")
