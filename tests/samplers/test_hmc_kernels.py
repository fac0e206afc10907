"""HMC, look-ahead HMC and Markov-jump HMC: exact identities, exact fixed points on energy ladders,
and stationary moments against exact answers.

Statistical tests compare with exact values in units of standard errors from the spread of the
independent chains' own averages (valid whatever the autocorrelation within a chain, so ESS-aware by
construction) at ``Z_TOL = 5`` (two-sided 5.7e-7 per number; each test states its count).
Chains start away from the target in every direction the run can relax, and each test checks that
its start is many standard errors from the exact answer (its power).
"""

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch

from sgworld import sample
from sgworld.problems import EnergyProblem, ill_conditioned_gaussian, rough_well
from sgworld.samplers import hmc, lahmc, mjhmc, time_weighted_moments
from sgworld.samplers.lahmc import CumulativeLeapProbabilities
from sgworld.theory.ladder import (
    lahmc_matrix, mjhmc_generator, mjhmc_jump_chain, mjhmc_rates, stationary_law,
)

from conftest import Z_TOL, assert_within_se, batch_means_of_chain_means, chain_moments, shifted_seed

METHODS = ("hmc", "lahmc", "mjhmc")
PAPER = dict(leapfrog_steps=10)  # eps = 1, M = 10 (Sohl-Dickstein et al. 2014, section 5)


def options(method: str, beta: float = 0.5, **extra) -> dict:
    out = {**PAPER, "beta": beta, **extra}
    if method == "lahmc":
        out.setdefault("look_ahead", 4)
    return out


def generator(n: int) -> torch.Generator:
    return torch.Generator().manual_seed(shifted_seed(n))


# ----------------------------------------------------------------------------- exact identities


def test_lahmc_with_one_leap_is_hmc_step_for_step():
    problem = rough_well()  # 45% rejections at eps = 1, M = 10: both branches are exercised
    x0 = 100.0 * torch.randn(64, 2, generator=generator(1), dtype=torch.float64)
    a, b = hmc(problem, 1.0, beta=0.3), lahmc(problem, 1.0, look_ahead=1, beta=0.3)
    ga, gb = generator(2), generator(2)
    sa, sb = a.init(x0), b.init(x0)
    flips = 0
    for _ in range(40):
        sa, ia = a.step(sa, None, ga)
        sb, ib = b.step(sb, None, gb)
        assert torch.equal(sa.position, sb.position) and torch.equal(sa.momentum, sb.momentum)
        assert torch.equal(ia.accepted, ib.accepted) and torch.equal(ia.transitions, ib.transitions)
        assert torch.equal(ia.grad_evals, ib.grad_evals)
        flips += int((~ia.accepted).sum())
    assert flips > 100  # rejections happened


def test_gradient_counts_per_transition():
    """HMC: M per step. Look-ahead: a M for a transition to L^a, K M for a flip (undecided chains only).
    Markov jump (one jump per step): M for L, 0 for F, 2 M for R, plus 2 M on the first step."""
    problem, m = rough_well(), 7
    x0 = 100.0 * torch.randn(200, 2, generator=generator(3), dtype=torch.float64)
    kernel = lahmc(problem, 1.0, leapfrog_steps=m, look_ahead=4, beta=1.0)
    state, gen = kernel.init(x0), generator(4)
    seen = torch.zeros(5, dtype=torch.long)
    for _ in range(20):
        state, info = kernel.step(state, None, gen)
        a = info.transitions.argmax(1)
        assert torch.equal(info.grad_evals, m * torch.where(a == 0, 4, a))
        seen += info.transitions.sum(0)
    assert bool((seen > 0).all())  # every kind of transition occurred
    jump = mjhmc(problem, 1.0, leapfrog_steps=m, beta=0.5, time_step=None)
    state, gen = jump.init(x0), generator(5)
    state, info = jump.step(state, None, gen)
    first = 2 * m + m * (info.transitions @ torch.tensor([1, 0, 2]))
    assert torch.equal(info.grad_evals, first)
    kinds = torch.zeros(3, dtype=torch.long)
    for _ in range(20):
        state, info = jump.step(state, None, gen)
        assert torch.equal(info.grad_evals, m * (info.transitions @ torch.tensor([1, 0, 2])))
        kinds += info.transitions.sum(0)
    assert bool((kinds > 0).all())


