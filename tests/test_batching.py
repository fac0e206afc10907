import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sgworld.batching import SCHEMES, IndexStream, distinct_indices, noise_factor

from conftest import assert_within_se, shifted_seed


def stream(scheme, n, b, k, seed=0, **kw):
    return IndexStream(scheme, n, b, k, torch.Generator().manual_seed(shifted_seed(seed)), **kw)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), data=st.data(), k=st.integers(1, 5))
def test_wor_visits_every_index_once_per_epoch(n, data, k):
    b = data.draw(st.integers(1, n))
    s = stream("wor", n, b, k, seed=data.draw(st.integers(0, 10**6)))
    m = n // b
    for _ in range(3):
        epoch = torch.cat([next(s) for _ in range(m)], dim=1)  # (k, m*b)
        assert epoch.shape == (k, m * b)
        for row in epoch:
            assert len(set(row.tolist())) == m * b  # no index twice within an epoch
            assert all(0 <= i < n for i in row.tolist())


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 30), data=st.data())
def test_wor_keep_last_covers_all_indices(n, data):
    b = data.draw(st.integers(1, n))
    s = stream("wor", n, b, 2, drop_last=False)
    epoch = [next(s) for _ in range(s.steps_per_epoch)]
    assert s.steps_per_epoch == math.ceil(n / b)
    allidx = torch.cat(epoch, dim=1)
    for row in allidx:
        assert sorted(row.tolist()) == list(range(n))


def test_wor_draws_a_new_permutation_each_epoch():
    n, b = 12, 3
    s = stream("wor", n, b, 4)
    epochs = [torch.cat([next(s) for _ in range(4)], dim=1) for _ in range(6)]
    # Two equal permutations of 12 items have probability 1/12! ~ 2e-9 per pair.
    for i in range(6):
        for j in range(i):
            assert not torch.equal(epochs[i], epochs[j])
    # the chains' streams differ too
    assert not torch.equal(epochs[0][0], epochs[0][1])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), data=st.data(), k=st.integers(1, 4))
def test_wr_batches_hold_distinct_indices(n, data, k):
    b = data.draw(st.integers(1, n))
    s = stream("wr", n, b, k, seed=data.draw(st.integers(0, 10**6)))
    for _ in range(5):
        idx = next(s)
        assert idx.shape == (k, b)
        for row in idx.tolist():
            assert len(set(row)) == b and all(0 <= i < n for i in row)


def test_wr_subsets_are_uniform():
    # Floyd's algorithm: each of the C(6,3) = 20 subsets has probability 1/20. Chi-square on 200k draws
    # with 19 dof; threshold 70 has false-failure rate ~1e-7.
    rows = 200_000
    idx = distinct_indices(rows, 6, 3, torch.Generator().manual_seed(shifted_seed(1)))
    keys = (torch.zeros(rows, 6, dtype=torch.long).scatter_(1, idx, 1) * (2 ** torch.arange(6))).sum(1)
    counts = torch.bincount(keys, minlength=64)
    counts = counts[counts > 0].double()
    assert counts.numel() == 20
    chi2 = ((counts - rows / 20) ** 2 / (rows / 20)).sum().item()
    assert chi2 < 70, chi2


def test_wr_steps_are_independent():
    # Inclusion indicators of index 0 at consecutive steps: correlation must be 0.
    n, b, k, steps = 20, 5, 200, 400
    s = stream("wr", n, b, k, seed=3)
    inc = torch.stack([(next(s) == 0).any(1).double() for _ in range(steps)])  # (steps, k)
    p = b / n
    x = (inc[:-1] - p) * (inc[1:] - p)
    # products of indicators at consecutive steps are 1-dependent; SE from the spread across chains
    per_chain = x.mean(0).numpy()
    assert_within_se(per_chain.mean(), 0.0, per_chain.std(ddof=1) / np.sqrt(k), what="lag-1 covariance")
    # and the marginal inclusion probability is b/n (false-failure 5.7e-7 per check)
    per_chain = inc.mean(0).numpy()
    assert_within_se(per_chain.mean(), p, per_chain.std(ddof=1) / np.sqrt(k), what="inclusion probability")


