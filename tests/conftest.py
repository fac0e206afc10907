"""Shared test helpers: statistical tolerances and small scenario builders.

Statistical checks compare an estimate with its exact value in units of its Monte Carlo standard
error. ``Z_TOL = 5`` gives a two-sided false-failure rate of 5.7e-7 per compared number; tests that
compare n numbers state the resulting (Bonferroni) rate n * 5.7e-7 in a comment.

Every integer seed a statistical test uses (``numpy.random.default_rng``, ``torch.Generator``, the
samplers' ``seed=``) goes through :func:`shifted_seed`, which adds ``SGWORLD_TEST_SEED_OFFSET`` (default 0)
from the environment. The stated false-failure rates hold for every offset, so
``SGWORLD_TEST_SEED_OFFSET=3 pytest tests/theory`` is as valid a run as the default one: a test whose
random instance, step size or power margin only suits one seed fails under another.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

Z_TOL = 5.0  # two-sided normal tail 5.7e-7 per compared number

REPO = Path(__file__).resolve().parents[1]
AUTHORS_DATA = REPO.parent / "shared" / "ml-nonequilibrium-data"


def _seed_offset() -> int:
    raw = os.environ.get("SGWORLD_TEST_SEED_OFFSET", "0")
    try:
        offset = int(raw)
    except ValueError:
        raise ValueError(f"SGWORLD_TEST_SEED_OFFSET = {raw!r} is not an integer; set a whole number >= 0") from None
    if offset < 0:
        raise ValueError(f"SGWORLD_TEST_SEED_OFFSET = {offset} is negative; set a whole number >= 0")
    return offset


SEED_OFFSET = _seed_offset()


def shifted_seed(n: int) -> int:
    """The test seed ``n`` shifted by ``SGWORLD_TEST_SEED_OFFSET``: use it for every seed of a
    statistical test, so that the whole suite can be rerun on fresh random instances."""
    return int(n) + SEED_OFFSET


def assert_within_se(estimate, exact, se, z: float = Z_TOL, what: str = "estimate"):
    """|estimate - exact| <= z * se elementwise, with a readable failure message."""
    estimate, exact, se = (np.asarray(a, dtype=float) for a in (estimate, exact, se))
    zscores = np.abs(estimate - exact) / se
    assert np.all(np.isfinite(zscores)), f"{what}: non-finite z-scores {zscores}"
    assert zscores.max() <= z, (
        f"{what}: max |z| = {zscores.max():.2f} > {z}\nestimate={estimate}\nexact={exact}\nse={se}"
    )


def batch_means_of_chain_means(draws: np.ndarray, f=lambda x: x):
    """Mean of f over draws, with the SE from the spread of independent chains' means.

    ``draws`` (chains, draws, p); chains are independent, so the chain means are i.i.d. and their
    standard error is exact up to the (chains - 1) degrees of freedom, whatever the autocorrelation.
    """
    per_chain = f(draws).mean(axis=1)
    return per_chain.mean(0), per_chain.std(0, ddof=1) / np.sqrt(per_chain.shape[0])


def chain_moments(draws: np.ndarray):
    """Pooled mean (p,) and covariance (p, p) of (chains, draws, p), each with its standard error from
    the spread of the independent chains' own averages."""
    mean, mean_se = batch_means_of_chain_means(draws)
    centred = draws - mean
    outer = lambda x: (x[..., :, None] * x[..., None, :])
    cov, cov_se = batch_means_of_chain_means(centred, outer)
    return mean, mean_se, cov, cov_se


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tests' tensors are small: one intra-op thread is faster, and robust on a shared machine."""
    from sgworld.run import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture
def blr_problem():
    """A small Bayesian linear regression with correlated features (N = 40, d = 2)."""
    from sgworld import BayesianLinearRegression

    rng = np.random.default_rng(shifted_seed(12345))
    X = rng.normal(size=(40, 2)) @ np.array([[1.0, 0.4], [0.0, 0.7]])
    y = X @ np.array([0.5, -1.0]) + 0.3 * rng.normal(size=40)
    return BayesianLinearRegression(torch.tensor(X), torch.tensor(y), noise_std=0.3, prior_std=1.0)
