"""Exact stationary moments of the sampler family (sgworld.theory.exact): preconditioned SGLD, SGLD-CV
and SGHMC, with minibatch noise switched on, for the wr, iid, full and wor schemes.

Deterministic checks only (no simulation; tests/samplers/test_family_exact.py compares with the
kernels):

* against an independent reference: the explicit random affine maps of each update rule, written here
  from the update equations (SGHMC in its 2p-dimensional (w, v) state), averaged over every batch or
  every permutation of a tiny data set and solved through the raw second-moment recursion
  (``raw_reference`` of test_exact.py);
* reductions that must hold exactly: SGHMC with alpha = 1, beta_hat = 0 is SGLD; ``P = I`` is plain
  SGLD, ``P = c I`` is SGLD at lr c, and ``P = C C^T`` is SGLD on the problem ``(C^T A_i C, C^T g_i)``
  mapped back by C; control variates with equal per-sample Hessians are full-batch Langevin;
* closed forms and limits: full-batch SGHMC per eigenmode; as lr -> 0 the SGHMC position covariance
  tends to ``(1 - beta_hat/alpha) T H^-1`` and the momentum covariance to
  ``2 (1 - beta_hat/alpha) lr T / (2 - alpha) I``, preconditioned SGLD to the posterior, each with an
  O(lr) error; SGD-CV centred at the MAP has no minibatch noise left (a point mass at the MAP).

Tolerances are rounding-level (the raw reference loses ~1e-12 |m|^2 absolutely, see test_exact.py).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from conftest import shifted_seed
from sgworld.theory.exact import (
    epoch_stationary_moments,
    sghmc_stationary_moments,
    stepwise_stationary_moments,
    ula_stationary_cov,
)
from test_exact import assert_moments_close, make_problem, raw_reference

BATCHES = {
    "wr": lambda n, b: itertools.combinations(range(n), b),
    "iid": lambda n, b: itertools.product(range(n), repeat=b),
    "full": lambda n, b: [tuple(range(n))],
}


def random_spd(p, seed, spread=0.6):
    rng = np.random.default_rng(shifted_seed(seed))
    x = rng.normal(size=(p, p))
    return np.eye(p) + spread * (x @ x.T) / p


# ------------------------------------------------------------ explicit maps of the update rules

def langevin_map(A, g, lr, T, batch, P, centre):
    """(M, c, Q) of ``w' = w - lr P g_n + sqrt(2 lr T) C xi`` with the batch's gradient estimate
    ``g_n = A_B w - g_B`` or, with a centre, ``grad L(w_hat) + grad L_B(w) - grad L_B(w_hat)``."""
    p = A.shape[1]
    a_b, g_b = A[list(batch)].mean(0), g[list(batch)].mean(0)
    shift = np.zeros(p)  # g_n = a_b w - g_b + shift
    if centre is not None:
        full_grad_at_centre = A.mean(0) @ centre - g.mean(0)
        shift = full_grad_at_centre - (a_b @ centre - g_b)
    return np.eye(p) - lr * P @ a_b, lr * P @ (g_b - shift), 2 * lr * T * P


def sghmc_map(A, g, lr, T, batch, alpha, beta_hat, centre=None):
    """(M, c, Q) on (w, v) of ``v' = (1 - alpha) v - lr g_n + s xi``, ``w' = w + v'``."""
    p = A.shape[1]
    eye = np.eye(p)
    m_w, c_w, _ = langevin_map(A, g, lr, 0.0, batch, eye, centre)  # w - lr g_n = m_w w + c_w
    grad_part = m_w - eye  # -lr A_B
    v_row = np.hstack([grad_part, (1 - alpha) * eye])  # v' = -lr A_B w + (1 - alpha) v + c_w + s xi
    M = np.vstack([np.hstack([eye, np.zeros((p, p))]) + v_row, v_row])  # w' = w + v'
    s2 = 2 * (alpha - beta_hat) * lr * T
    return M, np.concatenate([c_w, c_w]), s2 * np.block([[eye, eye], [eye, eye]])


def compose(step_maps):
    """One epoch's (M, c, Q) from its steps' maps in order."""
    M, c, Q = step_maps[0]
    for Ms, cs, Qs in step_maps[1:]:
        M, c, Q = Ms @ M, Ms @ c + cs, Ms @ Q @ Ms.T + Qs
    return M, c, Q


