"""Potentials: per-sample U_i over a flat parameter vector, with their data."""

from .base import Problem
from .energy import EnergyProblem, ill_conditioned_gaussian, rough_well
from .module import from_module
from .quadratic import BayesianLinearRegression, Gaussian, GaussianLocation, QuadraticProblem

__all__ = ["Problem", "from_module", "QuadraticProblem", "BayesianLinearRegression", "GaussianLocation", "Gaussian",
           "EnergyProblem", "ill_conditioned_gaussian", "rough_well"]
