"""WOR theory (sgworld.theory.wor) against closed forms, exact epoch moments and simulated epochs.

Statistical checks use ``Z_TOL = 5`` (conftest): a false-failure rate of 5.7e-7 per compared number;
each test states its total (Bonferroni) rate. Deterministic checks state the size of the effect
they bound (the order in lr of the neglected terms).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgworld import GaussianLocation
from sgworld.batching import noise_factor
from sgworld.theory.exact import epoch_stationary_moments
from sgworld.theory.minimum import gradient_covariance
from sgworld.theory.wor import (
    effective_loss,
    minimize_effective_loss,
    sigma_wor,
    wor_diffusion_leading,
    wor_eigen_variance_standard_error,
    wor_epoch_diffusion,
    wor_sigma_standard_error,
    wor_theory,
    wor_validity,
)

from conftest import assert_within_se, shifted_seed
from scenarios import blr, blr_closed_forms, one_torch_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- WOR: epoch diffusion


def test_wor_epoch_diffusion_simulation_agrees_with_second_order_formula():
    """Simulated epochs vs the second-order epoch map on independent permutations (seeds 1 and 2).

    lr M h_max = 2e-3 makes the third-order difference (~0.2% relative, measured) far below the
    ~3% standard error of the comparison. The mean epoch displacement at w* is not zero: it is the
    effective-loss drift ``-lr M grad L_eff(w*) = -(lr^2 M f / 4) grad tr S(w*)`` (+ O(lr^3), relative
    size lr M h_max), since S depends on w here; it is resolved at a few standard errors over 4000
    epochs. 5 compared numbers: false-failure rate 2.9e-6.
    """
    problem = blr(40)
    w_star = problem.target().mean
    b, m = 4, 10
    lr = 2e-3 / (m * np.linalg.eigvalsh(problem.hessian().numpy())[-1])
    a = wor_epoch_diffusion(problem, w_star, lr, b, epochs=4000, seed=shifted_seed(1))
    second = wor_epoch_diffusion(problem, w_star, lr, b, epochs=4000, seed=shifted_seed(2))
    iu = np.triu_indices(2)
    assert_within_se(a.D[iu], second.D_second_order[iu], np.hypot(a.D_se, second.D_second_order_se)[iu],
                     what="D_WOR")
    drift = -lr * m * torch.func.grad(effective_loss(problem, lr, b))(torch.tensor(w_star)).numpy()
    assert_within_se(a.mean_displacement, drift, a.mean_displacement_se, what="mean epoch displacement")


def test_wor_epoch_diffusion_difference_is_third_order():
    """On the same permutations, the simulation and the second-order map differ by O(lr M h) relative:
    halving lr halves the difference (deterministic given the seed; measured ratio 1.99)."""
    problem = blr(40)
    w_star = problem.target().mean
    lr = 2e-2 / (10 * np.linalg.eigvalsh(problem.hessian().numpy())[-1])
    rel = []
    for step in (lr, lr / 2):
        d = wor_epoch_diffusion(problem, w_star, step, 4, epochs=2000, seed=shifted_seed(5))
        rel.append(np.linalg.norm(d.D - d.D_second_order) / np.linalg.norm(d.D_second_order))
    assert 1.8 < rel[0] / rel[1] < 2.2, rel


def test_wor_leading_closed_form_with_equal_per_sample_hessians():
    """GaussianLocation: all per-sample Hessians equal, so the second-order map is exactly
    ``lr^2 H sum_s (M-1-s) e_s`` and its covariance the closed form. 3 numbers: rate 1.7e-6."""
    y = np.random.default_rng(shifted_seed(3)).normal(size=(30, 2)) @ np.array([[1.0, 0.5], [0.0, 0.8]])
    problem = GaussianLocation(y, noise_std=0.5)
    w_star = problem.target().mean
    lr = 1e-4
    d = wor_epoch_diffusion(problem, w_star, lr, 5, epochs=6000, seed=shifted_seed(4))
    H = problem.hessian().numpy()
    leading = wor_diffusion_leading(H, gradient_covariance(problem, w_star), lr, problem.n, 5)
    iu = np.triu_indices(2)
    assert_within_se(d.D_second_order[iu], leading[iu], d.D_second_order_se[iu], what="closed form")
    with pytest.raises(ValueError, match="divisible"):
        wor_diffusion_leading(H, np.eye(2), lr, 31, 5)


# --------------------------------------------------------------------------- WOR: mean and covariance


def tiny_blr():
    """N = 8, b = 2: 8!/2!^4 = 2520 batch partitions, so the exact WOR moments are enumerable."""
    return blr(8, seed=7)


def test_wor_theory_matches_exact_epoch_moments():
    """Against the exact discrete-time WOR stationary state (all 2520 partitions, T = 0).

    Mean: ``w_eff`` carries an O(lr^2) error, i.e. O(lr M h_max) relative to the O(lr) shift from w*
    (measured 0.1 lr M h_max); bounded by lr M h_max. Covariance: the theory's Monte Carlo standard
    error (20000 permutations) against a bias of O(lr M h_max) = 0.5% relative (measured 0.2%).
    3 compared numbers at Z_TOL: false-failure rate 1.7e-6.
    """
    problem = tiny_blr()
    A, g = problem.quadratic_terms()
    w_star = problem.target().mean
    m = problem.n // 2
    lr = 5e-3 / (m * np.linalg.eigvalsh(A.mean(0))[-1])
    exact = epoch_stationary_moments(A, g, lr, 0.0, 2, permutations="enumerate")
    theory = wor_theory(problem, w_star, lr, 2, epochs=20000, seed=shifted_seed(11))
    assert theory.state.lr_hmax == pytest.approx(5e-3)
    shift = exact.mean - w_star
    for w_eff in (theory.effective.w_eff, theory.effective.w_first_order):
        assert np.linalg.norm(w_eff - exact.mean) <= theory.state.lr_hmax * np.linalg.norm(shift)
    iu = np.triu_indices(2)
    assert_within_se(theory.state.Sigma[iu], exact.cov[iu], theory.Sigma_se[iu], what="Sigma_WOR")


def test_effective_loss_against_closed_form():
    problem = blr(30)
    lr, b = 1e-3, 5
    w = np.array([0.7, -0.2])
    H, S = blr_closed_forms(problem, w)
    X, y = problem.X.numpy(), problem.y.numpy()
    g = X.T @ (X @ w - y) / problem.noise_std**2 + w / problem.prior_std**2
    loss = problem.loss(torch.tensor(w)[None]).item()
    expected = loss + lr / 4 * (g @ g + noise_factor("wr", problem.n, b) * np.trace(S))
    assert effective_loss(problem, lr, b)(torch.tensor(w)).item() == pytest.approx(expected, rel=1e-12)
    # S does not depend on w for a Gaussian location model: L_eff has the same minimum as L
    loc = GaussianLocation(np.random.default_rng(shifted_seed(1)).normal(size=(20, 2)))
    w_star = loc.target().mean
    eff = minimize_effective_loss(loc, 1e-3, 4, w_star)
    np.testing.assert_allclose(eff.w_eff, w_star, atol=1e-12)


def test_effective_minimum_by_conjugate_gradients_equals_the_dense_newton(monkeypatch):
    """Above ``DENSE_EFFECTIVE_HESSIAN_MAX_P`` parameters Newton's steps on L_eff come from preconditioned
    conjugate gradients on Hessian-vector products: on a nonlinear network (where L_eff's Hessian differs
    from L's) both reach the same minimiser, to 1e-9 of its O(lr) shift from w*."""
    from torch import nn

    from sgworld import from_module
    from sgworld.theory import find_minimum
    from sgworld.theory import wor as wor_module

    rng = np.random.default_rng(shifted_seed(4))
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] + 0.5 * X[:, 1] ** 2 > 0.3).astype(np.int64)
    torch.manual_seed(shifted_seed(4))
    problem = from_module(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)), X, y,
                          likelihood="categorical", prior_std=1.0, dtype=torch.float64)
    w_star, _ = find_minimum(problem)
    dense = minimize_effective_loss(problem, 2e-3, 6, w_star)
    monkeypatch.setattr(wor_module, "DENSE_EFFECTIVE_HESSIAN_MAX_P", 0)
    krylov = minimize_effective_loss(problem, 2e-3, 6, w_star)
    shift = np.linalg.norm(dense.shift)
    assert shift > 1e-6
    assert np.linalg.norm(krylov.w_eff - dense.w_eff) <= 1e-9 * shift
    assert krylov.newton.regularised_steps == 0 and krylov.newton.iterations <= 4


