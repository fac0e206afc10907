"""Linear algebra of the stationary state (sgworld.theory.stationary): analytic identities only.

No Monte Carlo here; tolerances are round-off bounds.
"""

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import shifted_seed
from sgworld.theory.stationary import (
    StationaryState,
    circulation,
    commutator_ratio,
    entropy_production_rate,
    inverse_diffusion,
    solve_lyapunov,
    stationary_state,
    velocity,
)

# The Hessian eigenvalues of the paper's regression example at w* (docs/regression.md).
PAPER_EIGENVALUES = np.array([55.02, 58.52, 397.3, 1849, 3098, 24658, 28318])


def random_spd(rng, p, floor=0.1):
    A = rng.normal(size=(p, p))
    return A @ A.T + floor * np.eye(p)


def random_orthogonal(rng, p):
    q, r = np.linalg.qr(rng.normal(size=(p, p)))
    return q * np.sign(np.diag(r))


def relative(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


problems = st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 6), st.sampled_from([1e-7, 1e-3, 0.05]))


# --------------------------------------------------------------------------- Lyapunov equation


@settings(max_examples=40, deadline=None)
@given(problems)
def test_lyapunov_residual(problem):
    seed, p, lr = problem
    rng = np.random.default_rng(seed)
    H, D = random_spd(rng, p), random_spd(rng, p)
    Sigma = solve_lyapunov(H, D, lr)
    assert np.array_equal(Sigma, Sigma.T)
    assert np.linalg.eigvalsh(Sigma)[0] > 0
    assert relative(lr * (H @ Sigma + Sigma @ H), 2 * D) < 1e-10


@settings(max_examples=40, deadline=None)
@given(problems)
def test_discrete_lyapunov_is_the_exact_recursion_covariance(problem):
    # Sigma = F Sigma F^T + 2D with F = I - lr H, to full precision even at lr = 1e-7, where
    # forming I - lr H directly (scipy's discrete solver) loses about 7 digits.
    seed, p, lr = problem
    rng = np.random.default_rng(seed)
    H, D = random_spd(rng, p), random_spd(rng, p)
    H = H / np.linalg.eigvalsh(H)[-1]  # lr * h_max <= 0.05
    Sigma = solve_lyapunov(H, D, lr, discrete=True)
    K = lr * H
    # Residual in the form without I + small: K S + S K^T - K S K^T = 2 D.
    assert relative(K @ Sigma + Sigma @ K.T - K @ Sigma @ K.T, 2 * D) < 1e-9
    continuous = solve_lyapunov(H, D, lr)
    assert relative(Sigma, continuous) < 2 * lr * np.linalg.eigvalsh(H)[-1]  # O(lr h) apart


def test_scale_gives_the_wor_epoch_form():
    rng = np.random.default_rng(shifted_seed(0))
    H, D, lr, M = random_spd(rng, 4), random_spd(rng, 4), 1e-3, 20
    Sigma = solve_lyapunov(H, D, lr, scale=M)
    assert relative(lr * M * (H @ Sigma + Sigma @ H), 2 * D) < 1e-10
    np.testing.assert_allclose(Sigma, solve_lyapunov(H, D, lr * M), rtol=1e-12)


def test_general_drift_matches_scipy():
    # symmetric=False: a stable non-symmetric drift B, B Sigma + Sigma B^T = (2/lr) D.
    B = np.array([[1.0, -2.0], [2.0, 0.5]])
    D = np.array([[1.0, 0.2], [0.2, 0.3]])
    Sigma = solve_lyapunov(B, D, 0.1, symmetric=False)
    np.testing.assert_allclose(Sigma, scipy.linalg.solve_continuous_lyapunov(B, 20 * D), rtol=1e-12)
    discrete = solve_lyapunov(B, D, 0.1, symmetric=False, discrete=True)
    F = np.eye(2) - 0.1 * B
    np.testing.assert_allclose(discrete, scipy.linalg.solve_discrete_lyapunov(F, 2 * D), rtol=1e-10)


