"""Trajectory statistics and per-step entropy production (sgworld.thermo.trajectory).

Statistical checks compare Monte Carlo estimates with exact values through z-scores with the
estimators' own standard errors (spread over independent chains). Every such check uses
|z| < Z = 4.5, a two-sided false-failure probability of 6.8e-6 per check; with the 10 checks
in this file, the chance that any fails by bad luck is below 1e-4.

The physics scenario is a 2-D Ornstein-Uhlenbeck process ``dx = -B x dt + sqrt(2 D_c) dW``
sampled exactly every ``dt`` (transition mean ``e^{-B dt} x``, covariance
``C - e^{-B dt} C e^{-B^T dt}``, with ``B C + C B^T = 2 D_c``), started in its stationary state.
SGD near a minimum, ``w_{n+1} = w_n - lr H w_n + noise`` with per-step noise covariance ``2 D``,
maps onto it with ``B dt = lr H`` and ``D = D_c dt``: here ``lr = dt`` and ``H = B``, so the theory's
per-step ``Q`` and rate are ``dt`` times the per-unit-time ones. Because the OU transition is exact,
the trajectory quantities are compared with their *exact discrete-time* expectations (no
discretisation bias), and those are checked separately, deterministically, against the
continuous-time theory within its O(dt) error.
"""

import numpy as np
import pytest
import scipy.linalg

from sgworld.theory.stationary import stationary_state
from sgworld.thermo.trajectory import (
    Estimate,
    areal_velocity,
    as_path,
    bootstrap_sums,
    chain_mean,
    empirical_covariance,
    empirical_mean,
    entropy_production_steps,
    exact_linear_gaussian_entropy_production,
    window_sums,
)

from conftest import shifted_seed
from scenarios import rotation, simulate_linear_gaussian, exact_ou

Z = 4.5
DT = 0.05
CHAINS, STEPS = 2000, 1000








def midpoint_mean(G, F, C):
    """Exact stationary mean of m_n^T G (x_{n+1} - x_n), m_n the midpoint: tr(G (F C - C F^T)) / 2."""
    return 0.5 * np.trace(G @ (F @ C - C @ F.T))


H_NEQ = np.diag([1.0, 3.0])
DC_NEQ = rotation(np.pi / 4) @ np.diag([1.0, 0.2]) @ rotation(np.pi / 4).T  # does not commute with H


@pytest.fixture(scope="module")
def ou_neq():
    F, N, C = exact_ou(H_NEQ, DC_NEQ, DT)
    state = stationary_state(H_NEQ, DC_NEQ * DT, DT, np.zeros(2))  # SGD map: lr = dt, D = Dc dt
    path = simulate_linear_gaussian(F, N, C, CHAINS, STEPS, seed=11)
    return dict(F=F, N=N, C=C, state=state, path=path)


@pytest.fixture(scope="module")
def ou_eq():
    # Equilibrium control with a non-symmetric drift: B = Dc H_phi (drift = -Dc grad phi), so
    # Dc^{-1} B is symmetric, the current vanishes and C = H_phi^{-1}.
    H_phi = np.array([[2.0, 0.5], [0.5, 1.0]])
    B = DC_NEQ @ H_phi
    F, N, C = exact_ou(B, DC_NEQ, DT)
    state = stationary_state(B, DC_NEQ * DT, DT, np.zeros(2), symmetric=False)
    path = simulate_linear_gaussian(F, N, C, CHAINS, STEPS, seed=12)
    return dict(B=B, F=F, C=C, H_phi=H_phi, state=state, path=path)


# --------------------------------------------------------------------------- OU: theory path


def test_ou_theory_matches_continuous_time_formulas(ou_neq):
    # Per step = dt x per unit time; the OU circulation is (B C - C B^T)/2 and the rate
    # tr(Q^T Dc^{-1} Q C^{-1}) per unit time.
    state, C = ou_neq["state"], ou_neq["C"]
    np.testing.assert_allclose(state.Sigma, C, rtol=1e-12)
    Q_ou = 0.5 * (H_NEQ @ C - C @ H_NEQ.T)
    np.testing.assert_allclose(state.Q / DT, Q_ou, rtol=1e-12)
    rate_ou = np.trace(Q_ou.T @ np.linalg.inv(DC_NEQ) @ Q_ou @ np.linalg.inv(C))
    np.testing.assert_allclose(state.ep_rate / DT, rate_ou, rtol=1e-12)
    assert rate_ou > 0.5  # clearly out of equilibrium


