"""SGWORLD: Stochastic Gradient WithOut Replacement Langevin Dynamics (arXiv 2306.03521).

The SGLD update ``w <- w - lr grad L_B(w) + sqrt(2 lr T) xi`` with ``wor`` minibatches (a fresh
permutation each epoch). Within an epoch the batch-gradient errors sum to zero, so the minibatch
noise is O(lr^4) per epoch and is swamped by the injected noise: the stationary state is, to leading
order, in equilibrium, with an error of the order of full-batch Langevin's O(lr) discretisation bias.
"""

from ..problems import Problem
from .base import Kernel
from .langevin import stochastic_gradient_kernel


def sgworld(problem: Problem, lr, temperature=1.0, *, preconditioner=None) -> Kernel:
    """SGWORLD kernel: ``w <- w - lr grad L_B(w) + sqrt(2 lr T) xi``, ``xi ~ N(0, I)``, B from ``wor``.

    The same update rule as :func:`sgld`, with the batches of a fresh random permutation of the N
    samples each epoch, cut into ``M = floor(N / b)`` batches (the remainder is dropped). The target is
    ``exp(-L/T)``; the minibatch noise cancels within each epoch (docs/concepts.md), which leaves an
    O(lr) error of the order of full-batch Langevin's.

    ``lr`` and ``temperature`` are numbers or schedules (:mod:`sgworld.schedules`); ``preconditioner`` a
    constant symmetric positive definite P (p, p): ``w <- w - lr P grad L_B(w) + sqrt(2 lr T) C xi``,
    ``P = C C^T`` (see :func:`sgworld.samplers.sgld.sgld`).

    Reference: S. Adhikari, A. Kabakçıoğlu, A. Strang, D. Yuret, M. Hinczewski, "Machine learning in and
    out of equilibrium", arXiv:2306.03521.
    """
    return stochastic_gradient_kernel(problem, lr, temperature, "wor", "sgworld", preconditioner=preconditioner)
