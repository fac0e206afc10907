"""Scenario builders shared by the tests: exactly solvable linear-Gaussian processes."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from conftest import shifted_seed
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