@pytest.mark.parametrize("time_step", [None, 3.0])
def test_mjhmc_cached_neighbours_are_l_and_l_inverse_of_the_state(time_step):
    """The state carries L zeta and F L F zeta for the rates; after any mix of jumps (several per step and
    chain on the uniform-time grid, none for some chains) they must equal a fresh computation."""
    from sgworld.samplers.hamiltonian import Phase, flip, leapfrog

    problem = rough_well()
    x0 = 100.0 * torch.randn(64, 2, generator=generator(7), dtype=torch.float64)
    kernel = mjhmc(problem, 1.0, leapfrog_steps=4, beta=0.3, time_step=time_step)
    state, gen = kernel.init(x0), generator(8)
    for _ in range(6):
        state, info = kernel.step(state, None, gen)
        z = Phase(state.position, state.momentum, state.loss, state.grad)
        fwd, bwd = leapfrog(problem, z, 1.0, 4, 1.0), flip(leapfrog(problem, flip(z), 1.0, 4, 1.0))
        for cached, fresh in ((state.forward, fwd), (state.backward, bwd)):
            for a, b in zip(cached, fresh):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-9)
    assert int(info.transitions.sum(1).max()) > 1 or time_step is None   # several jumps in one step


def test_leap_probabilities_are_valid_and_satisfy_eq_26():
    """pi >= 0, sum pi = 1, and p(zeta) pi_a(zeta) = p(F L^a zeta) pi_a(F L^a zeta) (eq. 26), with energy
    differences of hundreds (exp would overflow in linear space)."""
    rng = np.random.default_rng(shifted_seed(6))
    K = 5
    energies = np.cumsum(  # random walks of energy along 1200 trajectories, three scales
        rng.normal(size=(K + 1, 1200)) * np.array([0.3, 3.0, 300.0]).repeat(400), 0)
    H = [torch.tensor(e) for e in energies]
    pi = CumulativeLeapProbabilities(H).transition_probabilities(K).numpy()
    assert np.isfinite(pi).all() and pi.min() >= 0
    np.testing.assert_allclose(pi.sum(1), 1.0, atol=1e-12)
    for a in range(1, K + 1):
        back = [H[a - j] for j in range(a + 1)] + [H[0]] * (K - a)  # energies along F L^a zeta's trajectory
        pi_back = CumulativeLeapProbabilities(back).transition_probabilities(K).numpy()
        low = np.minimum(energies[0], energies[a])   # both sides in units of the larger of p(zeta), p(F L^a zeta)
        lhs = np.exp(low - energies[0]) * pi[:, a]
        rhs = np.exp(low - energies[a]) * pi_back[:, a]
        assert np.abs(lhs - rhs).max() <= 1e-12


@pytest.mark.parametrize("n,look_ahead", [(7, 4), (3, 4), (12, 1), (9, 6)])
def test_lahmc_transition_matrix_has_the_target_as_fixed_point(n, look_ahead):
    rng = np.random.default_rng(shifted_seed(10 + n))
    for scale in (0.5, 3.0, 40.0):
        energies = scale * rng.normal(size=n)
        T, p = lahmc_matrix(energies, look_ahead), stationary_law(energies)
        np.testing.assert_allclose(T.sum(1), 1.0, atol=1e-13)
        assert T.min() >= 0
        assert np.abs(p @ T - p).max() <= 1e-12


@pytest.mark.parametrize("refresh", [0.0, 0.05, 2.0])
def test_mjhmc_generator_has_the_target_as_fixed_point(refresh):
    rng = np.random.default_rng(shifted_seed(20))
    for n in (3, 8, 15):
        for scale in (0.5, 3.0, 40.0):
            energies = scale * rng.normal(size=n)
            p = stationary_law(energies)
            assert np.abs(p @ mjhmc_generator(energies, refresh)).max() <= 1e-12
            # the jump chain's own stationary law is p Gamma_tot, not p
            q = p * mjhmc_rates(energies, refresh).sum(1)
            q /= q.sum()
            P = mjhmc_jump_chain(energies, refresh)
            assert np.abs(q @ P - q).max() <= 1e-12