def test_ou_discrete_values_approach_theory_at_first_order():
    # The exact discrete areal velocity and midpoint-sigma mean differ from the theory's per-step
    # Q and rate by O(dt h): bounded by dt h_max and shrinking ~10x when dt does.
    errors = []
    for dt in (DT, DT / 10):
        F, N, C = exact_ou(H_NEQ, DC_NEQ, dt)
        state = stationary_state(H_NEQ, DC_NEQ * dt, dt, np.zeros(2))
        A = 0.5 * (C @ F.T - F @ C)
        G = -np.linalg.solve(state.Sigma, state.Q.T @ np.linalg.inv(state.D))
        errors.append((A[0, 1] / state.Q[0, 1] - 1, midpoint_mean(G, F, C) / state.ep_rate - 1))
    errors = np.abs(np.array(errors))
    assert np.all(errors[0] < DT * 3.0)  # dt * h_max
    assert np.all((errors[0] / errors[1] > 7) & (errors[0] / errors[1] < 13))


def test_ou_empirical_covariance(ou_neq):
    est = empirical_covariance(ou_neq["path"])
    z = est.zscore(ou_neq["C"])
    assert np.all(np.abs(z[np.triu_indices(2)]) < Z), z  # 3 checks


def test_ou_empirical_mean(ou_neq):
    est = empirical_mean(ou_neq["path"])
    assert np.all(np.abs(est.zscore(0.0)) < Z)  # 2 checks


def test_ou_areal_velocity_estimates_Q(ou_neq):
    F, C = ou_neq["F"], ou_neq["C"]
    est = areal_velocity(ou_neq["path"])
    np.testing.assert_array_equal(est.value, -est.value.T)
    A_exact = 0.5 * (C @ F.T - F @ C)  # = (1/2)(K C - C K^T), K = I - F: the circulation of the recursion
    assert abs(est.zscore(A_exact)[0, 1]) < Z
    assert est.stderr[0, 1] < 0.01 * abs(A_exact[0, 1])  # resolved to 1%, so the check has power


def test_ou_entropy_production_rate_from_theory_sigma(ou_neq):
    state, F, C = ou_neq["state"], ou_neq["F"], ou_neq["C"]
    sigma = entropy_production_steps(ou_neq["path"], state)
    assert sigma.shape == (CHAINS, STEPS - 1)
    est = chain_mean(sigma)
    G = -np.linalg.solve(state.Sigma, state.Q.T @ np.linalg.inv(state.D))
    expected = midpoint_mean(G, F, C)
    assert abs((est.value - expected) / est.stderr) < Z
    assert est.stderr < 0.01 * expected


def test_ou_equilibrium_control(ou_eq):
    state = ou_eq["state"]
    np.testing.assert_allclose(state.Sigma, np.linalg.inv(ou_eq["H_phi"]), rtol=1e-12)
    assert np.abs(state.Q).max() < 1e-14 and state.ep_rate < 1e-25
    assert np.abs(entropy_production_steps(ou_eq["path"], state)).max() < 1e-12
    est = areal_velocity(ou_eq["path"])
    assert abs(est.zscore(0.0)[0, 1]) < Z
    assert est.stderr[0, 1] < 0.01 * abs(0.5 * DT * (ou_eq["B"] @ ou_eq["C"])[0, 1])  # power vs. a typical Q


# --------------------------------------------------------------------------- sigma_n: algebra


def test_midpoint_sigma_is_odd_under_time_reversal(ou_neq):
    path, state = ou_neq["path"][:20, :50], ou_neq["state"]
    forward = entropy_production_steps(path, state)
    backward = entropy_production_steps(path[:, ::-1], state)
    np.testing.assert_allclose(backward, -forward[:, ::-1], rtol=1e-12, atol=1e-15)
    ito_f = entropy_production_steps(path, state, rule="ito")
    ito_b = entropy_production_steps(path[:, ::-1], state, rule="ito")
    assert np.abs(ito_b + ito_f[:, ::-1]).max() > 1e-3


def test_sigma_is_v_D_inverse_step_and_ito_difference(ou_neq):
    path, state = ou_neq["path"][:5, :30], ou_neq["state"]
    dx = np.diff(path, axis=1)
    mid = 0.5 * (path[:, 1:] + path[:, :-1])
    Dinv = np.linalg.inv(state.D)
    expected = np.einsum("cni,ij,cnj->cn", state.velocity(mid), Dinv, dx)
    sigma = entropy_production_steps(path, state)
    np.testing.assert_allclose(sigma, expected, rtol=1e-10, atol=1e-14)
    # Ito = midpoint + (1/2) dx^T Sigma^{-1} Q^T D^{-1} dx (the documented difference)
    M = np.linalg.solve(state.Sigma, state.Q.T @ Dinv)
    ito = entropy_production_steps(path, state, rule="ito")
    np.testing.assert_allclose(ito, sigma + 0.5 * np.einsum("cni,ij,cnj->cn", dx, M, dx), rtol=1e-10, atol=1e-14)


