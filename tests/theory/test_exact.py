"""Exact discrete-time stationary moments (sgworld.theory.exact).

Three kinds of check:

* exact algebra: the batch factor by enumerating batches; the solver against an independent
  reference that averages the explicit random affine maps (every batch / every permutation, written
  with plain loops) and solves the *raw* second-moment recursion of the update; closed forms (ULA,
  discrete Lyapunov for a fixed epoch order). Tolerances are rounding-level.
* Monte Carlo: a brute-force many-chain simulation written here. Standard errors come from the spread
  of the independent chains' own averages (valid whatever the autocorrelation within a chain);
  Z_TOL = 5 per compared number (two-sided 5.7e-7), false-failure rates stated per test.
* the sampled-permutation average against enumeration within its reported (jackknife) SE.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import linalg, stats

from conftest import Z_TOL, assert_within_se, chain_moments, shifted_seed
from sgworld.theory.exact import (
    MAX_ENUMERATED_PARTITIONS,
    Moments,
    batch_noise_factor,
    epoch_stationary_moments,
    stepwise_stationary_moments,
    ula_stationary_cov,
)

TRIU = np.triu_indices(2)


def make_problem(n, seed, *, p=2, a_spread=0.5, g_spread=1.5):
    """Per-sample A_i = H0 + symmetric noise (individually possibly indefinite), g_i with spread."""
    rng = np.random.default_rng(shifted_seed(seed))
    h0 = np.diag(np.linspace(1.0, 2.5, p)) + 0.2 * (np.ones((p, p)) - np.eye(p))
    x = rng.normal(size=(n, p, p))
    A = h0 + a_spread * (x + x.transpose(0, 2, 1)) / 2
    g = 0.5 + g_spread * rng.normal(size=(n, p))
    return A, g


def pop_cov(z):
    dz = z - z.mean(0)
    return dz.T @ dz / len(z)


# ------------------------------------------------------------------ independent exact reference

def step_map(A, g, lr, temperature, batch):
    """(M, c, Q) of one step with the batch ``batch`` (indices, duplicates allowed)."""
    p = A.shape[1]
    return np.eye(p) - lr * A[list(batch)].mean(0), lr * g[list(batch)].mean(0), 2 * lr * temperature * np.eye(p)


def epoch_map(A, g, lr, temperature, order, b, drop_last=True):
    """(M, c, Q) of one epoch in the order ``order``, composed step by step with plain loops."""
    p = A.shape[1]
    M, c, Q = np.eye(p), np.zeros(p), np.zeros((p, p))
    n = len(order)
    stop = n - n % b if drop_last else n
    for s in range(0, stop, b):
        Ms, cs, Qs = step_map(A, g, lr, temperature, order[s:s + b])
        M, c, Q = Ms @ M, Ms @ c + cs, Ms @ Q @ Ms.T + Qs
    return M, c, Q


def raw_reference(maps):
    """Stationary mean/cov of the i.i.d. random affine map uniform over ``maps``, from the raw
    recursion m = E[M] m + E[c], P = E[M P M^T] + E[M m c^T] + E[c m^T M^T] + E[c c^T] + E[Q]."""
    p = maps[0][1].shape[0]
    EM = np.mean([M for M, _, _ in maps], 0)
    Ec = np.mean([c for _, c, _ in maps], 0)
    m = np.linalg.solve(np.eye(p) - EM, Ec)
    EMM = np.mean([np.kron(M, M) for M, _, _ in maps], 0)
    rhs = np.mean([np.outer(M @ m, c) + np.outer(c, M @ m) + np.outer(c, c) + Q for M, c, Q in maps], 0)
    P = np.linalg.solve(np.eye(p * p) - EMM, rhs.reshape(-1)).reshape(p, p)
    return m, P - np.outer(m, m)


def assert_moments_close(got: Moments, mean, cov, rtol=1e-8):
    # the raw reference computes cov = P - m m^T, so it is only good to ~1e-12 |m|^2 absolutely
    scale = np.max(np.abs(cov)) + 1e-4 * np.max(np.abs(mean)) ** 2
    np.testing.assert_allclose(got.mean, mean, rtol=rtol, atol=rtol * np.max(np.abs(mean)))
    np.testing.assert_allclose(got.cov, cov, rtol=rtol, atol=rtol * scale)


# ------------------------------------------------------------------------------- 1. the factor f

@pytest.mark.parametrize("n", [2, 4, 5, 7])
def test_wr_factor_is_covariance_of_enumerated_subset_means(n):
    z = np.random.default_rng(shifted_seed(n)).normal(size=(n, 3))
    S = pop_cov(z)
    for b in range(1, n + 1):
        means = np.array([z[list(B)].mean(0) for B in itertools.combinations(range(n), b)])
        np.testing.assert_allclose(pop_cov(means), batch_noise_factor("wr", n, b) * S, rtol=1e-11, atol=1e-14)
    assert batch_noise_factor("wr", n, n) == 0.0


@pytest.mark.parametrize("n", [3, 5])
def test_iid_factor_is_covariance_of_enumerated_tuple_means(n):
    z = np.random.default_rng(shifted_seed(10 + n)).normal(size=(n, 3))
    S = pop_cov(z)
    for b in range(1, 4):
        means = np.array([z[list(B)].mean(0) for B in itertools.product(range(n), repeat=b)])
        np.testing.assert_allclose(pop_cov(means), batch_noise_factor("iid", n, b) * S, rtol=1e-11, atol=1e-14)
        assert batch_noise_factor("iid", n, b) == 1.0 / b
    assert batch_noise_factor("full", n, 2) == 0.0
    assert batch_noise_factor("wr", 1, 1) == 0.0


# ----------------------------------------------------- exact algebra against explicit averages

@pytest.mark.parametrize("temperature", [0.0, 0.7])
@pytest.mark.parametrize("scheme, batches", [
    ("wr", lambda n, b: itertools.combinations(range(n), b)),
    ("iid", lambda n, b: itertools.product(range(n), repeat=b)),
    ("full", lambda n, b: [tuple(range(n))]),
])
def test_stepwise_equals_average_over_all_batches(scheme, batches, temperature):
    A, g = make_problem(5, seed=1)
    lr = 0.2
    maps = [step_map(A, g, lr, temperature, B) for B in batches(5, 2)]
    got = stepwise_stationary_moments(A, g, lr, temperature, 2, scheme=scheme)
    assert_moments_close(got, *raw_reference(maps))
    assert got.mean_se is None and got.cov_se is None


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("n, b, drop_last", [(5, 2, True), (5, 2, False), (6, 2, True), (6, 4, False)])
def test_enumerated_epoch_equals_average_over_all_permutations(n, b, drop_last, temperature):
    A, g = make_problem(n, seed=2)
    lr = 0.1
    maps = [epoch_map(A, g, lr, temperature, list(pi), b, drop_last) for pi in itertools.permutations(range(n))]
    got = epoch_stationary_moments(A, g, lr, temperature, b, permutations="enumerate", drop_last=drop_last)
    assert_moments_close(got, *raw_reference(maps))


def test_fixed_order_epoch_solves_discrete_lyapunov():
    A, g = make_problem(7, seed=3)
    lr, T, b = 0.1, 0.8, 2
    for order in (np.arange(7), np.array([3, 0, 6, 2, 5, 1, 4])):
        M, c, Q = epoch_map(A, g, lr, T, list(order), b)
        got = epoch_stationary_moments(A, g, lr, T, b, permutations="sequential" if order[0] == 0 else order)
        assert_moments_close(got, np.linalg.solve(np.eye(2) - M, c), linalg.solve_discrete_lyapunov(M, Q))


# --------------------------------------------------------------------------------------- 2. ULA

def test_full_batch_equals_ula_closed_form():
    A, g = make_problem(8, seed=4, p=3)
    H = A.mean(0)
    h_max = np.linalg.eigvalsh(H)[-1]
    for lr in np.array([0.03, 0.8, 1.8]) / h_max:  # up to near the stability limit lr h_max = 2
        for T in (0.0, 1.0, 2.5):
            got = stepwise_stationary_moments(A, g, lr, T, 8, scheme="full")
            np.testing.assert_allclose(got.mean, np.linalg.solve(H, g.mean(0)), rtol=1e-10)
            np.testing.assert_allclose(got.cov, ula_stationary_cov(H, lr, T), rtol=1e-9, atol=1e-13)
            # b = N makes the epoch one deterministic full-batch step
            np.testing.assert_allclose(epoch_stationary_moments(A, g, lr, T, 8).cov, got.cov, rtol=1e-9, atol=1e-13)
    # ULA's closed form against its defining equation  Sigma = (I - lr H) Sigma (I - lr H) + 2 lr T I
    lr, T = 1.0 / h_max, 1.3
    S = ula_stationary_cov(H, lr, T)
    step = np.eye(3) - lr * H
    np.testing.assert_allclose(step @ S @ step + 2 * lr * T * np.eye(3), S, rtol=1e-12)


# ---------------------------------------------------------------------- 3. brute-force simulation

def simulate(A, g, lr, T, b, scheme, *, chains, burn, draws, thin, seed):
    """(chains, draws, p) states of independent chains of the update rule. ``burn``/``thin`` count
    steps, or epochs for scheme "wor" (draws then at epoch boundaries)."""
    rng = np.random.default_rng(shifted_seed(seed))
    n, p = g.shape
    w = np.zeros((chains, p))
    base = np.tile(np.arange(n), (chains, 1))
    epoch = n // b

    def step(w, idx):
        a, gb = A[idx].mean(1), g[idx].mean(1)
        w = w - lr * (np.einsum("kij,kj->ki", a, w) - gb)
        return w + math.sqrt(2 * lr * T) * rng.standard_normal(w.shape) if T > 0 else w

    def advance(w):
        if scheme == "wor":
            perm = rng.permuted(base, axis=1)
            for s in range(epoch):
                w = step(w, perm[:, s * b:(s + 1) * b])
            return w
        if scheme == "wr":
            return step(w, rng.random((chains, n)).argsort(1)[:, :b])
        return step(w, rng.integers(n, size=(chains, b)))

    out = np.empty((chains, draws, p))
    for _ in range(burn):
        w = advance(w)
    for d in range(draws):
        for _ in range(thin):
            w = advance(w)
        out[:, d] = w
    return out


# (scheme, N, T, alternative exact answer that the simulation must be able to reject)
# With T > 0 the schemes differ by the minibatch diffusion lr^2 f S / 2 against the thermal lr T; at
# T = 0.25 that difference puts the alternatives at least 29 standard errors away (3000 chains, 25
# random instances per case: minimum 29, medians 43-47); at T = 1 it was 9 at least and 13-16 in the
# median, so the 3 Z_TOL required below failed for about half of the instances.
MC_CASES = [
    ("wr", 6, 0.25, "full"), ("wr", 6, 0.0, "iid"),
    ("iid", 6, 0.25, "full"), ("iid", 6, 0.0, "wr"),
    ("wor", 6, 0.25, "wr"), ("wor", 7, 0.0, "wr"),
]


@pytest.mark.parametrize("case", range(len(MC_CASES)))
def test_simulation_matches_exact_moments(case):
    scheme, n, temperature, alternative = MC_CASES[case]
    # 5 numbers (mean 2, cov 3) at Z_TOL = 5: false-failure rate 2.9e-6 per case, 1.7e-5 for all 6
    # cases. The power check (realized distance to the alternative > 3 Z_TOL) fails by chance only if
    # an estimate is 14+ SE off (the smallest separation seen over random instances is 29 SE).
    A, g = make_problem(n, seed=20 + n)
    lr, b = 0.12, 2
    h_min = np.linalg.eigvalsh(A.mean(0))[0]
    relax = 1.0 / (lr * h_min)  # steps; the covariance relaxes about twice as fast
    per = n // b if scheme == "wor" else 1  # steps per recorded unit
    burn = math.ceil(40 * relax / per)  # start at 0: residual bias ~ exp(-40)
    thin = math.ceil(relax / per)
    if scheme == "wor":
        exact = epoch_stationary_moments(A, g, lr, temperature, b, permutations="enumerate")
    else:
        exact = stepwise_stationary_moments(A, g, lr, temperature, b, scheme=scheme)
    draws = simulate(A, g, lr, temperature, b, scheme, chains=3000, burn=burn, draws=40, thin=thin,
                     seed=100 + case)
    mean, mean_se, cov, cov_se = chain_moments(draws)
    assert_within_se(mean, exact.mean, mean_se, what=f"{scheme} T={temperature} mean")
    assert_within_se(cov[TRIU], exact.cov[TRIU], cov_se[TRIU], what=f"{scheme} T={temperature} cov")

    alt = stepwise_stationary_moments(A, g, lr, temperature, b, scheme=alternative)
    z_alt = max(np.max(np.abs(mean - alt.mean) / mean_se), np.max(np.abs(cov - alt.cov)[TRIU] / cov_se[TRIU]))
    assert z_alt > 3 * Z_TOL, f"simulation cannot tell {scheme} from {alternative} (max z {z_alt:.1f})"


# ------------------------------------------------------------- 4. sampled permutations converge

T_TOL_31 = stats.t.isf(0.5e-6, 31)  # two-sided 1e-6 for a t with 31 dof (jackknife over 32 groups)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_sampled_permutations_converge_within_reported_se(temperature):
    # 5 numbers per case at two-sided 1e-6 each: false-failure rate 1e-5 for both cases together.
    A, g = make_problem(7, seed=5)
    lr, b = 0.15, 2
    exact = epoch_stationary_moments(A, g, lr, temperature, b)
    got = epoch_stationary_moments(A, g, lr, temperature, b, permutations=20000, seed=shifted_seed(11))
    assert got.mean_se.shape == (2,) and got.cov_se.shape == (2, 2)
    assert np.all(got.mean_se > 0) and np.all(got.cov_se > 0)
    assert_within_se(got.mean, exact.mean, got.mean_se, z=T_TOL_31, what="sampled mean")
    assert_within_se(got.cov[TRIU], exact.cov[TRIU], got.cov_se[TRIU], z=T_TOL_31, what="sampled cov")
    # Power: the SE is small against the minibatch effect, so a wrong answer would be caught. The WR
    # (SGLD-type) stationary state sits > 3 T_TOL_31 reported SEs away (measured over 16 random
    # instances: at least 70 SE at T = 1, 250 at T = 0); the SE relative to the covariance itself is
    # instance-dependent (0.8-1.3 % at T = 0), so it is not the criterion.
    wr = stepwise_stationary_moments(A, g, lr, temperature, b, scheme="wr")
    separation = max(np.max(np.abs(exact.mean - wr.mean) / got.mean_se),
                     np.max(np.abs(exact.cov - wr.cov) / got.cov_se))
    assert separation > 3 * T_TOL_31, f"sampled average cannot tell wor from wr ({separation:.1f} SE)"
    # seeded and reproducible
    again = epoch_stationary_moments(A, g, lr, temperature, b, permutations=20000, seed=shifted_seed(11))
    np.testing.assert_array_equal(again.cov, got.cov)
    other = epoch_stationary_moments(A, g, lr, temperature, b, permutations=20000, seed=shifted_seed(12))
    assert not np.array_equal(other.cov, got.cov)


def test_sampled_permutation_se_is_calibrated():
    # Over 160 seeds, the mean squared z-score (averaged over the 5 entries) estimates E[t_31^2] = 1.07
    # if the jackknife SE is honest (measured: 1.06 +- 0.05 over 300 other seeds). Its own SE is about
    # 0.07 here, so the band [0.6, 1.8] sits > 6.5 SE from 1.07: false-failure rate < 1e-10 (normal
    # approximation of a 160-term mean), while an SE off by a factor 1.35 either way fails it.
    A, g = make_problem(6, seed=6)
    lr, b = 0.15, 2
    exact = epoch_stationary_moments(A, g, lr, 0.5, b)
    z2 = []
    for k in range(160):
        got = epoch_stationary_moments(A, g, lr, 0.5, b, permutations=640, seed=shifted_seed(1000 + k))
        z = np.concatenate([(got.mean - exact.mean) / got.mean_se, ((got.cov - exact.cov) / got.cov_se)[TRIU]])
        z2.append(np.mean(z**2))
    z2 = np.array(z2)
    se = z2.std(ddof=1) / np.sqrt(len(z2))
    assert 0.6 < z2.mean() < 1.8, f"mean z^2 = {z2.mean():.3f} +- {se:.3f}"


# ----------------------------------------------------------------- 5. WOR noise is O(lr^3), WR O(lr)

def test_wor_covariance_is_far_below_wr_and_shrinks_faster():
    A, g = make_problem(6, seed=7)  # N divisible by b: every sample used once per epoch
    b = 2
    h_max = np.linalg.eigvalsh(A.mean(0))[-1]
    ratios, wor_scaled, wr_scaled = [], [], []
    lrs = 0.02 / h_max * np.array([1.0, 0.25, 0.01, 0.001, 0.0001])
    for lr in lrs:
        wor = epoch_stationary_moments(A, g, lr, 0.0, b).cov
        wr = stepwise_stationary_moments(A, g, lr, 0.0, b, scheme="wr").cov
        assert np.all(np.linalg.eigvalsh(wor) > 0)
        ratios.append(np.linalg.norm(wor) / np.linalg.norm(wr))
        wor_scaled.append(wor / lr**3)
        wr_scaled.append(wr / lr)
    assert ratios[0] < 1e-2
    # ratio ~ lr^2: quartering lr divides it by ~16
    assert 10 < ratios[0] / ratios[1] < 25
    # Leading orders: wor / lr^3 and wr / lr converge linearly in lr. Relative to the matrix (an
    # off-diagonal entry may be small), the change from lr to lr' is below (lr - lr') M h_max (WOR,
    # M = 3 steps per epoch) and (lr - lr') h_max (WR), the size of the first-order correction
    # (measured over 30 random instances: at most 0.47 of it); and it shrinks tenfold with the lr
    # differences, i.e. the limit is resolved down to lr h_max = 2e-6 (WOR covariance ~ 1e-18 next to an
    # O(1) mean, where the raw second-moment form P - m m^T has no correct digit left).
    change = lambda s, i: np.max(np.abs(s[i + 1] - s[i])) / np.max(np.abs(s[i]))
    for scaled, steps in ((wor_scaled, 3), (wr_scaled, 1)):
        assert change(scaled, 2) <= (lrs[2] - lrs[3]) * steps * h_max
        assert 9 < change(scaled, 2) / change(scaled, 3) < 11


def test_wor_with_dropped_remainder_keeps_order_lr_noise():
    # Documented: with N mod b samples left out each epoch, the epoch noise is O(lr), not O(lr^3).
    A, g = make_problem(7, seed=8)
    h_max = np.linalg.eigvalsh(A.mean(0))[-1]
    r = [np.linalg.norm(epoch_stationary_moments(A, g, lr, 0.0, 2).cov)
         / np.linalg.norm(stepwise_stationary_moments(A, g, lr, 0.0, 2).cov) for lr in (0.01 / h_max, 0.0025 / h_max)]
    assert 0.5 < r[0] / r[1] < 2


# ------------------------------------------------------------------------------- 6. bad inputs

@pytest.fixture
def prob():
    return make_problem(6, seed=9)


@pytest.mark.parametrize("kw, match", [
    (dict(lr=0.0), r"lr must be .*> 0, got 0\.0"),
    (dict(lr=-1.0), r"lr must be .*got -1\.0"),
    (dict(lr=float("nan")), r"lr must be .*got nan"),
    (dict(temperature=-0.5), r"temperature must be .*>= 0, got -0\.5"),
    (dict(batch_size=0), r"batch_size = 0 is out of range; allowed: 1 <= batch_size <= 6"),
    (dict(batch_size=7), r"batch_size = 7 is out of range; allowed: 1 <= batch_size <= 6"),
    (dict(batch_size=2.5), r"batch_size must be an integer \(1 <= batch_size <= 6\), got 2\.5"),
    (dict(scheme="wor"), r"unknown step-wise scheme 'wor'.*wr, iid, full.*epoch_stationary_moments"),
])
def test_stepwise_bad_inputs(prob, kw, match):
    A, g = prob
    args = dict(lr=0.1, temperature=1.0, batch_size=2, scheme="wr") | kw
    with pytest.raises(ValueError, match=match):
        stepwise_stationary_moments(A, g, **args)


def unstable_lr(A):
    """lr = 2.5 / h_max: the mean step map I - lr H has spectral radius 1.5, so no stationary state."""
    return 2.5 / np.linalg.eigvalsh(A.mean(0))[-1]


def test_stepwise_without_stationary_state(prob):
    A, g = prob
    lr = unstable_lr(A)
    with pytest.raises(ValueError, match=rf"no stationary state at lr = {lr:g}: the mean recursion .*spectral radius "
                                         r".* >= 1.*smaller lr"):
        stepwise_stationary_moments(A, g, lr, 1.0, 2, scheme="wr")


def test_second_moment_instability_is_reported():
    # p = 1, a_i = 0.1, 1.9 (H = 1), b = 1: E[M] = 1 - lr contracts at lr = 1.5, but
    # E[M^2] = (1 - lr)^2 + lr^2 Var(a) = 0.25 + 2.25 * 0.81 > 1: minibatch noise makes it blow up.
    A, g = np.array([[[0.1]], [[1.9]]]), np.array([[0.0], [1.0]])
    for scheme in ("wr", "iid"):
        with pytest.raises(ValueError, match=r"no stationary state at lr = 1\.5: the second-moment recursion does "
                                             r"not contract \(spectral radius of E\[M \(x\) M\] per step = 2\.0725 >= 1"):
            stepwise_stationary_moments(A, g, 1.5, 1.0, 1, scheme=scheme)
    assert stepwise_stationary_moments(A, g, 1.5, 1.0, 1, scheme="full").cov[0, 0] > 0


def test_problem_bad_inputs(prob):
    A, g = prob
    with pytest.raises(ValueError, match=r"A must have shape \(N, p, p\).*got \(6, 2\)"):
        stepwise_stationary_moments(A[:, 0], g, 0.1, 1.0, 2)
    with pytest.raises(ValueError, match=r"g must have shape \(6, 2\).*got \(5, 2\)"):
        stepwise_stationary_moments(A, g[:5], 0.1, 1.0, 2)
    bad = A.copy()
    bad[2, 0, 1] += 0.1
    with pytest.raises(ValueError, match=r"A must be symmetric: max \|A - A\^T\| = 0\.1"):
        stepwise_stationary_moments(bad, g, 0.1, 1.0, 2)
    nan = g.copy()
    nan[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"g contains 1 non-finite"):
        epoch_stationary_moments(A, nan, 0.1, 1.0, 2)
    with pytest.raises(ValueError, match=r"H = mean_i A_i must be positive definite.*smallest eigenvalue is -"):
        stepwise_stationary_moments(A - 5 * np.eye(2), g, 0.1, 1.0, 2)
    # individually indefinite A_i are fine as long as their mean is positive definite
    spread = A + np.array([[[3.0, 0], [0, -3.0]], [[-3.0, 0], [0, 3.0]]] * 3)
    assert np.linalg.eigvalsh(spread)[:, 0].min() < 0
    assert np.all(np.isfinite(stepwise_stationary_moments(spread, g, 0.01, 1.0, 2).cov))


def test_epoch_bad_inputs(prob):
    A, g = prob
    with pytest.raises(ValueError, match=r"permutations = 1 is out of range; allowed: 2 <= permutations$"):
        epoch_stationary_moments(A, g, 0.1, 1.0, 2, permutations=1)
    with pytest.raises(ValueError, match=r"unknown permutations 'random'"):
        epoch_stationary_moments(A, g, 0.1, 1.0, 2, permutations="random")
    with pytest.raises(ValueError, match=r"permutation of 0\.\.5 of shape \(6,\)"):
        epoch_stationary_moments(A, g, 0.1, 1.0, 2, permutations=np.array([0, 1, 2, 3, 4, 4]))
    # lr h_max = 2.5: the epoch map has no stationary state either (all of 300 random instances)
    lr = unstable_lr(A)
    with pytest.raises(ValueError, match=rf"no stationary state at lr = {lr:g}: .*per epoch.*smaller lr"):
        epoch_stationary_moments(A, g, lr, 1.0, 2)
    A14, g14 = make_problem(14, seed=1)
    count = math.factorial(14) // 2**7
    with pytest.raises(ValueError, match=rf"needs {count} distinct .*limit of {MAX_ENUMERATED_PARTITIONS}.*permutations=<int>"):
        epoch_stationary_moments(A14, g14, 0.1, 1.0, 2)
    big = np.broadcast_to(np.eye(2), (60000, 2, 2))
    with pytest.raises(ValueError, match=r"needs about 10\^\d+ distinct"):
        epoch_stationary_moments(big, np.zeros((60000, 2)), 0.1, 1.0, 100)


def test_ula_and_factor_bad_inputs():
    H = np.diag([1.0, 4.0])
    with pytest.raises(ValueError, match=r"no stationary state at lr = 0\.6: spectral radius of I - lr H = 1\.4.*lr < 2 / h_max = 0\.5"):
        ula_stationary_cov(H, 0.6, 1.0)
    with pytest.raises(ValueError, match=r"H must have shape \(p, p\), got \(2,\)"):
        ula_stationary_cov(np.ones(2), 0.1, 1.0)
    with pytest.raises(ValueError, match=r"H must be positive definite.*smallest eigenvalue is -1"):
        ula_stationary_cov(np.diag([-1.0, 1.0]), 0.1, 1.0)
    with pytest.raises(ValueError, match=r"temperature must be .*got -1"):
        ula_stationary_cov(H, 0.1, -1)
    with pytest.raises(ValueError, match=r"unknown step-wise scheme 'sgld'"):
        batch_noise_factor("sgld", 10, 2)
    with pytest.raises(ValueError, match=r"batch_size = 11 is out of range; allowed: 1 <= batch_size <= 10"):
        batch_noise_factor("wr", 10, 11)


def test_full_batch_moments_need_no_batch_size():
    """scheme="full" uses every sample every step: no batch size is asked for, and the answer is ULA's
    closed form ``T (H - lr H^2 / 2)^{-1}`` with the mean at the minimum."""
    rng = np.random.default_rng(shifted_seed(7))
    R = rng.normal(size=(8, 2, 2))
    A = np.eye(2)[None] + 0.2 * (R + R.transpose(0, 2, 1))
    g = rng.normal(size=(8, 2))
    lr = 0.5 / np.linalg.eigvalsh(A.mean(0))[-1]
    moments = stepwise_stationary_moments(A, g, lr, 1.0, scheme="full")
    np.testing.assert_allclose(moments.cov, ula_stationary_cov(A.mean(0), lr, 1.0), rtol=1e-10)
    np.testing.assert_allclose(moments.mean, np.linalg.solve(A.mean(0), g.mean(0)), rtol=1e-10)
    np.testing.assert_allclose(stepwise_stationary_moments(A, g, lr, 1.0, 10 ** 6, scheme="full").cov, moments.cov)
