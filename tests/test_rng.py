"""Chain-group random streams: a chain's numbers do not depend on how many groups run beside it."""

import numpy as np
import pytest
import torch

from sgworld import BayesianLinearRegression, sample
from sgworld.batching import IndexStream
from sgworld.rng import CHAIN_GROUP, NOISE_STREAM, ChainRandom, group_sizes


def test_group_sizes():
    assert group_sizes(130, 64) == [64, 64, 2]
    assert group_sizes(64, 64) == [64]
    assert group_sizes(5, 64) == [5]


def test_a_group_draws_the_same_alone_or_beside_others():
    like = torch.empty(2 * CHAIN_GROUP, 3, dtype=torch.float64)
    both = ChainRandom.from_seed(7, NOISE_STREAM, 2 * CHAIN_GROUP)
    second = ChainRandom.from_seed(7, NOISE_STREAM, 2 * CHAIN_GROUP, groups=range(1, 2))
    for _ in range(100):  # across several blocks
        a, b = both.normal(like), second.normal(like[CHAIN_GROUP:])
        torch.testing.assert_close(a[CHAIN_GROUP:], b, rtol=0, atol=0)
        u, v = both.uniform(like), second.uniform(like[CHAIN_GROUP:])
        torch.testing.assert_close(u[CHAIN_GROUP:], v, rtol=0, atol=0)


@pytest.mark.parametrize("scheme,n,b,groups", [("wr", 50, 5, 2), ("iid", 50, 5, 2), ("wor", 50, 5, 2),
                                               ("shuffle_once", 50, 5, 2),
                                               # blocks cut shorter beside many groups (Floyd, iid) ...
                                               ("wr", 50, 5, 40), ("iid", 50, 5, 40),
                                               # ... and rejection (b > 16), whose blocks never depend on K
                                               ("wr", 500, 20, 40)])
def test_index_streams_per_group(scheme, n, b, groups):
    k = groups * CHAIN_GROUP
    both = IndexStream(scheme, n, b, k, ChainRandom.from_seed(3, 0, k))
    second = IndexStream(scheme, n, b, CHAIN_GROUP, ChainRandom.from_seed(3, 0, k, groups=range(1, 2)))
    for _ in range(300):
        assert torch.equal(next(both)[CHAIN_GROUP:2 * CHAIN_GROUP], next(second))


@pytest.mark.parametrize("scheme,drop_last", [("wr", True), ("iid", True), ("wor", True), ("wor", False)])
@pytest.mark.parametrize("stop", [10, 11, 23])  # with drop_last=False: before the short batch, after it, mid-epoch
def test_index_stream_state_round_trip_mid_block(scheme, drop_last, stop):
    a = IndexStream(scheme, 53, 5, 70, ChainRandom.from_seed(6, 0, 70), drop_last=drop_last)
    for _ in range(stop):
        next(a)
    b = IndexStream(scheme, 53, 5, 70, ChainRandom.from_seed(6, 0, 70), drop_last=drop_last)
    b.load_state_dict(a.state_dict())
    for _ in range(100):
        assert torch.equal(next(a), next(b))


def test_sample_draws_do_not_depend_on_the_number_of_chains_beside_a_group():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 2))
    problem = BayesianLinearRegression(x, x @ np.array([1.0, -0.5]) + rng.normal(size=40), noise_std=1.0, prior_std=1.0)
    kw = dict(lr=1e-3, batch_size=5, num_draws=20, thin=3, seed=5, progress=False)
    for method in ("sgld", "sgworld"):
        small = sample(problem, method, chains=CHAIN_GROUP, **kw)
        large = sample(problem, method, chains=2 * CHAIN_GROUP + 3, **kw)
        np.testing.assert_array_equal(large.draws[:CHAIN_GROUP], small.draws)


def test_state_round_trip_mid_block():
    like = torch.empty(70, 4)
    a = ChainRandom.from_seed(1, NOISE_STREAM, 70)
    for _ in range(5):
        a.normal(like)
    b = ChainRandom.from_seed(1, NOISE_STREAM, 70)
    b.load_state_dict(a.state_dict())
    for _ in range(200):
        assert torch.equal(a.normal(like), b.normal(like))


def test_state_round_trips_through_a_checkpoint_file_with_both_dtypes(tmp_path):
    """float64 normals (numpy SFC64 per group) and float32 normals (torch) interleaved; the state saved with
    ``torch.save`` and read back with ``weights_only=True``, as checkpoints are, continues the same numbers."""
    like64, like32 = torch.empty(130, 5, dtype=torch.float64), torch.empty(130, 5)
    a = ChainRandom.from_seed(8, NOISE_STREAM, 130)
    for _ in range(7):
        a.normal(like64), a.normal(like32), a.uniform(like64)
    torch.save(a.state_dict(), tmp_path / "state.pt")
    b = ChainRandom.from_seed(8, NOISE_STREAM, 130)
    b.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    for _ in range(300):  # across block boundaries of every kind
        assert torch.equal(a.normal(like64), b.normal(like64))
        assert torch.equal(a.normal(like32), b.normal(like32))
        assert torch.equal(a.uniform(like64), b.uniform(like64))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_normals_have_standard_normal_moments(dtype):
    """2^20 draws: mean, variance, fourth moment and the two tails beyond 3 SD against N(0, 1), each within
    5 standard errors (false-failure rate 5.7e-7 per number)."""
    x = ChainRandom.from_seed(11, NOISE_STREAM, 256).normal_steps(torch.empty(256, 64, dtype=dtype), 64)
    x = x.double().reshape(-1)
    n = x.numel()
    tail = 2 * 0.0013498980316301
    for value, exact, var in [(x.mean(), 0.0, 1.0), ((x * x).mean(), 1.0, 2.0), ((x ** 4).mean(), 3.0, 96.0),
                              ((x > 3).double().mean(), tail / 2, tail / 2 * (1 - tail / 2)),
                              ((x < -3).double().mean(), tail / 2, tail / 2 * (1 - tail / 2))]:
        assert abs(float(value) - exact) < 5 * (var / n) ** 0.5


def test_bad_requests():
    rng = ChainRandom.from_seed(0, NOISE_STREAM, 10)
    with pytest.raises(ValueError, match="for 3 chains; these streams serve 10"):
        rng.normal(torch.empty(3, 2))
    with pytest.raises(ValueError, match="not within the 1 chain groups"):
        ChainRandom.from_seed(0, NOISE_STREAM, 10, groups=range(1, 2))


@pytest.mark.parametrize("dtype, dim", [(torch.float64, 3), (torch.float32, 3), (torch.float64, 2000)])
def test_steps_at_once_are_the_steps_one_by_one(dtype, dim):
    """``normal_steps`` and ``IndexStream.take`` (the compiled blocks' draws) give the numbers that as many
    single calls give, across block boundaries and with more than one chain group; also where one step
    fills a block (dim 2000) and float64 draws the whole request at once."""
    like = torch.empty(70, dim, dtype=dtype)
    one, many = (ChainRandom.from_seed(2, NOISE_STREAM, 70) for _ in range(2))
    for steps in (5, 16, 16, 40, 1, 16):
        block = many.normal_steps(like, steps)
        assert block.shape == (steps, 70, dim)
        assert torch.equal(block, torch.stack([one.normal(like) for _ in range(steps)]))
    for scheme in ("iid", "wr", "wor"):
        a, b = (IndexStream(scheme, 50, 7, 70, ChainRandom.from_seed(4, 0, 70)) for _ in range(2))
        for steps in (16, 5, 16):
            assert torch.equal(a.take(steps), torch.stack([next(b) for _ in range(steps)]))
