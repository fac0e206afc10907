"""The drop-in PyTorch path: ``sgworld.optim`` (SGLD / SGWORLD optimizers, with-replacement sampler).

The key test runs an ordinary PyTorch loop (nn.Linear, DataLoader, loss.backward(), opt.step()) on
an exactly solvable Bayesian linear regression and compares its stationary mean and covariance with
the exact discrete-time moments of ``sgworld.theory.exact`` — the numbers the functional
``sgworld.sample`` path is tested against in tests/samplers/test_exact_stationary.py.
"""

import io
import math

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sgworld import BayesianLinearRegression, sample
from sgworld.batching import IndexStream
from sgworld.diagnostics import ess
from sgworld.rng import CHAIN_GROUP, ChainRandom
from sgworld.optim import SGLD, SGWORLD, WithReplacementSampler
from sgworld.theory.exact import epoch_stationary_moments, stepwise_stationary_moments

from conftest import Z_TOL, assert_within_se, shifted_seed

# A hand-built regression, N = 8, d = 2, with a well-conditioned posterior (h_max / h_min = 1.1) so
# that one chain mixes in a few steps. Batches of 2: the wor epoch average is an exact enumeration of
# 8! / 2!^4 = 2520 ordered partitions.
N, B, D = 8, 2, 2
NOISE_STD, PRIOR_STD = 0.5, 1.0
_i = np.arange(N)
X = np.stack([np.cos(5 * np.pi * _i / N), np.sin(5 * np.pi * _i / N)], 1) * (1 + 0.4 * np.cos(_i))[:, None]
Y = X @ np.array([1.0, -0.5]) + 0.8 * np.sin(2.7 * _i + 1)


def dataset():
    return TensorDataset(torch.tensor(X), torch.tensor(Y))


def blr():
    return BayesianLinearRegression(torch.tensor(X), torch.tensor(Y), noise_std=NOISE_STD, prior_std=PRIOR_STD)


def linear_model(weight):
    model = nn.Linear(D, 1, bias=False, dtype=torch.float64)
    with torch.no_grad():
        model.weight.copy_(torch.as_tensor(weight, dtype=torch.float64).reshape(1, D))
    return model


def train_step(model, opt, xb, yb):
    """The user's loop body: the mean Gaussian NLL of the batch (constants dropped)."""
    opt.zero_grad()
    loss = F.mse_loss(model(xb).squeeze(-1), yb) / (2 * NOISE_STD**2)
    loss.backward()
    opt.step()


def optimizer(cls, model, lr, seed):
    return cls(model.parameters(), lr=lr, num_data=N, prior_precision=1 / PRIOR_STD**2, seed=shifted_seed(seed))


def seeded(seed):
    return torch.Generator().manual_seed(shifted_seed(seed))


# ----------------------------------------------------------------------------- (a) the update rule

def randn(gen, *shape):
    return torch.randn(shape, generator=gen, dtype=torch.float64)


def randomised(model, gen):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(randn(gen, *p.shape))
    return model


def test_step_matches_the_update_formula():
    gen = seeded(0)
    model = randomised(nn.Linear(3, 2, dtype=torch.float64), gen)
    groups = [{"params": [model.weight], "prior_precision": 2.0},
              {"params": [model.bias], "lr": 0.03, "temperature": 0.5}]
    opt = SGLD(groups, lr=0.01, num_data=50, prior_precision=0.0, generator=seeded(11))
    x, y = randn(gen, 4, 3), randn(gen, 4, 2)
    F.mse_loss(model(x), y).backward()
    # one flat N(0, I) vector per step from the generator (as chain 0 of sample() draws it), split group by
    # group, parameter by parameter
    flat = ChainRandom([seeded(11)], [1], CHAIN_GROUP).normal(torch.empty(1, 8, dtype=torch.float64))[0]
    expected = []
    for w, lr, temperature, lam, xi in ((model.weight, 0.01, 1.0, 2.0, flat[:6].view(2, 3)),
                                        (model.bias, 0.03, 0.5, 0.0, flat[6:])):
        grad = 50 * w.grad + lam * w.detach()
        expected.append(w.detach() - lr * grad + math.sqrt(2 * lr * temperature) * xi)
    opt.step()
    torch.testing.assert_close(model.weight.detach(), expected[0], rtol=0, atol=1e-14)
    torch.testing.assert_close(model.bias.detach(), expected[1], rtol=0, atol=1e-14)


