"""Fokker–Planck theory of SGD at a point: exact discrete-time moments for quadratic problems
(``exact``), the stationary state near a minimum (``stationary``), the quantities computed from a
Problem at a point (``point``) and their top-k restriction for large networks (``topk``).
Reference: arXiv 2306.03521."""

from .exact import Moments, epoch_stationary_moments, stepwise_stationary_moments, ula_stationary_cov
from .point import (
    diffusion, effective_loss, find_minimum, gradient_covariance, minimize_effective_loss, sigma_wor,
    wor_epoch_diffusion, wor_theory, wor_validity, wr_theory,
)
from .stationary import (
    StationaryState, circulation, commutator_ratio, entropy_production_rate, solve_lyapunov,
    stationary_state, velocity,
)
from .topk import (
    TopKTheory, covariance_operator, dense_matrix, hessian_operator, subspace_gradient_covariance,
    top_eigenpairs, topk_theory,
)

__all__ = [
    "Moments", "stepwise_stationary_moments", "epoch_stationary_moments", "ula_stationary_cov",
    "find_minimum", "gradient_covariance", "diffusion", "effective_loss", "minimize_effective_loss",
    "wor_epoch_diffusion", "sigma_wor", "wor_validity", "wr_theory", "wor_theory",
    "StationaryState", "stationary_state", "solve_lyapunov", "circulation", "velocity",
    "entropy_production_rate", "commutator_ratio",
    "TopKTheory", "topk_theory", "hessian_operator", "covariance_operator", "subspace_gradient_covariance",
    "top_eigenpairs", "dense_matrix",
]