def epoch_maps(n, b, drop_last, step):
    """Every permutation's epoch map (all n! of them), ``step(batch) -> (M, c, Q)``."""
    stop = n - n % b if drop_last else n
    return [compose([step(pi[s:s + b]) for s in range(0, stop, b)]) for pi in itertools.permutations(range(n))]


# ------------------------------------------------------- 1. against the explicit maps, every batch

@pytest.mark.parametrize("temperature", [0.0, 0.7])
@pytest.mark.parametrize("scheme", ["wr", "iid", "full"])
@pytest.mark.parametrize("variant", ["preconditioner", "centre", "both"])
def test_langevin_family_stepwise_equals_average_over_all_batches(scheme, temperature, variant):
    A, g = make_problem(5, seed=31)
    lr = 0.2
    P = random_spd(2, 32) if variant != "centre" else np.eye(2)
    centre = np.array([0.7, -1.1]) if variant != "preconditioner" else None
    maps = [langevin_map(A, g, lr, temperature, B, P, centre) for B in BATCHES[scheme](5, 2)]
    got = stepwise_stationary_moments(A, g, lr, temperature, 2, scheme=scheme, control_variate_centre=centre,
                                      preconditioner=None if variant == "centre" else P)
    assert_moments_close(got, *raw_reference(maps))


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("n, b, drop_last", [(5, 2, True), (5, 2, False), (6, 2, True)])
def test_langevin_family_epoch_equals_average_over_all_permutations(n, b, drop_last, temperature):
    A, g = make_problem(n, seed=33)
    lr = 0.1
    P, centre = random_spd(2, 34), np.array([-0.4, 0.9])
    maps = epoch_maps(n, b, drop_last, lambda B: langevin_map(A, g, lr, temperature, B, P, centre))
    got = epoch_stationary_moments(A, g, lr, temperature, b, drop_last=drop_last, preconditioner=P,
                                   control_variate_centre=centre)
    assert_moments_close(got, *raw_reference(maps))


@pytest.mark.parametrize("temperature", [0.0, 0.8])
@pytest.mark.parametrize("scheme", ["wr", "iid", "full"])
@pytest.mark.parametrize("alpha, beta_hat", [(0.3, 0.0), (0.6, 0.2), (1.0, 0.5)])
def test_sghmc_stepwise_equals_average_over_all_batches(scheme, temperature, alpha, beta_hat):
    A, g = make_problem(5, seed=35)
    lr = 0.1
    maps = [sghmc_map(A, g, lr, temperature, B, alpha, beta_hat) for B in BATCHES[scheme](5, 2)]
    got = sghmc_stationary_moments(A, g, lr, temperature, 2, scheme=scheme, alpha=alpha, beta_hat=beta_hat,
                                   state="full")
    assert_moments_close(got, *raw_reference(maps))
    assert got.mean.shape == (4,) and got.cov.shape == (4, 4)
    np.testing.assert_allclose(got.mean[2:], 0.0, atol=1e-14)  # no mean momentum
    position = sghmc_stationary_moments(A, g, lr, temperature, 2, scheme=scheme, alpha=alpha, beta_hat=beta_hat)
    momentum = sghmc_stationary_moments(A, g, lr, temperature, 2, scheme=scheme, alpha=alpha, beta_hat=beta_hat,
                                        state="momentum")
    np.testing.assert_array_equal(position.cov, got.cov[:2, :2])
    np.testing.assert_array_equal(momentum.cov, got.cov[2:, 2:])
    np.testing.assert_array_equal(position.mean, got.mean[:2])


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("n, b, drop_last", [(5, 2, True), (6, 2, True), (6, 4, False)])
def test_sghmc_epoch_equals_average_over_all_permutations(n, b, drop_last, temperature):
    A, g = make_problem(n, seed=36)
    lr, alpha, beta_hat = 0.1, 0.4, 0.1
    centre = np.array([0.3, 0.5]) if n == 6 else None
    maps = epoch_maps(n, b, drop_last, lambda B: sghmc_map(A, g, lr, temperature, B, alpha, beta_hat, centre))
    got = sghmc_stationary_moments(A, g, lr, temperature, b, scheme="wor", alpha=alpha, beta_hat=beta_hat,
                                   drop_last=drop_last, control_variate_centre=centre, state="full")
    assert_moments_close(got, *raw_reference(maps))