def test_zero_temperature_is_sgd_and_params_without_grad_are_skipped():
    gen = seeded(0)
    a, b = randomised(nn.Linear(3, 1, dtype=torch.float64), gen), nn.Linear(3, 1, dtype=torch.float64)
    frozen = torch.zeros(2, dtype=torch.float64, requires_grad=True)  # never in the loss: grad is None
    b.load_state_dict(a.state_dict())
    ours = SGLD([*a.parameters(), frozen], lr=0.1, num_data=1, temperature=0.0, seed=shifted_seed(0))
    sgd = torch.optim.SGD(b.parameters(), lr=0.1)
    x, y = randn(gen, 5, 3), randn(gen, 5)
    for model, opt in ((a, ours), (b, sgd)):
        for _ in range(3):
            train_step(model, opt, x, y)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-14, atol=1e-14)
    assert frozen.grad is None and not frozen.detach().any()


def test_trajectory_equals_the_functional_sampler():
    # With the same seed, optimizer + sampler draw the same noise and batches as sgworld.sample, so
    # the loop reproduces the functional SGLD chain up to rounding of the gradient.
    problem = blr()
    lr, steps, w0 = 0.02, 200, np.array([0.3, -0.2])
    trace = sample(problem, "sgld", lr=lr, batch_size=B, init=w0, num_draws=steps, seed=shifted_seed(4), progress=False)
    model = linear_model(w0)
    opt = optimizer(SGLD, model, lr, seed=4)
    loader = DataLoader(dataset(), batch_sampler=WithReplacementSampler(N, B, num_batches=steps, seed=shifted_seed(4)))
    path = []
    for xb, yb in loader:
        train_step(model, opt, xb, yb)
        path.append(model.weight.detach().flatten().clone())
    np.testing.assert_allclose(torch.stack(path).numpy(), trace.draws[0], rtol=0, atol=1e-12)


# ----------------------------------------------------------------- (b) exact stationary moments

def moments_with_se(draws):
    """Mean (p) and upper-triangle covariance (p(p+1)/2) of one chain's draws (n, p), each with the
    standard error sd / sqrt(ESS) of its series (ESS by Geyer's initial positive sequence)."""
    iu = np.triu_indices(draws.shape[1])
    centred = draws - draws.mean(0)
    series = np.hstack([draws, centred[:, iu[0]] * centred[:, iu[1]]])
    return series.mean(0), series.std(0, ddof=1) / np.sqrt(ess(series[None]))


def stacked(mean, cov):
    return np.concatenate([mean, cov[np.triu_indices(len(mean))]])


