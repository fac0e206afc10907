"""Model-free entropy production from a fitted linear drift (sgworld.thermo.model_free).

Same 2-D Ornstein-Uhlenbeck scenario as test_trajectory.py (exact discrete-time sampling, SGD map
``B dt = lr H``, ``D = D_c dt``). The fitted model describes the discrete recursion
``x_{n+1} = F x_n + noise`` itself, so its targets are the exact discrete values: ``K = I - F``,
``2 D = C - F C F^T``, ``Sigma = C``, ``Q = (C F^T - F C)/2`` and the rate
``-tr(Q D^{-1} Q C^{-1})`` built from them.

Statistical checks use |z| < Z = 4.5 (two-sided false-failure probability 6.8e-6 each); with the
11 checks in this file the chance of any false failure is below 1e-4. Standard errors: least
squares theory for K and D (transitions of a Markov chain given the current state are
independent), the fit's bootstrap over chains for Q and the rate.
"""

import numpy as np
import pytest

from sgworld.theory.stationary import StationaryState, entropy_production_rate, stationary_state
from sgworld.thermo.model_free import LinearDriftFit, fit_linear_drift
from sgworld.thermo.trajectory import (
    areal_velocity,
    chain_mean,
    empirical_covariance,
    entropy_production_steps,
    exact_linear_gaussian_entropy_production,
)

from conftest import shifted_seed
from scenarios import rotation, simulate_linear_gaussian, exact_ou

Z = 4.5
DT = 0.05
CHAINS, STEPS = 2000, 1000








H_NEQ = np.diag([1.0, 3.0])
DC_NEQ = rotation(np.pi / 4) @ np.diag([1.0, 0.2]) @ rotation(np.pi / 4).T


@pytest.fixture(scope="module")
def neq():
    F, N, C = exact_ou(H_NEQ, DC_NEQ, DT)
    path = simulate_linear_gaussian(F, N, C, CHAINS, STEPS, seed=21)
    return dict(F=F, N=N, C=C, path=path, fit=fit_linear_drift(path, n_boot=200, seed=shifted_seed(1)))


@pytest.fixture(scope="module")
def eq():
    H_phi = np.array([[2.0, 0.5], [0.5, 1.0]])
    F, N, C = exact_ou(DC_NEQ @ H_phi, DC_NEQ, DT)  # drift -Dc grad phi: equilibrium
    path = simulate_linear_gaussian(F, N, C, CHAINS, STEPS, seed=22)
    return dict(F=F, N=N, C=C, path=path, fit=fit_linear_drift(path, n_boot=200, seed=shifted_seed(2)))


def test_fit_recovers_drift_and_diffusion(neq):
    fit, F, N, C = neq["fit"], neq["F"], neq["N"], neq["C"]
    n = fit.n_transitions
    assert isinstance(fit, LinearDriftFit) and n == CHAINS * (STEPS - 1) and fit.n_chains == CHAINS
    # OLS: Cov(K_i.) = N_ii C^{-1} / n; sample covariance of Gaussian noise: Var = (N_ii N_jj + N_ij^2) / n.
    se_K = np.sqrt(np.outer(np.diag(N), np.diag(np.linalg.inv(C))) / n)
    assert np.all(np.abs((fit.state.H - (np.eye(2) - F)) / se_K) < Z)  # 4 checks
    se_D = 0.5 * np.sqrt((np.outer(np.diag(N), np.diag(N)) + N**2) / n)
    z_D = (fit.state.D - N / 2) / se_D
    assert np.all(np.abs(z_D[np.triu_indices(2)]) < Z)  # 3 checks
    assert np.all(np.abs(fit.state.mean) < 0.05)


def test_fitted_state_reuses_the_theory_path(neq):
    fit, path = neq["fit"], neq["path"]
    assert isinstance(fit.state, StationaryState) and fit.state.lr == 1.0
    expected = stationary_state(fit.state.H, fit.state.D, 1.0, fit.state.mean, symmetric=False, discrete=True)
    np.testing.assert_allclose(fit.state.Sigma, expected.Sigma, rtol=1e-12)
    np.testing.assert_allclose(fit.state.Q, expected.Q, rtol=1e-12)
    assert fit.state.ep_rate == entropy_production_rate(fit.state.Q, fit.state.D, fit.state.Sigma)
    np.testing.assert_array_equal(fit.entropy_production_steps(path[:10]),
                                  entropy_production_steps(path[:10], fit.state))
    np.testing.assert_array_equal(
        fit.exact_entropy_production_steps(path[:10]),
        exact_linear_gaussian_entropy_production(np.eye(2) - fit.state.H, 2 * fit.state.D, path[:10],
                                                 mean=fit.state.mean))


