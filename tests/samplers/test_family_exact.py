"""SGHMC, preconditioned SGLD / SGWORLD and SGLD-CV through ``sample()`` against their exact
discrete-time stationary moments (sgworld.theory.exact), minibatch noise switched on.

Every case runs K independent chains from one point far outside the stationary law (the exact mean
plus ten stationary standard deviations in each coordinate, zero spread, zero momentum), burns in for
25 relaxation times of the mean recursion (the start's residual bias is e^-25 of ten standard
deviations), and compares the pooled mean (2 numbers) and covariance (3 numbers) with the exact
answer. Standard errors come from the spread of the K independent chains' own averages, valid
whatever the autocorrelation within a chain. With Z_TOL = 5 per number, each case's false-failure
rate is 5 x 5.7e-7 = 2.9e-6, and 2.3e-5 for the 8 cases together.

Power: in each case the exact answer must lie more than 3 Z_TOL realised standard errors from the
start, from the continuous-time posterior and from the named alternative (the same sampler without the
minibatch effect under test), so the comparison can fail. A sampler that matched the alternative instead
fails the 5-SE check unless an estimate is off by 10 SE or more (probability < 1e-22). Measured over
SGWORLD_TEST_SEED_OFFSET = 0..4 (fresh data and chains): the smallest separation of any case from any of
its alternatives was 21 SE (15 required), so the power checks themselves do not fail by chance (that
would need the realised standard errors to be off by a factor 1.4 with 2000 chains).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from conftest import Z_TOL, assert_within_se, chain_moments, shifted_seed
from sgworld import BayesianLinearRegression, sample
from sgworld.batching import IndexStream
from sgworld.rng import INDEX_STREAM, NOISE_STREAM, ChainRandom
from sgworld.samplers import METHODS
from sgworld.theory.exact import epoch_stationary_moments, sghmc_stationary_moments, stepwise_stationary_moments

UPPER = np.triu_indices(2)


def tiny_problem():
    """N = 6 so that the wor average over permutations is an exact enumeration (6!/2!^3 = 90 partitions)."""
    rng = np.random.default_rng(shifted_seed(7))
    X = rng.normal(size=(6, 2)) * np.array([1.0, 0.6])
    y = X @ np.array([1.0, -0.5]) + 0.5 * rng.normal(size=6)
    return BayesianLinearRegression(torch.tensor(X), torch.tensor(y), noise_std=0.5, prior_std=1.0)


def exact_moments(A, g, lr, T, b, scheme, method, options):
    """The exact answer for a case, from the public theory functions (positions only)."""
    if method == "sghmc":
        return sghmc_stationary_moments(A, g, lr, T, b, scheme=scheme, alpha=options["alpha"],
                                        beta_hat=options.get("beta_hat", 0.0),
                                        control_variate_centre=options.get("centre"))
    kw = dict(preconditioner=options.get("preconditioner"), control_variate_centre=options.get("centre"))
    if scheme == "wor":
        return epoch_stationary_moments(A, g, lr, T, b, **kw)
    return stepwise_stationary_moments(A, g, lr, T, b, scheme=scheme, **kw)


def relaxation_steps(H, lr, method, options):
    """Steps per e-fold of the full-batch mean recursion: 1 / (1 - spectral radius of E[M])."""
    p = H.shape[0]
    eye = np.eye(p)
    if method == "sghmc":
        a = options["alpha"]
        row = np.hstack([-lr * H, (1 - a) * eye])
        M = np.vstack([np.hstack([eye, np.zeros((p, p))]) + row, row])
    else:
        P = options.get("preconditioner", eye)
        M = eye - lr * P @ H
    rho = np.max(np.abs(np.linalg.eigvals(M)))
    return math.ceil(1.0 / (1.0 - rho))


# (id, problem, method, scheme, lr * h_max of lr P H, options, alternatives beyond the posterior)
# "map" / "inv_h" are resolved from the problem; an alternative is (name, scheme, option changes).
CASES = [
    ("sghmc-wr", "blr", "sghmc", "wr", 0.1, dict(alpha=0.5), [("full batch", "full", {})]),
    ("sghmc-iid", "blr", "sghmc", "iid", 0.1, dict(alpha=0.5), [("full batch", "full", {})]),
    ("sghmc-wr-beta", "blr", "sghmc", "wr", 0.1, dict(alpha=0.5, beta_hat=0.2),
     [("beta_hat = 0", "wr", dict(beta_hat=0.0))]),
    ("sghmc-wor", "tiny", "sghmc", "wor", 0.6, dict(alpha=0.5), [("wr", "wr", {})]),
    ("sgld-precond-wr", "blr", "sgld", "wr", 0.1, dict(preconditioner="inv_h"), [("full batch", "full", {})]),
    ("sgworld-precond-wor", "tiny", "sgworld", "wor", 0.4, dict(preconditioner="inv_h"), [("wr", "wr", {})]),
    ("sgld_cv-wr", "blr", "sgld_cv", "wr", 0.3, dict(centre="map"), [("no control variate", "wr", dict(centre=None))]),
    ("sgld_cv-wor", "tiny", "sgld_cv", "wor", 0.8, dict(centre="map"),
     [("no control variate", "wor", dict(centre=None))]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_family_matches_exact_moments(case, blr_problem):
    name, which, method, scheme, lr_h, options, alternatives = case
    problem = blr_problem if which == "blr" else tiny_problem()
    A, g = problem.quadratic_terms()
    H = A.mean(0)
    target = problem.target()
    resolve = {"map": target.mean, "inv_h": np.linalg.inv(H)}
    options = {k: resolve.get(v, v) if isinstance(v, str) else v for k, v in options.items()}
    P = options.get("preconditioner", np.eye(2))
    lr = lr_h / np.max(np.real(np.linalg.eigvals(P @ H)))
    b = 4 if which == "blr" else 2
    T = 1.0

    exact = exact_moments(A, g, lr, T, b, scheme, method, options)
    relax = relaxation_steps(H, lr, method, options)
    start = exact.mean + 10 * np.sqrt(np.diag(exact.cov))
    kernel_options = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
    trace = sample(problem, method, lr=lr, temperature=T, batch_size=b, scheme=scheme, chains=2000,
                   init=torch.as_tensor(start), burn_in=25 * relax, thin=relax, num_draws=30,
                   seed=shifted_seed(21), progress=False, kernel_options=kernel_options)
    mean, mean_se, cov, cov_se = chain_moments(trace.draws)
    assert_within_se(mean, exact.mean, mean_se, what=f"{name} mean")
    assert_within_se(cov[UPPER], exact.cov[UPPER], cov_se[UPPER], what=f"{name} covariance")

    def separation(other_mean, other_cov):
        return max(np.max(np.abs(exact.mean - other_mean) / mean_se),
                   np.max(np.abs(exact.cov - other_cov)[UPPER] / cov_se[UPPER]))

    assert separation(start, np.zeros((2, 2))) > 3 * Z_TOL
    assert separation(target.mean, target.cov) > 3 * Z_TOL, f"{name}: exact answer too close to the posterior"
    for label, alt_scheme, changes in alternatives:
        alt = exact_moments(A, g, lr, T, b, alt_scheme, method, {**options, **changes})
        assert separation(alt.mean, alt.cov) > 3 * Z_TOL, f"{name}: cannot tell it from {label}"


@pytest.mark.parametrize("scheme", ["wr", "wor"])
def test_sghmc_momentum_matches_exact_full_state(scheme, blr_problem):
    # The trace holds positions only, so the kernel is stepped here (its own index stream and noise
    # streams, as sample() builds them) and the 2p-dimensional state (w, v) is recorded: 4 means and 10
    # covariance entries against sghmc_stationary_moments(..., state="full"). False-failure rate
    # 14 x 5.7e-7 = 8e-6 per scheme. wor: sampled permutations (N = 40), so the tolerance also holds the
    # permutation average's own jackknife SE, scaled from its t_31 quantile to Z_TOL's tail and added in
    # quadrature (independent errors; 20000 permutations make it 0.2-3 % of the entries, about the
    # simulation's). Power: the momentum covariance is far (> 3 Z_TOL SE) from its lr -> 0
    # value 2 lr T / (2 - alpha) I and from Chen et al.'s lr T I, and the start is zero momentum.
    problem = blr_problem
    A, g = problem.quadratic_terms()
    H = A.mean(0)
    alpha, T, b, chains = 0.5, 1.0, 4, 2000
    lr = 0.3 / np.linalg.eigvalsh(H)[-1]
    if scheme == "wor":
        exact = sghmc_stationary_moments(A, g, lr, T, b, scheme="wor", alpha=alpha, state="full",
                                         permutations=20000, seed=shifted_seed(22))
    else:
        exact = sghmc_stationary_moments(A, g, lr, T, b, scheme="wr", alpha=alpha, state="full")
    relax = relaxation_steps(H, lr, "sghmc", {"alpha": alpha})
    epoch = problem.n // b
    burn, thin, draws = 25 * relax, max(relax, epoch), 30
    burn, thin = epoch * math.ceil(burn / epoch), epoch * math.ceil(thin / epoch)  # epoch boundaries (wor)
    kernel = METHODS["sghmc"](problem, lr, T, alpha=alpha)
    start = exact.mean[:2] + 10 * np.sqrt(np.diag(exact.cov)[:2])
    state = kernel.init(torch.as_tensor(start).expand(chains, 2).clone())
    seed = shifted_seed(23)
    stream = IndexStream(scheme, problem.n, b, chains, ChainRandom.from_seed(seed, INDEX_STREAM, chains))
    noise = ChainRandom.from_seed(seed, NOISE_STREAM, chains)
    out = np.empty((chains, draws, 4))
    for s in range(burn + thin * draws):
        state, _ = kernel.step(state, next(stream), noise)
        if s >= burn and (s + 1 - burn) % thin == 0:
            out[:, (s + 1 - burn) // thin - 1] = torch.cat([state.position, state.momentum], 1).numpy()
    mean, mean_se, cov, cov_se = chain_moments(out)
    upper = np.triu_indices(4)
    tol_mean, tol_cov = mean_se, cov_se[upper]
    if exact.mean_se is not None:
        k = Z_TOL / stats.t.isf(stats.norm.sf(Z_TOL), 31)  # the t_31 quantile of the same tail, in Z_TOL units
        tol_mean = np.hypot(mean_se, exact.mean_se / k)
        tol_cov = np.hypot(cov_se[upper], exact.cov_se[upper] / k)
    assert_within_se(mean, exact.mean, tol_mean, what=f"sghmc {scheme} (w, v) mean")
    assert_within_se(cov[upper], exact.cov[upper], tol_cov, what=f"sghmc {scheme} (w, v) covariance")

    vv, vv_se = exact.cov[2:, 2:], cov_se[2:, 2:]
    limits = (("2 lr T / (2 - alpha) I", 2 * lr * T / (2 - alpha) * np.eye(2)), ("lr T I", lr * T * np.eye(2)))
    for label, limit in limits:
        assert np.max(np.abs(vv - limit) / vv_se) > 3 * Z_TOL, f"momentum covariance too close to {label}"
    assert np.max(np.abs(vv) / vv_se) > 3 * Z_TOL