def test_optimizer_loop_matches_exact_stationary_moments():
    """SGLD (with-replacement sampler) and SGWORLD (shuffle=True, drop_last=True) through the torch loop.

    lr = 0.5 / h_max: there the exact discrete-time moments are far from the posterior (power check
    below), so the test discriminates. Each chain starts at the posterior mean and burns in for 45
    relaxation times 1 / (lr h_min). SGLD is recorded every step, SGWORLD at epoch boundaries
    (M = 4 steps), where its exact moments are defined. Standard errors are sd / sqrt(ESS) of each
    series; at these lengths (ESS ~ 2000-4000) the z-scores are close to standard normal, so Z_TOL = 5
    on 10 numbers gives a false-failure rate of about 10 * 5.7e-7 = 6e-6.

    The power checks compare exact numbers in units of the estimated SEs, whose own spread (from the
    ESS estimate) is about 6 % here. The two exact answers are 10.4-12.6 SEs apart at these lengths
    (6 seeds; 7.1-8.8 at half the lengths over 12 seeds: too close to the Z_TOL + 2 required), so a
    false failure of the power check needs an SE overestimated by 40 %, about 7 of its standard
    deviations.
    """
    problem = blr()
    A, g = problem.quadratic_terms()
    h = np.linalg.eigvalsh(A.mean(0))
    lr = 0.5 / h[-1]
    burn = int(45 / (lr * h[0]))
    steps, epochs = 8000, 2000
    posterior = stacked(problem.target().mean, problem.target().cov)
    wr_exact = stepwise_stationary_moments(A, g, lr, 1.0, B, "wr")
    wor_exact = epoch_stationary_moments(A, g, lr, 1.0, B, permutations="enumerate")
    exact_wr, exact_wor = stacked(wr_exact.mean, wr_exact.cov), stacked(wor_exact.mean, wor_exact.cov)

    # SGLD: the loader line is the with-replacement batch sampler.
    model = linear_model(problem.target().mean)
    opt = optimizer(SGLD, model, lr, seed=1)
    order = WithReplacementSampler(N, B, num_batches=burn + steps, seed=shifted_seed(1))
    loader = DataLoader(dataset(), batch_sampler=order)
    wr_draws = np.empty((burn + steps, D))
    for k, (xb, yb) in enumerate(loader):
        train_step(model, opt, xb, yb)
        wr_draws[k] = model.weight.detach().numpy()[0]
    wr, wr_se = moments_with_se(wr_draws[burn:])

    # SGWORLD: the loader line is PyTorch's own reshuffling loader.
    model = linear_model(problem.target().mean)
    opt = optimizer(SGWORLD, model, lr, seed=2)
    loader = DataLoader(dataset(), batch_size=B, shuffle=True, drop_last=True, generator=seeded(2))
    burn_epochs = -(-burn // (N // B))
    wor_draws = np.empty((burn_epochs + epochs, D))
    for e in range(burn_epochs + epochs):
        for xb, yb in loader:
            train_step(model, opt, xb, yb)
        wor_draws[e] = model.weight.detach().numpy()[0]
    wor, wor_se = moments_with_se(wor_draws[burn_epochs:])

    assert_within_se(wr, exact_wr, wr_se, what="SGLD loop vs exact wr moments")
    assert_within_se(wor, exact_wor, wor_se, what="SGWORLD loop vs exact wor epoch moments")
    # Power: both exact answers are many standard errors from the posterior, so a sampler of the
    # posterior (or of ULA's biased state) would fail; and they are more than Z_TOL + 2 standard errors
    # from each other, so a chain with the other loader would fail with probability > 97%.
    assert np.max(np.abs(exact_wr - posterior) / wr_se) > 2 * Z_TOL
    assert np.max(np.abs(exact_wor - posterior) / wor_se) > 2 * Z_TOL
    assert np.max(np.abs(exact_wr - exact_wor) / wr_se) > Z_TOL + 2
    assert np.max(np.abs(exact_wr - exact_wor) / wor_se) > Z_TOL + 2


# --------------------------------------------------------------------------- (c) the batch sampler

def test_sampler_batches_are_distinct_uniform_and_reproducible():
    n, b, steps = 10, 3, 20_000
    sampler = WithReplacementSampler(n, b, num_batches=steps, seed=shifted_seed(7))
    assert len(sampler) == steps and len(WithReplacementSampler(n, b)) == n // b
    batches = np.array(list(sampler))
    assert batches.shape == (steps, b)
    assert np.all(np.sort(batches, 1)[:, 1:] != np.sort(batches, 1)[:, :-1])  # distinct within a batch
    assert batches.min() >= 0 and batches.max() < n
    # Each index is in a batch with probability p = b/n, independently across steps; within a batch the
    # counts are negatively correlated, so Pearson's statistic times (n-1)/(n-b) is chi-square(n-1).
    # Threshold at a false-failure rate of 1e-6.
    counts = np.bincount(batches.ravel(), minlength=n)
    expected = steps * b / n
    stat = ((counts - expected) ** 2 / expected).sum() * (n - 1) / (n - b)
    assert stat < scipy.stats.chi2.isf(1e-6, n - 1), stat
    # Reproducible from the seed, and the same stream as sgworld's own "wr" index stream.
    again = np.array(list(WithReplacementSampler(n, b, num_batches=steps, seed=shifted_seed(7))))
    assert np.array_equal(batches, again)
    direct = IndexStream("wr", n, b, 1, seeded(5))
    via_sampler = WithReplacementSampler(n, b, num_batches=50, generator=seeded(5))
    assert [next(direct)[0].tolist() for _ in range(50)] == list(via_sampler)
    # Successive passes continue the stream instead of repeating it (equal by chance: 120^-3 = 6e-7).
    sampler = WithReplacementSampler(n, b, seed=shifted_seed(7))
    assert list(sampler) != list(sampler)


# ------------------------------------------------------------------------------- (d) bad inputs

@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=0.0), "lr must be a finite number > 0"),
    (dict(lr=-1e-3), "lr must be a finite number > 0"),
    (dict(lr=float("nan")), "lr must be a finite number > 0"),
    (dict(num_data=0), "num_data = 0 is out of range"),
    (dict(num_data=2.5), "num_data must be an integer"),
    (dict(temperature=-1.0), "temperature must be a finite number >= 0"),
    (dict(prior_precision=-0.1), "prior_precision must be a finite number >= 0"),
    (dict(seed=-1), "seed = -1 is out of range"),
    (dict(seed=1, generator=torch.Generator()), "either generator= or seed="),
    (dict(generator=3), "generator must be a torch.Generator"),
])
def test_optimizer_rejects_bad_input(kwargs, match):
    args = dict(lr=1e-3, num_data=10) | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        SGLD(nn.Linear(2, 1).parameters(), **args)