@pytest.mark.parametrize("scheme", ["wr", "iid"])
def test_batch_mean_covariance_matches_noise_factor(scheme):
    # Batch means of a fixed population z_i (2-D): Cov = f * S with f = (N-b)/(b(N-1)) or 1/b.
    # Three covariance entries compared at z = 5: false-failure rate < 2e-6.
    rng = np.random.default_rng(shifted_seed(0))
    n, b, k, steps = 30, 6, 500, 200
    z = torch.tensor(rng.normal(size=(n, 2)) @ np.array([[1.0, 0.5], [0.0, 2.0]]))
    S = np.cov(z.numpy(), rowvar=False, bias=True)
    s = stream(scheme, n, b, k, seed=7)
    means = torch.stack([z[next(s)].mean(1) for _ in range(steps)]).numpy()  # (steps, k, 2)
    d = means - z.numpy().mean(0)  # exact population mean: E[z_B] = zbar
    prods = d[..., :, None] * d[..., None, :]  # independent over steps and chains
    flat = prods.reshape(-1, 4)[:, [0, 1, 3]]
    est = flat.mean(0)
    se = flat.std(0, ddof=1) / np.sqrt(flat.shape[0])
    exact = noise_factor(scheme, n, b) * S.reshape(-1)[[0, 1, 3]]
    assert_within_se(est, exact, se, what=f"{scheme} batch-mean covariance")


def test_noise_factor_values():
    assert noise_factor("wr", 100, 10) == pytest.approx(90 / (10 * 99))
    assert noise_factor("iid", 100, 10) == pytest.approx(0.1)
    assert noise_factor("wr", 100, 100) == 0.0


def test_sequential_and_shuffle_once_repeat_each_epoch():
    s = stream("sequential", 7, 2, 3)
    first = [next(s) for _ in range(3)]
    assert torch.equal(first[0], torch.tensor([[0, 1]] * 3))
    assert torch.equal(next(s), first[0])  # the remainder (index 6) is dropped
    s = stream("shuffle_once", 8, 2, 3)
    e1 = torch.cat([next(s) for _ in range(4)], 1)
    e2 = torch.cat([next(s) for _ in range(4)], 1)
    assert torch.equal(e1, e2)
    assert all(sorted(r) == list(range(8)) for r in e1.tolist())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_same_seed_same_stream(scheme):
    a = [next(stream(scheme, 50, 5, 4, seed=11)) for _ in range(1)]
    b = [next(stream(scheme, 50, 5, 4, seed=11)) for _ in range(1)]
    assert torch.equal(a[0], b[0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(scheme="nope", n=10, batch_size=2, chains=1), "unknown scheme 'nope'"),
    (dict(scheme="wr", n=10, batch_size=11, chains=1), "batch_size = 11 is out of range; allowed: 1 <= batch_size <= 10"),
    (dict(scheme="wr", n=10, batch_size=0, chains=1), "batch_size = 0 is out of range"),
    (dict(scheme="wor", n=10, batch_size=2, chains=0), "chains = 0 is out of range"),
])
def test_bad_stream_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        IndexStream(rng=torch.Generator(), **kwargs)


@pytest.mark.parametrize("scheme", ["wor", "shuffle_once", "sequential"])
def test_epoch_schemes_have_no_per_step_noise_factor(scheme):
    """Their batches are dependent within an epoch (wor's errors sum to zero over it), so wr's per-step
    factor would be a wrong answer for them: the question is refused with the way to the right one."""
    with pytest.raises(ValueError, match=rf"scheme '{scheme}' has no per-step noise factor"):
        noise_factor(scheme, 100, 10)