def test_overflowing_and_infinite_energies_never_freeze_a_chain():
    """Chains on a plateau 1e4 above a harmonic well (every way out lowers the energy by > 1e4: exp
    overflows in linear space) leave it at once; next to an infinite wall (proposals into it have
    energy inf) chains stay finite, without NaN, and keep stepping."""
    def energy(x):
        e = 0.5 * (x * x).sum(1) + torch.where(x[:, 0] > 150.0, 1e4, 0.0)
        return torch.where(x[:, 1] < -50.0, math.inf, e)

    problem = EnergyProblem(energy, 2, energy_grad=lambda x: x)
    start = torch.tensor([[160.0, 0.0]] * 4 + [[0.0, 100.0]] * 4, dtype=torch.float64)
    for method in METHODS:
        kernel = {"hmc": hmc, "lahmc": lahmc, "mjhmc": mjhmc}[method](problem, 1.0, **options(method, 0.5))
        state, gen = kernel.init(start), generator(30)
        for _ in range(5):
            state, info = kernel.step(state, None, gen)
            assert torch.isfinite(state.position).all() and torch.isfinite(state.momentum).all()
            assert float(problem.loss(state.position).max()) < math.inf
        assert bool((state.position[:4, 0] < 150).all()), method       # off the plateau


# ----------------------------------------------------------------------------- stationary moments


def run_from(problem, method, x0, *, burn_in, draws, seed, beta=0.5, lr=1.0, **extra):
    return sample(problem, method, lr=lr, chains=x0.shape[0], num_draws=draws, burn_in=burn_in, init=x0,
                  seed=shifted_seed(seed), progress=False, kernel_options=options(method, beta, **extra))


@pytest.mark.parametrize("method", METHODS)
def test_correlated_gaussian_from_a_distant_start(method, blr_problem):
    """The posterior of a Bayesian linear regression (correlated, closed form), chains started at zero
    (hundreds of posterior standard deviations away): 5 numbers, false-failure rate < 3e-6."""
    target = blr_problem.target()
    h_max = np.linalg.eigvalsh(blr_problem.hessian().numpy())[-1]
    x0 = torch.zeros(128, 2, dtype=torch.float64)
    trace = run_from(blr_problem, method, x0, burn_in=60, draws=100, seed=40, lr=0.5 / math.sqrt(h_max),
                     leapfrog_steps=5)
    mean, mean_se, cov, cov_se = chain_moments(trace.draws)
    up = np.triu_indices(2)
    assert_within_se(mean, target.mean, mean_se, what=f"{method} mean")
    assert_within_se(cov[up], target.cov[up], cov_se[up], what=f"{method} covariance")
    assert np.abs(target.mean / mean_se).min() > 20 * Z_TOL   # power: the start is far away
    assert trace.meta["kernel_options"]["leapfrog_steps"] == 5


@pytest.mark.parametrize("dim", [2, 100])
@pytest.mark.parametrize("method", METHODS)
def test_paper_gaussians(method, dim):
    """The paper's Gaussians, covariance eigenvalues log-spaced from 1 to 1e6, at eps = 1, M = 10,
    chains started on exact draws as in the paper (at a fixed trajectory length some directions of the
    100-D one resonate, eps M / sigma ~ 2 pi, and relax too slowly for a distant start; the distant
    starts are in the tests above). Power: a sampler that does not keep the target moves the fast
    directions away within the run, so the test also checks that they decorrelate from the start.
    Means and variances of every direction: 2 * dim numbers, false-failure rate < 1.2e-4 (dim = 100)."""
    problem = ill_conditioned_gaussian(dim)
    var = (1.0 / problem.precision).numpy()
    chains = 400 if dim == 2 else 160
    x0 = torch.randn(chains, dim, generator=generator(50 + dim), dtype=torch.float64) * torch.from_numpy(var) ** 0.5
    trace = run_from(problem, method, x0, burn_in=30, draws=80 if dim == 100 else 150, seed=60 + dim)
    mean, mean_se = batch_means_of_chain_means(trace.draws)
    second, second_se = batch_means_of_chain_means(trace.draws, lambda x: x * x)
    assert_within_se(mean, 0.0, mean_se, what=f"{method} {dim}-D mean")
    assert_within_se(second, var, second_se, what=f"{method} {dim}-D variance")
    fast = var <= 100.0
    start, end = x0.numpy()[:, fast], trace.draws[:, -1, fast]
    corr = (start * end).mean(0) / np.sqrt((start ** 2).mean(0) * (end ** 2).mean(0))
    assert np.mean(np.abs(corr) < 0.5) >= 0.8, f"{method}: the fast directions did not move: {corr}"


