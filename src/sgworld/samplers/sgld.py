"""SGLD (Welling & Teh 2011): ``w <- w - lr grad L_B(w) + sqrt(2 lr T) xi`` with ``wr`` minibatches.

Targets ``exp(-L/T)`` up to an O(lr) bias that carries an (N/b)-sized minibatch term and leaves the
stationary state out of equilibrium (arXiv 2306.03521). Welling & Teh's step size is ``eps = 2 lr``.
"""

from ..problems import Problem
from .base import Kernel
from .langevin import stochastic_gradient_kernel


def sgld(problem: Problem, lr, temperature=1.0, *, preconditioner=None) -> Kernel:
    """SGLD kernel: ``w <- w - lr grad L_B(w) + sqrt(2 lr T) xi``, ``xi ~ N(0, I)``, B drawn ``wr``.

    ``L_B`` is the minibatch mean of the per-sample potentials ``U_i = -N log p(y_i | x_i, w) - log p(w)``
    (docs/concepts.md), so the target is ``exp(-L/T)``, the posterior at ``T = 1``. Each step's batch is
    b distinct indices drawn independently of all other steps; pass ``scheme=`` to ``sample`` for another
    stream. Welling & Teh's step size is ``eps = 2 lr``.

    ``lr`` and ``temperature`` are numbers or schedules (:mod:`sgworld.schedules`, e.g. Welling & Teh's
    ``PolynomialDecay``). ``preconditioner``: a constant symmetric positive definite P (p, p), e.g. the
    inverse Hessian at the MAP; the update is then ``w <- w - lr P grad L_B(w) + sqrt(2 lr T) C xi`` with
    ``P = C C^T`` (Cholesky), which still targets ``exp(-L/T)`` and has the step-size limit
    ``lr < 2 / h_max(C^T H C)``.

    References: M. Welling, Y. W. Teh, "Bayesian learning via stochastic gradient Langevin dynamics",
    ICML 2011; S. Adhikari et al., "Machine learning in and out of equilibrium", arXiv:2306.03521.
    """
    return stochastic_gradient_kernel(problem, lr, temperature, "wr", "sgld", preconditioner=preconditioner)