def test_eigen_variance_standard_errors_are_the_diagonal_of_the_full_ones():
    rng = np.random.default_rng(shifted_seed(8))
    A = rng.normal(size=(5, 5))
    H = A @ A.T + np.eye(5)
    x = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5))
    _, V = np.linalg.eigh(H)
    full = wor_sigma_standard_error(H, x, 1e-3, 7, basis=V)
    np.testing.assert_allclose(wor_eigen_variance_standard_error(H, x, 1e-3, 7), np.diag(full), rtol=1e-10)


def test_sigma_wor_scales_and_validity():
    H = np.diag([1.0, 4.0])
    D = np.array([[1.0, 0.3], [0.3, 2.0]]) * 1e-12
    lr, m = 1e-3, 10
    Sigma = sigma_wor(H, D, lr, m)
    np.testing.assert_allclose(lr * m * (H @ Sigma + Sigma @ H), 2 * D, rtol=1e-10)
    f = (1 - lr * np.diag(H)) ** m  # the exact linear epoch map F = (I - lr H)^M, diagonal here
    Sd = sigma_wor(H, D, lr, m, discrete=True)
    np.testing.assert_allclose(Sd, 2 * D / (1 - np.outer(f, f)), rtol=1e-9)  # Sigma = F Sigma F + 2 D
    assert wor_validity(H, lr, m) == pytest.approx(0.04)