def rough_well_moments(sigma1: float, sigma2: float = 2.0):
    """E[x^2] and E[cos(pi x / sigma2)] of one coordinate of the rough well, by quadrature."""
    x = np.linspace(-14 * sigma1, 14 * sigma1, 2_000_001)
    w = np.exp(-(x * x / (2 * sigma1**2) + np.cos(np.pi * x / sigma2)))
    return (x * x * w).sum() / w.sum(), (np.cos(np.pi * x / sigma2) * w).sum() / w.sum()


@pytest.mark.parametrize("method", METHODS)
def test_rough_well_against_quadrature(method):
    """E[x^2] and E[cos(pi x/2)] per coordinate against quadrature: a narrow rough well (sigma1 = 10)
    from x = 0, and the paper's (sigma1 = 100) from the paper's start 100 n (its E[x^2] changes
    little in this run, the ripple occupancy E[cos] is what it must reach). 8 numbers, < 5e-6."""
    for sigma1, start, seed in ((10.0, 0.0, 70), (100.0, 100.0, 71)):
        problem = rough_well(2, sigma1=sigma1)
        x0 = start * torch.randn(300, 2, generator=generator(seed), dtype=torch.float64)
        trace = run_from(problem, method, x0, burn_in=60, draws=120, seed=seed + 10)
        x2_exact, cos_exact = rough_well_moments(sigma1)
        x2, x2_se = batch_means_of_chain_means(trace.draws, lambda x: x * x)
        c, c_se = batch_means_of_chain_means(trace.draws, lambda x: np.cos(np.pi * x / 2))
        assert_within_se(c, cos_exact, c_se, what=f"{method} sigma1={sigma1} E[cos]")
        assert_within_se(x2, x2_exact, x2_se, what=f"{method} sigma1={sigma1} E[x^2]")
        start_cos = np.cos(np.pi * x0.numpy() / 2).mean(0)
        assert (np.abs(start_cos - cos_exact) / c_se).min() > 4 * Z_TOL    # power


def ratio_with_se(numerators: np.ndarray, denominators: np.ndarray):
    """``sum a_c / sum b_c`` over independent chains c, with its delta-method standard error."""
    r = numerators.sum(0) / denominators.sum(0)
    resid = numerators - r * denominators[:, None]
    n = denominators.shape[0]
    return r, np.sqrt((resid ** 2).sum(0) / (n * (n - 1))) / denominators.mean()


def test_mjhmc_jump_chain_needs_its_holding_time_weights():
    """At a large step the embedded jump chain is biased unless weighted by holding times 1/Gamma_tot;
    weighted, and on the uniform-time grid, it is exact. 4 numbers checked, < 3e-6; the bias of the
    unweighted variance must exceed 10 standard errors."""
    problem = ill_conditioned_gaussian(2, smallest=0.25, largest=1.0)     # variances 4 and 1
    var = (1.0 / problem.precision).numpy()
    x0 = torch.zeros(300, 2, dtype=torch.float64)
    kernel = mjhmc(problem, 1.5, leapfrog_steps=3, beta=0.3, time_step=None)
    state, gen = kernel.init(x0), generator(80)
    positions, weights = [], []
    for step in range(330):
        state, info = kernel.step(state, None, gen)
        if step >= 30:
            positions.append(state.position.numpy().copy())
            weights.append(info.weight.numpy().copy())
    x = np.stack(positions, 1)                      # (chains, draws, 2)
    w = np.stack(weights, 1)                        # (chains, draws)
    weighted, weighted_se = ratio_with_se((w[..., None] * x * x).sum(1), w.sum(1))
    assert_within_se(weighted, var, weighted_se, what="time-weighted variance")
    plain, plain_se = batch_means_of_chain_means(x, lambda y: y * y)
    assert (np.abs(plain - var) / plain_se).max() > 10    # the unweighted chain is visibly biased
    _, cov = time_weighted_moments(x, w)
    np.testing.assert_allclose(np.diag(cov), weighted, rtol=0.02)
    uniform = run_from(problem, "mjhmc", x0, burn_in=30, draws=150, seed=81, lr=1.5, beta=0.3, leapfrog_steps=3)
    second, second_se = batch_means_of_chain_means(uniform.draws, lambda y: y * y)
    assert_within_se(second, var, second_se, what="uniform-time variance")


