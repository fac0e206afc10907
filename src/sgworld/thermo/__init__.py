"""Trajectory side of the nonequilibrium analysis: empirical moments, areal velocity, entropy
production, fluctuation theorems (in memory or streamed over very long runs) and model-free
linear-drift estimates (arXiv 2306.03521)."""

from .fluctuation import detailed_fluctuation_theorem, integral_fluctuation_theorem, plot_detailed_ft
from .model_free import LinearDriftFit, fit_linear_drift
from .streaming import EntropyProductionStream, simulate_linear_gaussian_chunks
from .trajectory import (
    Estimate, areal_velocity, empirical_covariance, empirical_mean, entropy_production_steps,
    exact_linear_gaussian_entropy_production, window_sums,
)

__all__ = [
    "integral_fluctuation_theorem", "detailed_fluctuation_theorem", "plot_detailed_ft", "LinearDriftFit",
    "fit_linear_drift", "Estimate", "areal_velocity", "empirical_covariance", "empirical_mean",
    "entropy_production_steps", "exact_linear_gaussian_entropy_production", "window_sums",
    "EntropyProductionStream", "simulate_linear_gaussian_chunks",
]