def test_paper_scale_keeps_precision():
    # The regression example's regime: lr = 1e-7, h up to 2.8e4, D ~ lr^2 S / b.
    rng = np.random.default_rng(shifted_seed(1))
    V = random_orthogonal(rng, 7)
    H = (V * PAPER_EIGENVALUES) @ V.T
    lr = 1e-7
    D = 0.5 * lr**2 * random_spd(rng, 7, floor=1.0) * 1e6 / 10
    Sigma = solve_lyapunov(H, D, lr)
    assert relative(lr * (H @ Sigma + Sigma @ H), 2 * D) < 1e-10
    Q = circulation(H, Sigma, lr)
    assert entropy_production_rate(Q, D, Sigma) > 0


# --------------------------------------------------------------------------- Q, velocity, entropy production


@settings(max_examples=40, deadline=None)
@given(problems)
def test_circulation_and_trace_formulas(problem):
    seed, p, lr = problem
    rng = np.random.default_rng(seed)
    H, D = random_spd(rng, p), random_spd(rng, p)
    Sigma = solve_lyapunov(H, D, lr)
    Q = circulation(H, Sigma, lr)
    assert np.array_equal(Q, -Q.T)
    np.testing.assert_allclose(Q, 0.5 * lr * (H @ Sigma - Sigma @ H), atol=1e-15 * np.abs(lr * H @ Sigma).max())
    Dinv, Sinv = np.linalg.inv(D), np.linalg.inv(Sigma)
    a = -np.trace(Q @ Dinv @ Q @ Sinv)
    b = np.trace(Q.T @ Dinv @ Q @ Sinv)
    rate = entropy_production_rate(Q, D, Sigma)
    scale = np.abs(Q).max() ** 2 * np.abs(Dinv).max() * np.abs(Sinv).max() * p**2
    assert rate >= 0
    assert abs(a - b) <= 1e-12 * scale
    assert abs(rate - b) <= 1e-10 * scale