def test_sghmc_sampled_permutations_carry_standard_errors_of_the_chosen_state():
    A, g = make_problem(7, seed=37)
    kw = dict(scheme="wor", alpha=0.5, permutations=64, seed=shifted_seed(3))
    full = sghmc_stationary_moments(A, g, 0.1, 1.0, 2, state="full", **kw)
    momentum = sghmc_stationary_moments(A, g, 0.1, 1.0, 2, state="momentum", **kw)
    assert full.mean_se.shape == (4,) and full.cov_se.shape == (4, 4)
    np.testing.assert_array_equal(momentum.cov_se, full.cov_se[2:, 2:])
    np.testing.assert_array_equal(momentum.mean_se, full.mean_se[2:])


# ------------------------------------------------------------------------ 2. exact reductions

@pytest.mark.parametrize("scheme", ["wr", "iid", "full", "wor"])
def test_sghmc_with_unit_friction_is_sgld(scheme):
    # alpha = 1, beta_hat = 0: v' = -lr g + sqrt(2 lr T) xi, w' = w + v' -- the Langevin update exactly.
    A, g = make_problem(6, seed=38)
    lr, T = 0.15, 0.9
    got = sghmc_stationary_moments(A, g, lr, T, 2, scheme=scheme, alpha=1.0)
    if scheme == "wor":
        ref = epoch_stationary_moments(A, g, lr, T, 2)
    else:
        ref = stepwise_stationary_moments(A, g, lr, T, 2, scheme=scheme)
    np.testing.assert_allclose(got.mean, ref.mean, rtol=1e-12)
    np.testing.assert_allclose(got.cov, ref.cov, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("scheme", ["wr", "iid", "full", "wor"])
def test_preconditioner_is_a_change_of_coordinates(scheme):
    # w = C u turns w' = w - lr P (A_B w - g_B) + sqrt(2 lr T) C xi into plain Langevin on u with the
    # per-sample terms (C^T A_i C, C^T g_i); P = c I is plain Langevin at lr c; P = I changes nothing.
    A, g = make_problem(6, seed=39)
    lr, T = 0.1, 1.2
    P = random_spd(2, 40)
    C = np.linalg.cholesky(P)

    def moments(A, g, lr, P=None):
        if scheme == "wor":
            return epoch_stationary_moments(A, g, lr, T, 2, preconditioner=P)
        return stepwise_stationary_moments(A, g, lr, T, 2, scheme=scheme, preconditioner=P)

    got = moments(A, g, lr, P)
    u = moments(np.einsum("ji,njk,kl->nil", C, A, C), g @ C, lr)
    np.testing.assert_allclose(got.mean, C @ u.mean, rtol=1e-10)
    np.testing.assert_allclose(got.cov, C @ u.cov @ C.T, rtol=1e-9, atol=1e-13)
    scaled = moments(A, g, lr, 0.5 * np.eye(2))
    plain_half = moments(A, g, 0.5 * lr)
    np.testing.assert_allclose(scaled.cov, plain_half.cov, rtol=1e-10)
    np.testing.assert_allclose(moments(A, g, lr, np.eye(2)).cov, moments(A, g, lr).cov, rtol=1e-12)


@pytest.mark.parametrize("scheme", ["wr", "iid", "wor"])
def test_control_variates_with_equal_sample_hessians_remove_all_minibatch_noise(scheme):
    # With A_i = H for all i the control-variate gradient H w_hat - gbar + H (w - w_hat) = H w - gbar is the
    # full gradient at any centre: the stationary state is ULA's closed form (and plain SGLD's is not).
    _, g = make_problem(6, seed=41)
    H = np.array([[1.5, 0.3], [0.3, 0.8]])
    A = np.broadcast_to(H, (6, 2, 2)).copy()
    lr, T, centre = 0.2, 1.0, np.array([5.0, -3.0])
    if scheme == "wor":
        got = epoch_stationary_moments(A, g, lr, T, 2, control_variate_centre=centre)
        plain = epoch_stationary_moments(A, g, lr, T, 2)
        ula = stepwise_stationary_moments(A, g, lr, T, scheme="full")
        np.testing.assert_allclose(got.mean, ula.mean, rtol=1e-10)
        # epoch boundaries of M = 3 ULA steps: the same stationary law
        np.testing.assert_allclose(got.cov, ula.cov, rtol=1e-10)
    else:
        got = stepwise_stationary_moments(A, g, lr, T, 2, scheme=scheme, control_variate_centre=centre)
        plain = stepwise_stationary_moments(A, g, lr, T, 2, scheme=scheme)
    np.testing.assert_allclose(got.mean, np.linalg.solve(H, g.mean(0)), rtol=1e-10)
    np.testing.assert_allclose(got.cov, ula_stationary_cov(H, lr, T), rtol=1e-10)
    # power: plain minibatching is far outside the rounding-level tolerance above
    assert np.max(np.abs(plain.cov - got.cov)) > 1e-3 * np.max(np.abs(got.cov))


@pytest.mark.parametrize("scheme", ["wr", "iid", "wor"])
def test_sgd_with_control_variates_at_the_map_is_a_point_mass(scheme):
    # T = 0, centre = MAP: g_n = A_B (w - w*) vanishes at w*, so the chain stays at the MAP (zero
    # covariance), while plain SGD keeps a covariance of order lr f S / 2 H.
    A, g = make_problem(6, seed=42)
    H = A.mean(0)
    w_star = np.linalg.solve(H, g.mean(0))
    lr = 0.3 / np.linalg.eigvalsh(H)[-1]
    for momentum in (False, True):
        kw = dict(control_variate_centre=w_star)
        plain_kw = {}
        if momentum:
            fn = lambda **k: sghmc_stationary_moments(A, g, lr, 0.0, 2, scheme=scheme, alpha=0.5, **k)  # noqa: E731
        elif scheme == "wor":
            fn = lambda **k: epoch_stationary_moments(A, g, lr, 0.0, 2, **k)  # noqa: E731
        else:
            fn = lambda **k: stepwise_stationary_moments(A, g, lr, 0.0, 2, scheme=scheme, **k)  # noqa: E731
        cv, plain = fn(**kw), fn(**plain_kw)
        np.testing.assert_allclose(cv.mean, w_star, rtol=1e-12)
        scale = np.max(np.abs(plain.cov))
        assert scale > 1e-6, "plain SGD should keep minibatch noise"
        assert np.max(np.abs(cv.cov)) < 1e-12 * scale + 1e-15 * np.max(w_star**2)


# -------------------------------------------------------------------- 3. closed forms and limits

def sghmc_full_batch(H, lr, T, alpha, beta_hat):
    """Full-batch SGHMC per eigenmode h of H (derived from the stationarity of E[w^2], E[wv], E[v^2]):
    Var v = 2 (alpha - beta_hat) lr T / (alpha (2 - alpha - lr h / 2)), Var w = (2 - alpha) Var v / (2 lr h),
    Cov(w, v) = Var v / 2."""
    h, V = np.linalg.eigh(H)
    vv = 2 * (alpha - beta_hat) * lr * T / (alpha * (2 - alpha - lr * h / 2))
    fn = lambda x: (V * x) @ V.T  # noqa: E731
    return fn((2 - alpha) * vv / (2 * lr * h)), fn(vv / 2), fn(vv)


def test_full_batch_sghmc_matches_its_closed_form():
    A, g = make_problem(8, seed=43, p=3)
    H = A.mean(0)
    h_max = np.linalg.eigvalsh(H)[-1]
    for alpha, beta_hat in ((0.05, 0.0), (0.5, 0.3), (1.0, 0.0)):
        for lr_h in (0.01, 0.5, 1.5 * (2 - alpha)):  # up to near the stability limit lr h_max = 2 (2 - alpha)
            lr, T = lr_h / h_max, 1.7
            got = sghmc_stationary_moments(A, g, lr, T, scheme="full", alpha=alpha, beta_hat=beta_hat, state="full")
            ww, wv, vv = sghmc_full_batch(H, lr, T, alpha, beta_hat)
            np.testing.assert_allclose(got.mean[:3], np.linalg.solve(H, g.mean(0)), rtol=1e-10)
            np.testing.assert_allclose(got.cov[:3, :3], ww, rtol=1e-8)
            np.testing.assert_allclose(got.cov[:3, 3:], wv, rtol=1e-8, atol=1e-12 * np.max(np.abs(vv)))
            np.testing.assert_allclose(got.cov[3:, 3:], vv, rtol=1e-8, atol=1e-12 * np.max(np.abs(vv)))


def first_order_error(fn, limit, lrs):
    """Relative errors |fn(lr) - limit(lr)| / |limit(lr)| at the given lrs (decades apart)."""
    return np.array([np.max(np.abs(fn(lr) - limit(lr))) / np.max(np.abs(limit(lr))) for lr in lrs])


@pytest.mark.parametrize("scheme", ["wr", "wor"])
@pytest.mark.parametrize("alpha, beta_hat", [(0.2, 0.0), (0.7, 0.35)])
def test_sghmc_small_lr_limits(scheme, alpha, beta_hat):
    # Minibatch noise on. The errors of position kappa T H^-1 and momentum 2 kappa lr T / (2 - alpha) I
    # (kappa = 1 - beta_hat / alpha) are O(lr): a tenfold smaller lr divides them by 10 (+-25 %), and at
    # lr h_max = 1e-3 they are below 1 %. The limits are lr T I for the momentum only as alpha -> 0.
    A, g = make_problem(6, seed=44)
    H = A.mean(0)
    h_max = np.linalg.eigvalsh(H)[-1]
    T = 0.8
    kappa = 1 - beta_hat / alpha
    lrs = np.array([1e-2, 1e-3, 1e-4]) / h_max

    def moments(lr, state):
        return sghmc_stationary_moments(A, g, lr, T, 2, scheme=scheme, alpha=alpha, beta_hat=beta_hat,
                                        state=state).cov

    pos = first_order_error(lambda lr: moments(lr, "position"), lambda lr: kappa * T * np.linalg.inv(H), lrs)
    mom = first_order_error(lambda lr: moments(lr, "momentum"), lambda lr: 2 * kappa * lr * T / (2 - alpha) * np.eye(2),
                            lrs)
    for err in (pos, mom):
        assert err[1] < 1e-2
        assert np.all(8 < err[:-1] / err[1:]) and np.all(err[:-1] / err[1:] < 12.5), err
    if scheme == "wr":  # the wr minibatch noise is part of the O(lr) term (wor's is O(lr^3))
        full = sghmc_stationary_moments(A, g, lrs[0], T, scheme="full", alpha=alpha, beta_hat=beta_hat).cov
        assert np.max(np.abs(moments(lrs[0], "position") - full)) > 1e-3 * np.max(np.abs(full))


@pytest.mark.parametrize("scheme", ["wr", "wor"])
def test_preconditioned_sgld_tends_to_the_posterior(scheme):
    # P = H^-1 (the posterior covariance at T = 1) and a generic SPD P: the error of T H^-1 is O(lr).
    A, g = make_problem(6, seed=45)
    H = A.mean(0)
    T = 1.0
    for P in (np.linalg.inv(H), random_spd(2, 46)):
        h_max = np.max(np.real(np.linalg.eigvals(P @ H)))
        lrs = np.array([1e-2, 1e-3, 1e-4]) / h_max

        def cov(lr):
            if scheme == "wor":
                return epoch_stationary_moments(A, g, lr, T, 2, preconditioner=P).cov
            return stepwise_stationary_moments(A, g, lr, T, 2, scheme=scheme, preconditioner=P).cov

        err = first_order_error(cov, lambda lr: T * np.linalg.inv(H), lrs)
        assert err[1] < 1e-2
        assert np.all(8 < err[:-1] / err[1:]) and np.all(err[:-1] / err[1:] < 12.5), err


def test_full_batch_preconditioned_with_inverse_hessian_is_isotropic_ula():
    # P = H^-1: in u = C^-1 w the Hessian is I, so Sigma = T H^-1 / (1 - lr / 2) for every lr < 2.
    A, g = make_problem(7, seed=47, p=3)
    H = A.mean(0)
    for lr in (0.01, 0.5, 1.9):
        got = stepwise_stationary_moments(A, g, lr, 1.3, scheme="full", preconditioner=np.linalg.inv(H))
        np.testing.assert_allclose(got.cov, 1.3 * np.linalg.inv(H) / (1 - lr / 2), rtol=1e-9)


# ------------------------------------------------------------------------------- 4. bad inputs

@pytest.fixture
def prob():
    return make_problem(6, seed=48)


@pytest.mark.parametrize("kw, match", [
    (dict(alpha=0.0), r"alpha \(friction per step\) must be in \(0, 1\], got 0\.0"),
    (dict(alpha=1.5), r"alpha \(friction per step\) must be in \(0, 1\], got 1\.5"),
    (dict(alpha=float("nan")), r"alpha .* got nan"),
    (dict(alpha=0.5, beta_hat=0.5),
     r"beta_hat \(gradient-noise estimate\) must be in \[0, alpha\) = \[0, 0\.5\), got 0\.5"),
    (dict(alpha=0.5, beta_hat=-0.1), r"beta_hat .* got -0\.1"),
    (dict(alpha=0.5, state="velocity"), r"unknown state 'velocity'; choose one of: position, momentum, full"),
    (dict(alpha=0.5, scheme="sequential"), r"unknown scheme 'sequential'; choose one of: wr, iid, full, wor"),
    (dict(alpha=0.5, scheme="wor", batch_size=None), r"batch_size is required for scheme 'wor'"),
    (dict(alpha=0.5, batch_size=None), r"batch_size is required for scheme 'wr'"),
    (dict(alpha=0.5, control_variate_centre=np.zeros(3)),
     r"control_variate_centre must have shape \(2,\) .*got \(3,\)"),
])
def test_sghmc_bad_inputs(prob, kw, match):
    A, g = prob
    args = dict(lr=0.1, temperature=1.0, batch_size=2) | kw
    with pytest.raises(ValueError, match=match):
        sghmc_stationary_moments(A, g, **args)


@pytest.mark.parametrize("P, match", [
    (np.eye(3), r"preconditioner must have shape \(2, 2\) to match the 2 parameters, got \(3, 3\)"),
    (np.array([[1.0, 0.5], [0.0, 1.0]]),
     r"preconditioner must be symmetric: max \|preconditioner - preconditioner\^T\| = 0\.5"),
    (np.diag([1.0, -2.0]), r"preconditioner must be symmetric positive definite; its smallest eigenvalue is -2"),
    (np.diag([1.0, np.nan]), r"preconditioner contains non-finite values"),
])
def test_preconditioner_bad_inputs(prob, P, match):
    A, g = prob
    with pytest.raises(ValueError, match=match):
        stepwise_stationary_moments(A, g, 0.1, 1.0, 2, preconditioner=P)
    with pytest.raises(ValueError, match=match):
        epoch_stationary_moments(A, g, 0.1, 1.0, 2, preconditioner=P)


def test_centre_bad_inputs(prob):
    A, g = prob
    with pytest.raises(ValueError, match=r"control_variate_centre must have shape \(2,\) .*got \(2, 1\)"):
        stepwise_stationary_moments(A, g, 0.1, 1.0, 2, control_variate_centre=np.zeros((2, 1)))
    with pytest.raises(ValueError, match=r"control_variate_centre contains non-finite values"):
        epoch_stationary_moments(A, g, 0.1, 1.0, 2, control_variate_centre=np.array([0.0, np.inf]))


def test_sghmc_without_stationary_state(prob):
    A, g = prob
    lr = 2.2 * (2 - 0.5) / np.linalg.eigvalsh(A.mean(0))[-1]  # beyond lr h_max < 2 (2 - alpha)
    with pytest.raises(ValueError, match=r"no stationary state at lr = .*the mean recursion .*per step"):
        sghmc_stationary_moments(A, g, lr, 1.0, 2, alpha=0.5)
    with pytest.raises(ValueError, match=r"no stationary state at lr = .*per epoch"):
        sghmc_stationary_moments(A, g, lr, 1.0, 2, scheme="wor", alpha=0.5)
