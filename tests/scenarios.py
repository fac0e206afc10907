"""Scenario builders shared by the tests: exactly solvable linear-Gaussian processes, and small
problems whose Hessian and gradient covariance are known at every point."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from conftest import shifted_seed
from sgworld import BayesianLinearRegression, Problem
from sgworld.theory.stationary import solve_lyapunov


def rotation(t: float) -> np.ndarray:
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def simulate_linear_gaussian(F, noise_cov, cov0, chains, steps, seed):
    """x_{n+1} = F x_n + N(0, noise_cov), x_0 ~ N(0, cov0), vectorised over chains (``seed`` is shifted
    by the suite's seed offset)."""
    rng = np.random.default_rng(shifted_seed(seed))
    p = F.shape[0]
    noise = rng.normal(size=(chains, steps, p)) @ np.linalg.cholesky(noise_cov).T
    x = np.empty((chains, steps, p))
    x[:, 0] = rng.normal(size=(chains, p)) @ np.linalg.cholesky(cov0).T
    for n in range(1, steps):
        x[:, n] = x[:, n - 1] @ F.T + noise[:, n]
    return x


def exact_ou(B, Dc, dt):
    """Exact transition (F, noise covariance) and stationary covariance C of the OU process
    ``dx = -B x dt + sqrt(2 Dc) dW`` sampled every dt."""
    C = solve_lyapunov(B, Dc, 1.0, symmetric=False)  # B C + C B^T = 2 Dc
    F = scipy.linalg.expm(-B * dt)
    return F, C - F @ C @ F.T, C


# --------------------------------------------------------------------------- problems at a point


@pytest.fixture
def one_torch_thread():
    """Small per-step tensors: intra-op threads only add synchronisation (and stall on a loaded machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def blr(n: int, seed: int = 12345) -> BayesianLinearRegression:
    """Bayesian linear regression with correlated features (non-commuting H and S)."""
    rng = np.random.default_rng(shifted_seed(seed))
    X = rng.normal(size=(n, 2)) @ np.array([[1.0, 0.4], [0.0, 0.7]])
    y = X @ np.array([0.5, -1.0]) + 0.3 * rng.normal(size=n)
    return BayesianLinearRegression(torch.tensor(X), torch.tensor(y), noise_std=0.3, prior_std=1.0)


def generic(problem) -> Problem:
    """The same quadratic potentials as a plain Problem: Hessian and gradients through torch.func."""
    return Problem(problem.potential_fn, problem.data, problem.dim)


def blr_closed_forms(problem: BayesianLinearRegression, w: np.ndarray):
    """``H = X^T X / sigma^2 + I / tau^2`` and ``S = (N/sigma^2)^2 Cov_i[r_i x_i]``, ``r_i = x_i.w - y_i``."""
    X, y = problem.X.numpy(), problem.y.numpy()
    n = X.shape[0]
    H = X.T @ X / problem.noise_std**2 + np.eye(X.shape[1]) / problem.prior_std**2
    u = (n / problem.noise_std**2) * (X @ w - y)[:, None] * X
    du = u - u.mean(0)
    return H, du.T @ du / n


def double_well(n: int = 20, seed: int = 1) -> Problem:
    """``U_i = (w^2 - 1)^2 + eps_i w`` in one dimension: maximum near 0, minima near +-1."""
    eps = torch.tensor(0.1 * np.random.default_rng(shifted_seed(seed)).normal(size=n))
    return Problem(lambda w, e: (w[0] ** 2 - 1) ** 2 + e * w[0], (eps,), 1)
