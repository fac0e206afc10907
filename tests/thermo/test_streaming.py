"""Streaming entropy production and fluctuation theorems (sgworld.thermo.streaming).

Two kinds of checks.

* Equality with the in-memory functions on the same path (``chain_mean``, ``window_sums``,
  ``integral_fluctuation_theorem``, ``detailed_fluctuation_theorem``), whatever the chunking:
  one chunk, single steps, chunks that end inside windows, random partitions (hypothesis). The
  streaming sums differ from the in-memory ones only in the order of floating-point additions,
  so the tolerance is 1e-12 relative.
* Statistics on one long stationary linear-Gaussian chain (``x_{n+1} = F x_n + xi``, a small
  rotation in F and anisotropic noise, so it is out of equilibrium), fed in chunks, with batch
  means / block-bootstrap standard errors (blocks of 10^4 steps, 100x the windows and
  >1000x the correlation time): the EP rate against its exact value, both FTs with the exact
  per-step entropy production. Each check uses |z| < Z_TOL = 5 (normal tail 5.7e-7; with 200
  blocks behind each standard error the t-tail is about 1.5e-6); 6 checks: false-failure rate
  below 1e-5.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgworld.theory.stationary import inverse_diffusion, solve_lyapunov, stationary_state
from sgworld.thermo.fluctuation import detailed_fluctuation_theorem, integral_fluctuation_theorem
from sgworld.thermo.streaming import EntropyProductionStream, simulate_linear_gaussian_chunks
from sgworld.thermo.trajectory import (
    chain_mean,
    entropy_production_steps,
    exact_linear_gaussian_entropy_production,
    window_sums,
)

from conftest import assert_within_se, shifted_seed

R, THETA = 0.5, 0.05
F = R * np.array([[np.cos(THETA), -np.sin(THETA)], [np.sin(THETA), np.cos(THETA)]])
NOISE = np.diag([1.0, 0.1])
# The recursion as a linear-drift stationary state (K = I - F, lr = 1, D = N/2): with the exact
# discrete covariance, the midpoint sigma_n has mean exactly STATE.ep_rate.
STATE = stationary_state(np.eye(2) - F, NOISE / 2, 1.0, np.zeros(2), symmetric=False, discrete=True)

CHAINS, STEPS = 4, 4001          # 4000 per-step values per chain
WINDOWS = (7, 50)
MAX_ABS = {7: 0.8, 50: 2.0}
N_BOOT = 200


def exact_rate(F, noise_cov):
    """Mean per step of the exact s_n: (1/2) tr(G (F C - C F^T)) with G its bilinear form."""
    K, D = np.eye(F.shape[0]) - F, 0.5 * noise_cov
    C = solve_lyapunov(K, D, 1.0, symmetric=False, discrete=True)
    Dinv = inverse_diffusion(D)
    G = np.linalg.inv(C) - K.T @ Dinv + 0.5 * K.T @ Dinv @ K
    return 0.5 * np.trace(G @ (F @ C - C @ F.T))


@pytest.fixture(scope="module")
def path():
    chunks = simulate_linear_gaussian_chunks(F, NOISE, STEPS, chains=CHAINS, seed=shifted_seed(5))
    return np.concatenate(list(chunks), axis=1)


@pytest.fixture(scope="module")
def reference(path):
    sigma = entropy_production_steps(path, STATE)
    out = {"rate": chain_mean(sigma)}
    for k in WINDOWS:
        x = window_sums(sigma, k)
        out[k] = (integral_fluctuation_theorem(x, n_boot=N_BOOT, seed=shifted_seed(k)),
                  detailed_fluctuation_theorem(x, bins=6, max_abs=MAX_ABS[k], min_count=5, n_boot=N_BOOT,
                                               seed=shifted_seed(k)),
                  detailed_fluctuation_theorem(x, bins=6, min_count=5, n_boot=N_BOOT, seed=shifted_seed(k)))
    return out


def stream_in_chunks(path, sizes, **kwargs):
    stream = EntropyProductionStream.from_state(STATE, WINDOWS, bins=6, **kwargs)
    start = 0
    for size in sizes:
        if start >= path.shape[1]:
            break
        stream.update(path[:, start:start + size])
        start += size
    if start < path.shape[1]:
        stream.update(path[:, start:])
    return stream


def assert_close(a, b, what):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=what)


def assert_same_as_in_memory(stream, reference):
    rate = stream.rate()
    assert_close(rate.value, reference["rate"].value, "rate")
    assert_close(rate.stderr, reference["rate"].stderr, "rate stderr")
    for k in WINDOWS:
        ift, dft_fixed, dft_default = reference[k]
        got = stream.integral_ft(k, n_boot=N_BOOT, seed=shifted_seed(k))
        for field in ("mean_exp", "mean_exp_ci", "mean_exp_stderr", "ratio", "ratio_ci", "ratio_stderr",
                      "mean_delta_s"):
            assert_close(getattr(got, field), getattr(ift, field), f"IFT k={k} {field}")
        assert (got.n_windows, got.n_units, got.resample) == (ift.n_windows, ift.n_units, ift.resample)
        got = stream.detailed_ft(k, min_count=5, n_boot=N_BOOT, seed=shifted_seed(k))
        expected = dft_fixed if k == 7 else dft_default
        for field in ("slope", "slope_ci", "slope_stderr", "edges", "centers", "log_ratio", "log_ratio_stderr"):
            assert_close(getattr(got, field), getattr(expected, field), f"DFT k={k} {field}")
        np.testing.assert_array_equal(got.counts, expected.counts)
        np.testing.assert_array_equal(got.used, expected.used)
        assert (got.n_windows, got.n_units) == (expected.n_windows, expected.n_units)


@pytest.mark.parametrize("sizes", [[STEPS], [1] * STEPS, [13] * 400, [50] * 100, [499, 1, 2000], [2, 3999]],
                         ids=["one-chunk", "single-steps", "13", "window-aligned", "uneven", "tiny-first"])
def test_stream_equals_in_memory(path, reference, sizes):
    # max_abs given for k = 7; for k = 50 the range comes from the calibration windows, all of them
    # here (calibration_windows > windows), i.e. the in-memory default rule on the same windows.
    stream = stream_in_chunks(path, sizes, max_abs={7: MAX_ABS[7]}, calibration_windows=10**6, block_steps=500)
    assert stream.steps == STEPS - 1
    assert_same_as_in_memory(stream, reference)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 700), min_size=1, max_size=40))
def test_stream_equals_in_memory_for_any_chunking(path, reference, sizes):
    stream = stream_in_chunks(path, sizes, max_abs={7: MAX_ABS[7]}, calibration_windows=10**6)
    assert_same_as_in_memory(stream, reference)


def test_blocks_of_one_window_are_the_window_bootstrap(path):
    # One chain, a block per window: the block bootstrap is the in-memory window bootstrap.
    one = path[:1]
    stream = stream_in_chunks(one, [333] * 12, block_steps=50)
    expected = integral_fluctuation_theorem(window_sums(entropy_production_steps(one, STATE), 50), n_boot=N_BOOT,
                                            seed=shifted_seed(3), resample="windows")
    got = stream.integral_ft(50, n_boot=N_BOOT, seed=shifted_seed(3), resample="blocks")
    for field in ("mean_exp", "mean_exp_ci", "mean_exp_stderr", "ratio", "ratio_ci", "mean_delta_s"):
        assert_close(getattr(got, field), getattr(expected, field), field)
    assert got.n_units == expected.n_units == (STEPS - 1) // 50


def test_rate_batch_means(path):
    stream = stream_in_chunks(path, [777] * 5, block_steps=500)
    sigma = entropy_production_steps(path, STATE)
    means = sigma[:, :4000].reshape(CHAINS, 8, 500).mean(axis=(0, 2))
    rate = stream.rate(resample="blocks")
    assert_close(rate.value, sigma.mean(), "value")
    assert_close(rate.stderr, means.std(ddof=1) / np.sqrt(8), "batch-means stderr")


def test_simulation_is_independent_of_chunking():
    whole = np.concatenate(list(simulate_linear_gaussian_chunks(F, NOISE, 500, chains=3, seed=shifted_seed(1))), axis=1)
    assert whole.shape == (3, 500, 2)
    for chunk_steps in (1, 7, 499):
        chunks = list(simulate_linear_gaussian_chunks(F, NOISE, 500, chains=3, chunk_steps=chunk_steps,
                                                      seed=shifted_seed(1)))
        assert all(c.shape[1] == chunk_steps for c in chunks[:-1])
        np.testing.assert_allclose(np.concatenate(chunks, axis=1), whole, rtol=0, atol=1e-13)


def test_simulation_is_the_stationary_recursion():
    # Lag-0 and lag-1 covariances against C and F C, over 400 independent chains (8 checks at
    # 5.7e-7 each).
    chunks = simulate_linear_gaussian_chunks(F, NOISE, 500, chains=400, chunk_steps=128, seed=shifted_seed(2),
                                             mean=[1.0, -2.0])
    x = np.concatenate(list(chunks), axis=1) - [1.0, -2.0]
    C = solve_lyapunov(np.eye(2) - F, NOISE / 2, 1.0, symmetric=False, discrete=True)
    lag0 = np.einsum("cni,cnj->cij", x, x) / x.shape[1]
    lag1 = np.einsum("cni,cnj->cij", x[:, 1:], x[:, :-1]) / (x.shape[1] - 1)
    for est, exact, what in ((lag0, C, "lag-0"), (lag1, F @ C, "lag-1")):
        assert_within_se(est.mean(0), exact, est.std(0, ddof=1) / np.sqrt(x.shape[0]), what=what)


@pytest.fixture(scope="module")
def long_chain():
    """One chain of 2 * 10^6 steps, streamed in chunks of 2^17: midpoint sigma and exact s_n."""
    kwargs = dict(block_steps=10_000)
    midpoint = EntropyProductionStream.from_state(STATE, **kwargs)
    exact = EntropyProductionStream(lambda w: exact_linear_gaussian_entropy_production(F, NOISE, w), (30, 99),
                                    **kwargs)
    for chunk in simulate_linear_gaussian_chunks(F, NOISE, 2 * 10**6, chunk_steps=1 << 17, seed=shifted_seed(11)):
        midpoint.update(chunk)
        exact.update(chunk)
    return midpoint, exact


def test_rate_matches_exact_linear_gaussian_value(long_chain):
    midpoint, exact = long_chain
    for stream, value in ((midpoint, STATE.ep_rate), (exact, exact_rate(F, NOISE))):
        rate = stream.rate(resample="blocks")
        assert rate.stderr < 0.02 * value  # resolved to 2%: the check has power
        assert_within_se(rate.value, value, rate.stderr, what="EP rate")


@pytest.mark.parametrize("k", [30, 99])  # <Delta s> = 0.30 and 1.00
def test_fluctuation_theorems_hold_on_a_long_chain(long_chain, k):
    _, exact = long_chain
    ift = exact.integral_ft(k, n_boot=400, seed=shifted_seed(1), resample="blocks")
    assert ift.n_units == 200 and ift.mean_exp_stderr < 0.03  # 0.006 (k = 30), 0.019 (k = 99)
    assert_within_se(ift.mean_exp, 1.0, ift.mean_exp_stderr, what=f"IFT k={k}")
    dft = exact.detailed_ft(k, n_boot=400, seed=shifted_seed(1), resample="blocks")
    assert dft.slope_stderr < 0.05
    assert_within_se(dft.slope, 1.0, dft.slope_stderr, what=f"DFT slope k={k}")


def test_bad_input_is_named(path):
    stream = EntropyProductionStream.from_state(STATE, (7,))
    with pytest.raises(ValueError, match="no steps yet"):
        stream.rate()
    stream.update(path[:1, :100])
    with pytest.raises(ValueError, match="chunk has shape"):
        stream.update(path[:2, 100:200])
    with pytest.raises(ValueError, match="resample='blocks'"):
        stream.integral_ft(7)
    with pytest.raises(ValueError, match="not accumulated"):
        stream.integral_ft(8, resample="blocks")
    with pytest.raises(ValueError, match="unknown resample"):
        stream.rate(resample="windows")
    with pytest.raises(ValueError, match="max_abs names window"):
        EntropyProductionStream.from_state(STATE, (7,), max_abs={9: 1.0})
    with pytest.raises(ValueError, match="callable"):
        EntropyProductionStream(STATE)
    # A window length whose Delta s is almost never negative: the DFT says so, the IFT still works.
    drift = EntropyProductionStream(lambda w: np.ones((w.shape[0], w.shape[1] - 1)), (5,), calibration_windows=10)
    drift.update(path[:2])
    with pytest.raises(ValueError, match="too few to set the histogram range"):
        drift.detailed_ft(5)
    assert drift.integral_ft(5, n_boot=0).mean_exp == pytest.approx(np.exp(-5.0))
