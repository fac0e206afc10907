"""Divergence caught early: the lr limit 2 / h_max up front, and growth while the chains are still finite."""

import numpy as np
import pytest
import torch

from sgworld import DivergenceError, GaussianLocation, Problem, QuadraticProblem, sample
from sgworld.errors import StepSizeError
from sgworld.theory.exact import epoch_stationary_moments, stepwise_stationary_moments

from conftest import shifted_seed


def location(n=100, seed=0):
    """A 1-D Gaussian location model (h = N / sigma^2 + 1 / tau^2 = 101)."""
    rng = np.random.default_rng(shifted_seed(seed))
    return GaussianLocation(torch.tensor(rng.normal(size=n)))


def plain(problem: QuadraticProblem) -> Problem:
    """The same potential as a generic Problem, which knows no h_max (no up-front limit)."""
    return Problem(problem._quadratic_potential, (problem.A, problem.g), problem.dim, name="plain")


def run(problem, method, lr, **kw):
    return sample(problem, method, lr=lr, **{"batch_size": 10, "chains": 3, "num_draws": 4000, "progress": False,
                                             "seed": shifted_seed(1), **kw})


@pytest.mark.parametrize("method", ["sgld", "sgworld", "ula"])
def test_lr_at_or_above_the_limit_is_refused_up_front(method):
    gl = location()
    h = gl.h_max()
    with pytest.raises(StepSizeError, match=rf"lr \* h_max = 2\.2 >= 2.*lr < 2 / h_max = {2 / h:.6g} "):
        run(gl, method, 2.2 / h)


def test_the_issue_reproductions_end_with_the_limit_named():
    rng = np.random.default_rng(shifted_seed(0))
    A = np.stack([np.diag(rng.uniform(0.5, 2.0, 3)) for _ in range(50)])
    qp = QuadraticProblem(torch.tensor(A), torch.tensor(rng.normal(size=(50, 3))))
    with pytest.raises(StepSizeError, match=rf"lr \* h_max = 10 >= 2.*2 / h_max = {2 / qp.h_max():.6g}"):
        run(qp, "sgld", 10 / qp.h_max(), batch_size=5)
    with pytest.raises(StepSizeError, match=r"lr \* h_max = 2\.2 >= 2"):
        run(location(), "sgld", 2.2 / location().h_max())


def test_lr_limit_is_exact_where_it_is_claimed():
    """2 / h_max is the exact edge of stability: the exact discrete-time stationary state exists just
    below it and not at it, for step-wise schemes and (equal per-sample Hessians) for wor."""
    gl = location(n=6)
    h = gl.h_max()
    A, g = gl.quadratic_terms()
    assert gl.lr_limit("wr") == gl.lr_limit(None) == gl.lr_limit("wor") == pytest.approx(2 / h)
    for moments in (epoch_stationary_moments, lambda *a: stepwise_stationary_moments(*a, scheme="wr")):
        moments(A, g, 1.99 / h, 1.0, 2)  # exists
        with pytest.raises(ValueError, match="does not contract"):
            moments(A, g, 2.0 / h, 1.0, 2)
    # Unequal per-sample Hessians {1, 3} (H = 2), b = 1: at lr = 1 (lr h_max = 2) every epoch multiplies
    # by (1 - 1)(1 - 3) = 0 in either order, so wor contracts where wr cannot: no up-front limit for wor.
    a3 = np.array([[[1.0]], [[3.0]]])
    epoch_stationary_moments(a3, np.ones((2, 1)), 1.0, 0.0, 1)
    unequal = QuadraticProblem(torch.tensor(a3), torch.ones(2, 1))
    assert unequal.lr_limit("wr") == pytest.approx(1.0) and unequal.lr_limit("wor") is None


def test_metropolis_kernels_are_not_refused():
    gl = location()
    t = sample(gl, "mala", lr=3.0 / gl.h_max(), chains=2, num_draws=20, progress=False)
    assert np.isfinite(t.draws).all()


def test_growth_while_finite_is_caught_early():
    """lr h = 2.2 on a problem that knows no h_max: each step multiplies the distance by 1.2, which
    would overflow only near step 3900 (after filling the trace with 1e126); the growth check stops it
    within a few hundred steps, with every recorded draw still finite and moderate."""
    gl = location()
    with pytest.raises(DivergenceError, match=r"3 chain\(s\) diverged \(distance from the start grew") as info:
        run(plain(gl), "sgld", 2.2 / gl.h_max())
    err = info.value
    assert err.reason == "growth" and err.chains == [0, 1, 2]
    assert max(err.steps) <= 400
    assert np.isfinite(err.trace.draws).all() and np.abs(err.trace.draws).max() < 1e30


def test_growth_names_the_limit_when_the_problem_knows_it():
    """wr with widely spread per-sample Hessians: the mean contracts (lr h_max = 1.5 < 2) but the second
    moment does not (E[(1 - lr a_B)^2] > 1), so the chains diverge below the up-front limit."""
    A = torch.tensor([[[0.02]], [[3.98]]] * 10, dtype=torch.float64)  # H = 2, b = 1: factors 0.985 and -1.985
    qp = QuadraticProblem(A, torch.zeros(20, 1))
    lr = 1.5 / qp.h_max()
    A_np, g_np = qp.quadratic_terms()
    with pytest.raises(ValueError, match="second-moment recursion does not contract"):
        stepwise_stationary_moments(A_np, g_np, lr, 1.0, 1, scheme="wr")
    with pytest.raises(DivergenceError, match=rf"stability limit is lr < 2 / h_max = {2 / qp.h_max():.6g} \(lr = "):
        run(qp, "sgld", lr, batch_size=1, num_draws=20000)


@pytest.mark.parametrize("lr_h, init, method, temperature", [
    (1.9, 1e6, "sgld", 1.0),      # oscillating but contracting (|1 - lr h| = 0.9), from far away
    (1.0, 1e8, "ula", 1.0),       # lands on the minimum in one step: the first jump is the reference
    (1e-3, 1e3, "sgworld", 1.0),  # slow relaxation (1000 steps per e-fold) from a bad start
    (0.3, 0.0, "sgld", 1.0),      # started at the mode: diffusion only
    (0.5, 1e4, "sgd", 0.0),       # no noise at all, minibatch noise only
])
def test_healthy_chains_are_never_flagged(lr_h, init, method, temperature):
    """Chains that travel far (up to 1e8 in one step) or only diffuse are not divergent. Power: each
    chain really travels (at least half its initial offset), and the same setup at lr h = 2.05 is
    flagged (test_growth_while_finite_is_caught_early covers 2.2)."""
    gl = location()
    problem = plain(gl)
    mode = float(gl.target().mean[0])
    start = torch.full((1,), mode + init, dtype=torch.float64)
    draws = 1500 // (10 if method == "sgworld" else 1)  # 1500 steps (sgworld draws once per epoch of 10)
    t = run(problem, method, lr_h / gl.h_max(), temperature=temperature, init=start, num_draws=draws)
    if init:
        assert np.abs(t.draws[:, -1, 0] - start.item()).min() >= 0.5 * init
    with pytest.raises(DivergenceError, match="grew"):
        run(problem, method, 2.05 / gl.h_max(), temperature=temperature, init=start + 1.0)