def test_velocity_is_current_over_density():
    # Fokker-Planck, per step: v = J/P = drift - D grad ln P = -lr H dw + D Sigma^{-1} dw.
    rng = np.random.default_rng(shifted_seed(2))
    H, D, lr = random_spd(rng, 3), random_spd(rng, 3), 0.01
    state = stationary_state(H, D, lr, mean=np.array([1.0, -2.0, 0.5]))
    w = rng.normal(size=(5, 4, 3))
    dw = w - state.mean
    expected = dw @ (-lr * H + D @ np.linalg.inv(state.Sigma)).T
    np.testing.assert_allclose(state.velocity(w), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(velocity(w, state.mean, state.Q, state.Sigma), expected, rtol=1e-9, atol=1e-12)
    assert velocity(w[0, 0], state.mean, state.Q, state.Sigma).shape == (3,)


def test_ep_rate_is_mean_of_v_D_inverse_v():
    # Pi = <v^T D^-1 v> over N(w_bar, Sigma) with v = M dw, i.e. tr(M^T D^-1 M Sigma).
    rng = np.random.default_rng(shifted_seed(3))
    state = stationary_state(random_spd(rng, 4), random_spd(rng, 4), 0.02, np.zeros(4))
    M = state.velocity(np.eye(4)).T  # columns: v(e_j)
    expected = np.trace(M.T @ np.linalg.inv(state.D) @ M @ state.Sigma)
    np.testing.assert_allclose(state.ep_rate, expected, rtol=1e-10)


def test_equilibrium_iff_commuting():
    rng = np.random.default_rng(shifted_seed(4))
    V = random_orthogonal(rng, 4)
    H = (V * np.array([1.0, 2.0, 5.0, 9.0])) @ V.T
    D_eq = 0.3 * H + 0.1 * H @ H + np.eye(4)  # a polynomial in H commutes with it
    state = stationary_state(H, D_eq, 0.01, np.zeros(4))
    assert commutator_ratio(H, D_eq) < 1e-14
    assert np.abs(state.Q).max() < 1e-12 * np.abs(state.Sigma).max() * 0.01 * 9
    assert state.ep_rate < 1e-20
    D_neq = random_spd(rng, 4)
    state = stationary_state(H, D_neq, 0.01, np.zeros(4))
    assert commutator_ratio(H, D_neq) > 0.05
    assert state.ep_rate > 1e-6


def test_two_dimensional_closed_form():
    # H = diag(h1, h2), D with off-diagonal d: Sigma_12 = 2 d / (lr (h1 + h2)),
    # Q_12 = (lr/2)(h1 - h2) Sigma_12.
    h1, h2, lr = 1.0, 3.0, 0.1
    D = np.array([[1.0, 0.4], [0.4, 0.5]])
    state = stationary_state(np.diag([h1, h2]), D, lr, np.zeros(2))
    s12 = 2 * 0.4 / (lr * (h1 + h2))
    np.testing.assert_allclose(state.Sigma, [[1.0 / (lr * h1), s12], [s12, 0.5 / (lr * h2)]], rtol=1e-12)
    q = 0.5 * lr * (h1 - h2) * s12
    np.testing.assert_allclose(state.Q, [[0, q], [-q, 0]], rtol=1e-12)
    J = np.array([[0.0, 1.0], [-1.0, 0.0]])
    expected = q**2 * np.trace(J.T @ np.linalg.inv(D) @ J @ np.linalg.inv(state.Sigma))
    np.testing.assert_allclose(state.ep_rate, expected, rtol=1e-12)


def test_singular_diffusion_needs_rcond():
    rng = np.random.default_rng(shifted_seed(5))
    H = random_spd(rng, 3)
    u = np.array([1.0, 0.0, 0.0])
    D = random_spd(rng, 3)
    D = D - np.outer(D @ u, D @ u) / (u @ D @ u)  # rank 2, null vector u
    Sigma = solve_lyapunov(H, D, 0.1)  # fine: D only needs to be PSD here
    Q = circulation(H, Sigma, 0.1)
    with pytest.raises(ValueError, match="D is singular.*rcond"):
        entropy_production_rate(Q, D, Sigma)
    rate = entropy_production_rate(Q, D, Sigma, rcond=1e-10)
    np.testing.assert_allclose(rate, -np.trace(Q @ np.linalg.pinv(D, rcond=1e-10) @ Q @ np.linalg.inv(Sigma)),
                               rtol=1e-8)
    np.testing.assert_allclose(inverse_diffusion(D, rcond=1e-10) @ D @ u, 0, atol=1e-12)


# --------------------------------------------------------------------------- StationaryState


def test_stationary_state_bundle_is_frozen_and_read_only():
    rng = np.random.default_rng(shifted_seed(6))
    H, D = random_spd(rng, 3), random_spd(rng, 3)
    mean = np.ones(3)
    state = stationary_state(H, D, 0.05, mean)
    assert isinstance(state, StationaryState)
    assert state.dim == 3 and state.lr == 0.05
    np.testing.assert_array_equal(state.Sigma, solve_lyapunov(H, D, 0.05))
    np.testing.assert_array_equal(state.Q, circulation(H, state.Sigma, 0.05))
    assert state.ep_rate == entropy_production_rate(state.Q, D, state.Sigma)
    with pytest.raises(AttributeError):
        state.lr = 1.0
    with pytest.raises(ValueError):
        state.Sigma[0, 0] = 1.0
    mean[0] = 5.0  # the state holds its own copy
    assert state.mean[0] == 1.0


def test_derived_quantities_of_the_state():
    # Symmetric H: lr h_max with the largest eigenvalue; a per-epoch state (time step lr M) gives lr M h_max.
    H, D = np.diag([1.0, 4.0]), np.array([[1.0, 0.3], [0.3, 2.0]])
    state = stationary_state(H, D, 0.01, np.zeros(2))
    assert state.lr_hmax == pytest.approx(0.04, rel=1e-15)
    assert stationary_state(H, D, 0.01 * 10, np.zeros(2)).lr_hmax == pytest.approx(0.4, rel=1e-15)
    assert state.commutator_ratio == commutator_ratio(H, D) > 0
    assert state.ep_rate == entropy_production_rate(state.Q, D, state.Sigma) > 0
    assert state.ep_rate is state.ep_rate  # computed once
    # A non-symmetric drift (a fitted K): the largest eigenvalue modulus, here of a rotation-like K.
    K = np.array([[0.1, 0.2], [-0.2, 0.1]])  # eigenvalues 0.1 +- 0.2i
    fitted = stationary_state(K, 0.01 * np.eye(2), 1.0, np.zeros(2), symmetric=False, discrete=True)
    assert fitted.lr_hmax == pytest.approx(np.hypot(0.1, 0.2), rel=1e-12)
    assert fitted.commutator_ratio == commutator_ratio(K, 0.01 * np.eye(2))


def test_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    H = torch.tensor([[2.0, 0.1], [0.1, 1.0]], dtype=torch.float32)
    D = torch.eye(2, dtype=torch.float64)
    Sigma = solve_lyapunov(H, D, 0.1)
    assert isinstance(Sigma, np.ndarray) and Sigma.dtype == np.float64


# --------------------------------------------------------------------------- bad input


def _raises_clear(match, fn, *args, **kwargs):
    with pytest.raises(ValueError, match=match) as info:
        fn(*args, **kwargs)
    assert not isinstance(info.value, np.linalg.LinAlgError)  # our message, not a raw traceback


H2 = np.array([[2.0, 0.3], [0.3, 1.0]])
D2 = np.array([[1.0, 0.1], [0.1, 0.5]])


@pytest.mark.parametrize("H, D, kwargs, match", [
    (np.diag([1.0, -0.5]), D2, {}, r"not a minimum of L: the Hessian is not positive definite \(smallest "
                                   r"eigenvalue -0\.5, largest 1\).*find_minimum"),
    (np.diag([1.0, 0.0]), D2, {}, "Hessian is singular"),
    (np.array([[1.0, 0.5], [0.0, 1.0]]), D2, {}, "H must be symmetric"),
    (H2, np.array([[1.0, 0.0], [0.0, -0.1]]), {}, "D must be positive semidefinite"),
    (H2, np.array([[1.0, 0.5], [0.0, 1.0]]), {}, "D must be symmetric"),
    (H2, np.eye(3), {}, "shape"),
    (np.ones(3), D2, {}, "square"),
    (np.array([[np.nan, 0.0], [0.0, 1.0]]), D2, {}, "non-finite"),
    (H2, np.array([[np.inf, 0.0], [0.0, 1.0]]), {}, "non-finite"),
    (H2, D2, {"lr": 0.0}, "lr must be a finite number > 0"),
    (H2, D2, {"lr": 1.5, "discrete": True}, "spectral radius"),
    (np.array([[-1.0, 2.0], [-2.0, 0.5]]), D2, {"symmetric": False}, "real part"),
    (H2, D2, {"scale": -1.0}, "scale"),
])
def test_solve_lyapunov_rejects_bad_input(H, D, kwargs, match):
    kwargs = {"lr": 0.1, **kwargs}
    lr = kwargs.pop("lr")
    _raises_clear(match, solve_lyapunov, H, D, lr, **kwargs)


def test_other_functions_reject_bad_input():
    Sigma = solve_lyapunov(H2, D2, 0.1)
    Q = circulation(H2, Sigma, 0.1)
    _raises_clear("Sigma must be positive definite", entropy_production_rate, Q, D2, np.diag([1.0, -1.0]))
    _raises_clear("D is zero", entropy_production_rate, Q, np.zeros((2, 2)), Sigma)
    _raises_clear("shape", entropy_production_rate, Q, np.eye(3), Sigma)
    _raises_clear("Sigma must be positive definite", velocity, np.zeros(2), np.zeros(2), Q, np.diag([1.0, 0.0]))
    _raises_clear(r"w must have shape \(\.\.\., 2\)", velocity, np.zeros(3), np.zeros(2), Q, Sigma)
    _raises_clear("undefined", commutator_ratio, H2, np.zeros((2, 2)))
    _raises_clear("mean must have shape", stationary_state, H2, D2, 0.1, np.zeros(3))
    _raises_clear("rcond", inverse_diffusion, D2, rcond=-1.0)