# ----------------------------------------------------------------------------- driver and inputs


def test_sample_records_acceptance_gradients_and_transition_fractions():
    problem = rough_well()
    x0 = 100.0 * torch.randn(16, 2, generator=generator(90), dtype=torch.float64)
    trace = sample(problem, "lahmc", lr=1.0, chains=16, num_draws=20, init=x0, seed=1, progress=False,
                   kernel_options={"leapfrog_steps": 10, "look_ahead": 4, "beta": 0.1})
    meta = trace.meta
    assert meta["transition_names"] == ["F", "L", "L^2", "L^3", "L^4"]
    assert abs(sum(meta["transition_fractions"]) - 1) < 1e-12
    assert len(meta["acceptance_rate"]) == 16 and len(meta["grad_evals_per_chain"]) == 16
    assert 10 <= meta["grad_evals_per_step"] <= 40
    jump = sample(problem, "mjhmc", lr=1.0, chains=4, num_draws=5, init=x0[:4], seed=1, progress=False,
                  kernel_options={"beta": 0.1})
    assert jump.meta["transition_names"] == ["L", "F", "R"] and "acceptance_rate" not in jump.meta


def test_resume_is_bit_exact_with_the_counters(tmp_path):
    problem = rough_well()
    kernel = lahmc(problem, 1.0, leapfrog_steps=5, look_ahead=3, beta=0.5)
    calls = itertools.count()

    def crashing(state, idx, gen):
        if next(calls) == 130:
            raise KeyboardInterrupt
        return kernel.step(state, idx, gen)

    kwargs = dict(chains=8, num_draws=50, thin=4, seed=5, progress=False,
                  init=100.0 * torch.randn(8, 2, generator=generator(91), dtype=torch.float64))
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        sample(problem, dataclasses.replace(kernel, step=crashing), out=out, checkpoint_every=0.0, **kwargs)
    resumed = sample(problem, kernel, out=out, checkpoint_every=0.0, **kwargs)
    reference = sample(problem, kernel, **kwargs)
    assert np.array_equal(resumed.draws, reference.draws)
    for key in ("acceptance_rate", "grad_evals_per_chain", "transition_fractions"):
        assert resumed.meta[key] == reference.meta[key]


@pytest.mark.parametrize("method,lr,opts,message", [
    ("hmc", 0.0, {}, "step size lr"),
    ("hmc", 1.0, {"leapfrog_steps": 0}, "leapfrog_steps = 0 is out of range"),
    ("lahmc", 1.0, {"look_ahead": 0}, "look_ahead .* = 0 is out of range"),
    ("lahmc", 1.0, {"beta": 0.0}, "beta = 0.0 is out of range; allowed: 0 < beta <= 1"),
    ("hmc", 1.0, {"beta": 1.5}, "beta = 1.5 is out of range"),
    ("mjhmc", 1.0, {"beta": 0.0}, r"refresh rate .* = 0 \(not ergodic\)"),
    ("mjhmc", 1.0, {"beta": 1.0}, "infinite"),
    ("mjhmc", 1.0, {"time_step": -1.0}, "time_step"),
    ("lahmc", 1.0, {"steps": 3}, r"kernel_options \['steps'\] are not settings of 'lahmc'"),
])
def test_bad_settings_are_one_line_errors(method, lr, opts, message):
    with pytest.raises(ValueError, match=message) as err:
        sample(rough_well(), method, lr=lr, chains=2, num_draws=1, kernel_options=opts, progress=False)
    assert "\n" not in str(err.value)