def test_fitted_moments_match_the_trajectory(neq):
    # The discrete-time Sigma of the fit reproduces the trajectory's covariance and its Q the
    # areal velocity: in-sample identities up to edge terms of relative size ~ sqrt(tau / steps)
    # of a standard error (measured over 5 seeds: at most 0.16 SE), so a 1 SE bound never binds.
    fit, path = neq["fit"], neq["path"]
    cov, A = empirical_covariance(path), areal_velocity(path)
    assert np.all(np.abs(fit.state.Sigma - cov.value) < cov.stderr)
    assert abs(fit.state.Q[0, 1] - A.value[0, 1]) < A.stderr[0, 1]


def test_model_free_Q_and_rate(neq):
    fit, F, N, C = neq["fit"], neq["F"], neq["N"], neq["C"]
    Q_exact = 0.5 * (C @ F.T - F @ C)
    rate_exact = entropy_production_rate(Q_exact, N / 2, C)
    assert abs((fit.state.Q[0, 1] - Q_exact[0, 1]) / fit.Q_stderr[0, 1]) < Z
    assert abs((fit.state.ep_rate - rate_exact) / fit.ep_rate_stderr) < Z
    assert fit.ep_rate_stderr < 0.02 * rate_exact  # resolved to 2%
    # and the continuous-time theory, per step: dt * tr(Q^T Dc^-1 Q C^-1), within its O(dt h) error
    theory = stationary_state(H_NEQ, DC_NEQ * DT, DT, np.zeros(2)).ep_rate
    assert abs(rate_exact / theory - 1) < DT * 3.0


def test_model_free_sigma_mean_is_the_predicted_rate(neq):
    # The mean of the fitted midpoint sigma_n equals the fitted model's rate (exactly in expectation
    # under the model; in sample up to edge terms). Its chain-spread SE ignores the fit's own
    # uncertainty, so the comparison with the truth uses the bootstrap SE of the rate.
    # (Measured over 5 seeds: at most 0.02 SE apart.)
    fit = neq["fit"]
    est = chain_mean(fit.entropy_production_steps(neq["path"]))
    assert abs(est.value - fit.state.ep_rate) < 0.5 * fit.ep_rate_stderr


def test_equilibrium_control(eq):
    fit = eq["fit"]
    assert abs(fit.state.Q[0, 1] / fit.Q_stderr[0, 1]) < Z
    # In 2-D the rate is c * Q_12^2, so "consistent with zero" is: below the rate at |Q_12| = Z SE.
    J = np.array([[0.0, 1.0], [-1.0, 0.0]])
    bound = entropy_production_rate(Z * fit.Q_stderr[0, 1] * J, fit.state.D, fit.state.Sigma)
    assert fit.state.ep_rate <= bound
    neq_rate = stationary_state(H_NEQ, DC_NEQ * DT, DT, np.zeros(2)).ep_rate
    assert bound < 1e-3 * neq_rate  # the control could have seen a rate 1000x below the nonequilibrium one


def test_centring_keeps_precision_at_tiny_spread():
    # The paper's WOR regime: spread ~3e-6 around |w| ~ 1. Shifting the data must not change the fit.
    F, N, C = exact_ou(H_NEQ, DC_NEQ, DT)
    path = 3e-6 * simulate_linear_gaussian(F, N, C, 50, 400, seed=23)
    a = fit_linear_drift(path, n_boot=0)
    b = fit_linear_drift(path + np.array([1.0, -2.0]), n_boot=0)
    np.testing.assert_allclose(b.state.H, a.state.H, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(b.state.D, a.state.D, rtol=1e-6)
    np.testing.assert_allclose(b.state.mean - np.array([1.0, -2.0]), a.state.mean, atol=1e-12)


def test_bootstrap_is_reproducible_and_optional():
    F, N, C = exact_ou(H_NEQ, DC_NEQ, DT)
    path = simulate_linear_gaussian(F, N, C, 20, 200, seed=24)
    a = fit_linear_drift(path, n_boot=30, seed=shifted_seed(5))
    b = fit_linear_drift(path, n_boot=30, seed=np.random.default_rng(shifted_seed(5)))
    assert a.ep_rate_stderr == b.ep_rate_stderr and a.n_boot == 30
    none = fit_linear_drift(path, n_boot=0)
    assert np.isnan(none.ep_rate_stderr) and none.n_boot == 0
    single = fit_linear_drift(path[0], n_boot=30)
    assert single.n_chains == 1 and np.isnan(single.ep_rate_stderr)


def test_bad_input():
    rng = np.random.default_rng(shifted_seed(25))
    frozen = rng.normal(size=(4, 100, 2))
    frozen[..., 1] = 3.0  # a parameter that never moves
    with pytest.raises(ValueError, match="singular"):
        fit_linear_drift(frozen, n_boot=0)
    with pytest.raises(ValueError, match="transitions"):
        fit_linear_drift(rng.normal(size=(1, 3, 2)), n_boot=0)
    explosive = simulate_linear_gaussian(1.05 * np.eye(2), np.eye(2), np.eye(2), 10, 200, seed=26)
    with pytest.raises(ValueError, match="no stationary state"):
        fit_linear_drift(explosive, n_boot=0)
    with pytest.raises(ValueError, match="non-finite"):
        fit_linear_drift(np.full((2, 10, 2), np.nan))