def test_exact_linear_gaussian_entropy_production():
    # Mean = KL( law(x_n, x_{n+1}) || law(x_{n+1}, x_n) ), closed form for Gaussians.
    F = 0.7 * rotation(0.3)
    N = np.diag([1.0, 0.4])
    C = scipy.linalg.solve_discrete_lyapunov(F, N)
    joint = np.block([[C, C @ F.T], [F @ C, C]])
    reverse = np.block([[C, F @ C], [C @ F.T, C]])
    kl = 0.5 * (np.trace(np.linalg.solve(reverse, joint)) - 4)
    path = simulate_linear_gaussian(F, N, C, 1000, 200, seed=13)
    s = exact_linear_gaussian_entropy_production(F, N, path)
    est = chain_mean(s)
    assert abs((est.value - kl) / est.stderr) < Z
    # Odd under time reversal, like the midpoint sigma.
    np.testing.assert_allclose(exact_linear_gaussian_entropy_production(F, N, path[:3, ::-1]), -s[:3, ::-1],
                               rtol=1e-10, atol=1e-13)


def test_exact_entropy_production_vanishes_for_a_reversible_chain():
    # F symmetric, N = I: F C is symmetric (detailed balance), so s_n = 0 identically.
    F = np.array([[0.6, 0.2], [0.2, 0.3]])
    path = np.random.default_rng(shifted_seed(14)).normal(size=(3, 40, 2))  # any path: the bilinear form is zero
    assert np.abs(exact_linear_gaussian_entropy_production(F, np.eye(2), path)).max() < 1e-12


def test_midpoint_sigma_is_small_step_limit_of_exact():
    # The midpoint sigma_n is the small-step form of the exact s_n: their RMS difference, relative
    # to the per-step fluctuation, vanishes as dt^2 (measured: 1.9e-3 at dt = 0.04, 16x less at 0.01).
    rms = []
    for dt in (0.04, 0.01):
        F, N, C = exact_ou(H_NEQ, DC_NEQ, dt)
        state = stationary_state(H_NEQ, DC_NEQ * dt, dt, np.zeros(2))
        path = simulate_linear_gaussian(F, N, C, 200, 400, seed=15)
        exact = exact_linear_gaussian_entropy_production(F, N, path)
        sigma = entropy_production_steps(path, state)
        rms.append(np.sqrt(np.mean((exact - sigma) ** 2) / np.mean(exact**2)))
    assert rms[0] < 0.01
    assert 8 < rms[0] / rms[1] < 32  # 16 for a second-order difference


# --------------------------------------------------------------------------- windows, shapes, helpers


def test_window_sums():
    s = np.arange(2 * 7, dtype=float).reshape(2, 7)
    np.testing.assert_array_equal(window_sums(s, 3), [[3, 12], [24, 33]])  # remainder dropped
    np.testing.assert_array_equal(window_sums(s, 3, overlapping=True)[0], [3, 6, 9, 12, 15])
    np.testing.assert_array_equal(window_sums(s[0], 7), [[21]])
    for bad in (0, 8, 2.5, True):
        with pytest.raises(ValueError, match="window length"):
            window_sums(s, bad)


def test_as_path_shapes_and_errors():
    torch = pytest.importorskip("torch")
    assert as_path(np.zeros((5, 3))).shape == (1, 5, 3)
    out = as_path(torch.zeros(2, 5, 3, dtype=torch.float32))
    assert out.dtype == np.float64 and out.shape == (2, 5, 3)
    with pytest.raises(ValueError, match="shape"):
        as_path(np.zeros(5))
    with pytest.raises(ValueError, match="non-finite"):
        as_path(np.array([[0.0], [np.nan]]))
    with pytest.raises(ValueError, match="at least"):
        as_path(np.zeros((2, 1, 3)))
    state = stationary_state(np.eye(2), np.eye(2), 0.1, np.zeros(2))
    with pytest.raises(ValueError, match="p = 3"):
        entropy_production_steps(np.zeros((2, 5, 3)), state)
    with pytest.raises(ValueError, match="unknown rule"):
        entropy_production_steps(np.zeros((2, 5, 2)), state, rule="euler")


def test_single_chain_has_nan_stderr():
    est = areal_velocity(np.random.default_rng(shifted_seed(0)).normal(size=(50, 2)))
    assert isinstance(est, Estimate) and est.n_chains == 1 and np.all(np.isnan(est.stderr))


def test_bootstrap_sums_match_explicit_resampling():
    values = np.random.default_rng(shifted_seed(0)).normal(size=(7, 2, 3))
    out = bootstrap_sums(values, 5, np.random.default_rng(shifted_seed(1)))
    idx = np.random.default_rng(shifted_seed(1)).integers(0, 7, size=(5, 7))
    np.testing.assert_allclose(out, values[idx].sum(axis=1), rtol=1e-12)