def test_optimizer_rejects_bad_groups_sparse_gradients_and_foreign_state():
    model = nn.Linear(2, 1)
    opt = SGLD([{"params": [model.weight]}], lr=1e-3, num_data=10)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        opt.add_param_group({"params": [model.bias], "lr": -1.0})
    with pytest.raises(ValueError, match="'generator' entry"):
        opt.load_state_dict(torch.optim.SGD(model.parameters(), lr=0.1).state_dict())
    emb = nn.Embedding(4, 2, sparse=True)
    opt = SGLD(emb.parameters(), lr=1e-3, num_data=10)
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()


@pytest.mark.parametrize("args, kwargs, match", [
    ((0, 1), {}, "num_data = 0 is out of range"),
    ((5, 6), {}, "batch_size = 6 is out of range; allowed: 1 <= batch_size <= 5"),
    ((5, 0), {}, "batch_size = 0 is out of range"),
    ((5, 2, 0), {}, "num_batches = 0 is out of range"),
    ((5, 2), dict(seed=1, generator=torch.Generator()), "either generator= or seed="),
])
def test_sampler_rejects_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        WithReplacementSampler(*args, **kwargs)


# ------------------------------------------------------------------------------- (e) resuming

def run_epochs(model, opt, loader, epochs):
    for _ in range(epochs):
        for xb, yb in loader:
            train_step(model, opt, xb, yb)


def roundtrip(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer)  # the default weights_only loader accepts every state


@pytest.mark.parametrize("method", ["sgld", "sgworld"])
def test_state_dict_resumes_bit_for_bit(method):
    def setup(seed):
        model = linear_model([0.3, -0.2])
        cls = SGLD if method == "sgld" else SGWORLD
        opt = optimizer(cls, model, 0.02, seed)
        if method == "sgld":
            order = WithReplacementSampler(N, B, seed=shifted_seed(seed))
            loader = DataLoader(dataset(), batch_sampler=order)
        else:
            order = seeded(seed)
            loader = DataLoader(dataset(), batch_size=B, shuffle=True, drop_last=True, generator=order)
        return model, opt, loader, order

    model, opt, loader, _ = setup(3)
    run_epochs(model, opt, loader, 6)
    straight = model.weight.detach().clone()

    model, opt, loader, order = setup(3)
    run_epochs(model, opt, loader, 3)
    checkpoint = roundtrip({"model": model.state_dict(), "opt": opt.state_dict(),
                            "order": order.state_dict() if method == "sgld" else order.get_state()})
    model, opt, loader, order = setup(99)  # a fresh process would start from other states
    model.load_state_dict(checkpoint["model"])
    opt.load_state_dict(checkpoint["opt"])
    (order.load_state_dict if method == "sgld" else order.set_state)(checkpoint["order"])
    run_epochs(model, opt, loader, 3)
    assert torch.equal(model.weight.detach(), straight)