# --------------------------------------------------------------------- sigma_wor's range of validity

def test_sigma_wor_discrete_is_exact_with_the_all_orders_diffusion():
    """Equal per-sample Hessians: the epoch map is exactly ``w -> F w + c_pi``, F = (I - lr H)^M, so
    ``Sigma = F Sigma F + Cov[c_pi]`` is exact and sigma_wor(discrete=True) given the EpochDiffusion
    (all-orders D) matches the exact enumerated WOR covariance at lr M h_max = 1.1 within its Monte
    Carlo error (3 numbers at z = 5: false-failure rate 1.7e-6). Power: the second-order D in the same
    formula, what a bare matrix used to get, is off by many standard errors (a factor ~2 at this lr)."""
    from sgworld.errors import TheoryRangeWarning
    from sgworld.problems import QuadraticProblem

    rng = np.random.default_rng(shifted_seed(41))
    n, b = 6, 2
    m = n // b
    h = np.array([1.0, 0.3])
    A = np.tile(np.diag(h), (n, 1, 1))
    g = rng.normal(size=(n, 2))
    problem = QuadraticProblem(torch.tensor(A), torch.tensor(g))
    lr = 1.1 / (m * h.max())
    exact = epoch_stationary_moments(A, g, lr, 0.0, b)  # enumerated: exact
    epoch = wor_epoch_diffusion(problem, exact.mean, lr, b, epochs=20000, seed=shifted_seed(42))
    Sd = sigma_wor(np.diag(h), epoch, lr, m, discrete=True)
    # Sigma is linear in the epoch covariance: its per-epoch terms z_i z_j / (1 - f_i f_j) give the SE
    f = (1 - lr * h) ** m
    z = epoch.displacements - epoch.displacements.mean(0)
    terms = z[:, :, None] * z[:, None, :] / (1 - np.outer(f, f))
    se = terms.std(0, ddof=1) / np.sqrt(len(z))
    iu = np.triu_indices(2)
    assert_within_se(Sd[iu], exact.cov[iu], se[iu], what="discrete sigma_wor vs exact WOR covariance")
    with pytest.warns(TheoryRangeWarning, match=r"lr M h_max = 1\.1 > 0\.1"):
        S2 = sigma_wor(np.diag(h), epoch.D_second_order, lr, m, discrete=True)
    assert np.max(np.abs(S2 - exact.cov)[iu] / se[iu]) > 20


def test_sigma_wor_warns_outside_its_range_and_refuses_unstable_lr():
    H = np.diag([1.0, 4.0])
    D = np.eye(2) * 1e-12
    with pytest.warns(Warning, match=r"sigma_wor at lr M h_max = 0\.4 > 0\.1"):
        sigma_wor(H, D, 0.01, 10)
    from sgworld.errors import StepSizeError
    with pytest.raises(StepSizeError, match=r"lr \* h_max = 2\.4 >= 2.*lr < 2 / h_max = 0\.5 "):
        sigma_wor(H, D, 0.6, 10, discrete=True)


def test_sigma_standard_error_by_batch_means_matches_per_epoch():
    """Batch means over 100 groups of epochs estimate the standard error that the spread of the per-epoch
    solutions gives. Each entry's ratio of the two has a relative error of 1/sqrt(2 * 99) = 0.071; the
    mean ratio over the 1,830 entries of a 60 x 60 Sigma is within 5 of those of 1 however correlated
    the entries are (false-failure rate below 5.7e-7), and a missing or doubled sqrt(groups) would put it
    near 10 or 0.1."""
    rng = np.random.default_rng(shifted_seed(3))
    p, epochs = 60, 4000
    A = rng.standard_normal((p, p))
    H = A @ A.T / p + np.eye(p)
    x = rng.standard_normal((epochs, p)) @ rng.standard_normal((p, p))
    per_epoch = wor_sigma_standard_error(H, x, 1e-3, 20)
    batch_means = wor_sigma_standard_error(H, x, 1e-3, 20, groups=100)
    ratio = (batch_means / per_epoch)[np.triu_indices(p)]
    assert abs(ratio.mean() - 1) < 5 / np.sqrt(2 * 99)
    with pytest.raises(ValueError, match="groups = 1 is out of range"):
        wor_sigma_standard_error(H, x, 1e-3, 20, groups=1)
