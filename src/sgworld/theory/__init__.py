"""Fokker–Planck theory of SGD near a minimum (docs/concepts.md, "SGD near a minimum").

``stationary``  the stationary state of a linear drift: Lyapunov covariance, circulation, velocity,
                entropy production (``StationaryState``, the record every result below holds)
``minimum``     the point it expands around: ``w*`` by Newton's method, the gradient covariance ``S``
``wr``          step-wise SGD (``wr``, ``iid``): per-step diffusion, ``wr_theory``
``wor``         random reshuffling (``wor``): ``L_eff`` and its minimiser, the per-epoch diffusion,
                ``wor_theory``
``topk``        the ``wr`` theory in the top-k Hessian eigenspace, for networks too large for p x p
``exact``       exact discrete-time stationary moments for quadratic problems (SGD, SGLD, SGWORLD,
                preconditioned SGLD, SGLD-CV, SGHMC; wr, iid, wor)
``ladder``      exact transition matrices of HMC, LAHMC and MJHMC on ring energy ladders

Reference: arXiv 2306.03521."""

from .exact import (
    Moments, epoch_stationary_moments, sghmc_stationary_moments, stepwise_stationary_moments, ula_stationary_cov,
)
from .minimum import NewtonResult, find_minimum, gradient_covariance
from .stationary import (
    StationaryState, circulation, commutator_ratio, entropy_production_rate, solve_lyapunov,
    stationary_state, velocity,
)
from .topk import (
    TopKTheory, covariance_operator, dense_matrix, hessian_operator, subspace_gradient_covariance,
    top_eigenpairs, topk_theory,
)
from .wor import (
    EffectiveMinimum, EpochDiffusion, WORTheory, effective_loss, minimize_effective_loss, sigma_wor,
    wor_diffusion_leading, wor_eigen_variance_standard_error, wor_epoch_diffusion, wor_sigma_standard_error,
    wor_theory, wor_validity,
)
from .wr import WRTheory, diffusion, wr_theory

__all__ = [
    "Moments", "stepwise_stationary_moments", "epoch_stationary_moments", "sghmc_stationary_moments",
    "ula_stationary_cov",
    "find_minimum", "NewtonResult", "gradient_covariance", "diffusion", "WRTheory", "wr_theory",
    "effective_loss", "minimize_effective_loss", "EffectiveMinimum", "wor_epoch_diffusion", "EpochDiffusion",
    "wor_diffusion_leading", "sigma_wor", "wor_sigma_standard_error", "wor_eigen_variance_standard_error",
    "wor_validity", "WORTheory", "wor_theory",
    "StationaryState", "stationary_state", "solve_lyapunov", "circulation", "velocity",
    "entropy_production_rate", "commutator_ratio",
    "TopKTheory", "topk_theory", "hessian_operator", "covariance_operator", "subspace_gradient_covariance",
    "top_eigenpairs", "dense_matrix",
]
