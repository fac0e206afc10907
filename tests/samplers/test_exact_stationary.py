"""Samplers against exact discrete-time stationary moments, minibatch noise switched on.

Each test runs K independent chains from the exact posterior, burns in for many relaxation times
1/(lr h_min), and compares the pooled mean (p numbers) and covariance (p(p+1)/2 numbers) with the
exact answer. Standard errors come from the spread of the K independent chains' own averages, so
they are valid whatever the autocorrelation within a chain. With Z_TOL = 5 per number and 5 numbers
per test, each test's false-failure rate is below 3e-6.
"""

import numpy as np
import pytest
import torch

from sgworld import BayesianLinearRegression, sample
from sgworld.theory.exact import epoch_stationary_moments, stepwise_stationary_moments, ula_stationary_cov

from conftest import Z_TOL, assert_within_se, chain_moments, shifted_seed

def check(trace, exact_mean, exact_cov, label):
    """Compare pooled mean and the upper triangle of the covariance (5 numbers for p = 2)."""
    mean, mean_se, cov, cov_se = chain_moments(trace.draws)
    upper = np.triu_indices(2)
    assert_within_se(mean, exact_mean, mean_se, what=f"{label} mean")
    assert_within_se(cov[upper], exact_cov[upper], cov_se[upper], what=f"{label} covariance")
    return cov_se


def run(problem, method, lr, relax_steps, **kw):
    target = problem.target()
    rng = np.random.default_rng(shifted_seed(99))
    init = torch.tensor(rng.multivariate_normal(target.mean, target.cov, size=kw.pop("chains", 1500)))
    return sample(problem, method, lr=lr, chains=init.shape[0], init=init, burn_in=10 * relax_steps,
                  thin=max(1, relax_steps // 2), num_draws=40, seed=shifted_seed(5), progress=False, **kw)


def relaxation(problem, lr):
    h = np.linalg.eigvalsh(problem.hessian().numpy())
    return int(np.ceil(1 / (lr * h[0]))), h


@pytest.mark.parametrize("method, temperature, scheme", [
    ("sgld", 1.0, "wr"), ("sgld", 1.0, "iid"), ("sgd", 0.0, "wr"),
])
def test_stepwise_schemes_match_exact_moments(blr_problem, method, temperature, scheme):
    p = blr_problem
    _, h = relaxation(p, 1.0)
    lr = 0.15 / h[-1]
    relax, _ = relaxation(p, lr)
    A, g = p.quadratic_terms()
    exact = stepwise_stationary_moments(A, g, lr, temperature, 4, scheme=scheme)
    trace = run(p, method, lr, relax, batch_size=4, scheme=scheme)
    cov_se = check(trace, exact.mean, exact.cov, f"{method}/{scheme}")
    if temperature > 0:
        # Power: the exact discrete answer is far from the posterior, so the test discriminates.
        assert np.max(np.abs(exact.cov - p.target().cov) / cov_se) > 3 * Z_TOL


@pytest.mark.parametrize("method, temperature, lr_hmax", [("sgworld", 1.0, 0.1), ("sgd", 0.0, 0.3)])
def test_wor_matches_exact_epoch_moments(method, temperature, lr_hmax):
    # Tiny N so the average over permutations is an exact enumeration (6!/(2!^3) = 90 partitions).
    rng = np.random.default_rng(shifted_seed(7))
    X = rng.normal(size=(6, 2)) * np.array([1.0, 0.6])
    y = X @ np.array([1.0, -0.5]) + 0.5 * rng.normal(size=6)
    p = BayesianLinearRegression(torch.tensor(X), torch.tensor(y), noise_std=0.5, prior_std=1.0)
    _, h = relaxation(p, 1.0)
    lr = lr_hmax / h[-1]
    relax, _ = relaxation(p, lr)
    A, g = p.quadratic_terms()
    exact = epoch_stationary_moments(A, g, lr, temperature, 2, permutations="enumerate")
    trace = run(p, method, lr, relax, batch_size=2, scheme="wor")
    assert np.all(trace.steps % 3 == 0)  # draws at epoch boundaries (M = 3)
    check(trace, exact.mean, exact.cov, f"{method}/wor")


def test_ula_matches_closed_form(blr_problem):
    p = blr_problem
    _, h = relaxation(p, 1.0)
    lr = 0.5 / h[-1]
    relax, _ = relaxation(p, lr)
    H = p.hessian().numpy()
    trace = run(p, "ula", lr, relax)
    check(trace, p.target().mean, ula_stationary_cov(H, lr, 1.0), "ula")


def test_mala_matches_exact_posterior(blr_problem):
    # At a step where ULA's bias is large, MALA must still be exact.
    p = blr_problem
    _, h = relaxation(p, 1.0)
    lr = 0.8 / h[-1]
    relax, _ = relaxation(p, lr)
    trace = run(p, "mala", lr, relax)
    rate = np.mean(trace.meta["acceptance_rate"])
    assert 0.3 < rate < 1.0
    check(trace, p.target().mean, p.target().cov, "mala")
