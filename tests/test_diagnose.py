"""The equilibrium diagnostic (sgworld.diagnose): exact entropy production of a linear-Gaussian map,
the estimator against known values, and the Bayesian linear regression of the posterior study, where
the exact discrete-time theory gives the value for every sampler.

Statistical checks use intervals at level ``LEVEL = 1 - 5.7e-7`` (the two-sided tail of ``Z_TOL`` = 5,
with the t quantile of the chain groups' degrees of freedom): each compared number has a false-failure
rate of at most 5.7e-7, and a null test that checks two numbers (entropy production and circulation)
at most 1.1e-6. The entropy production's interval is conservative where the true value is 0.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import Z_TOL, assert_within_se, shifted_seed

from sgworld import BayesianLinearRegression, Trace, sample
from sgworld.cli import main
from sgworld.diagnose import EQUILIBRIUM, NONEQUILIBRIUM, diagnose, map_entropy_production
from sgworld.experiments.posterior import Config, make_data
from sgworld.theory.exact import stepwise_stationary_moments
from sgworld.theory.stationary import solve_lyapunov
from sgworld.thermo.trajectory import exact_linear_gaussian_entropy_production

LEVEL = 1 - 5.7e-7  # the two-sided tail of Z_TOL = 5


def _ar1(F, N, chains, steps, rng):
    """Stationary paths of x' = F x + eta, eta ~ N(0, N), started from the exact stationary law."""
    p = F.shape[0]
    Sigma = solve_lyapunov(np.eye(p) - F, N / 2, 1.0, symmetric=False, discrete=True)
    x = np.empty((chains, steps, p))
    x[:, 0] = rng.normal(size=(chains, p)) @ np.linalg.cholesky(Sigma).T
    noise = rng.normal(size=(chains, steps, p)) @ np.linalg.cholesky(N).T
    for t in range(1, steps):
        x[:, t] = x[:, t - 1] @ F.T + noise[:, t]
    return x, Sigma


F3 = np.array([[0.8, 0.1, 0.0], [-0.1, 0.7, 0.05], [0.0, 0.0, 0.5]])
N3 = np.array([[1.0, 0.2, 0.0], [0.2, 0.5, 0.0], [0.0, 0.0, 2.0]])


def test_map_entropy_production_is_the_mean_path_log_ratio():
    """The closed form equals the mean of the exact per-step log ratio of forward to backward path
    probabilities, is invariant under a change of coordinates, and is zero iff F Sigma is symmetric."""
    rng = np.random.default_rng(shifted_seed(1))
    x, Sigma = _ar1(F3, N3, 64, 1500, rng)
    value = map_entropy_production(F3, Sigma)
    s = exact_linear_gaussian_entropy_production(F3, N3, x).mean(axis=1)  # per chain
    assert_within_se(s.mean(), value, s.std(ddof=1) / np.sqrt(len(s)), what="mean log path ratio")
    assert value > 30 * s.std(ddof=1) / np.sqrt(len(s))  # power: far from 0 on this scale
    T = np.array([[2.0, 0.3, -1.0], [0.0, 0.5, 0.2], [0.4, 0.0, 1.5]])  # y = T x
    assert map_entropy_production(T @ F3 @ np.linalg.inv(T), T @ Sigma @ T.T) == pytest.approx(value, rel=1e-9)
    Fs = np.diag([0.9, 0.6, -0.3])  # symmetric map, isotropic noise: reversible
    assert map_entropy_production(Fs, np.diag(1 / (1 - np.diag(Fs) ** 2))) == pytest.approx(0.0, abs=1e-14)


def test_diagnose_recovers_the_entropy_production_of_a_known_map():
    rng = np.random.default_rng(shifted_seed(2))
    x, Sigma = _ar1(F3, N3, 64, 1000, rng)
    result = diagnose(x, level=LEVEL)
    exact = map_entropy_production(F3, Sigma)
    ep = result.entropy_production
    assert ep.low <= exact <= ep.high, f"exact {exact} outside {ep}"
    assert exact > 2 * Z_TOL * ep.stderr  # power: the exact value is far from 0
    assert ep.verdict == NONEQUILIBRIUM and result.circulation.verdict == NONEQUILIBRIUM
    assert result.top == 3 and result.explained == pytest.approx(1.0)


def test_diagnose_reads_zero_for_a_reversible_map():
    rng = np.random.default_rng(shifted_seed(3))
    Fs = np.diag([0.9, 0.7, 0.5])
    x, _ = _ar1(Fs, np.eye(3) - Fs @ Fs, 64, 1000, rng)
    result = diagnose(x, level=LEVEL)
    assert result.entropy_production.verdict == EQUILIBRIUM, result
    assert result.circulation.verdict == EQUILIBRIUM, result
    assert result.equilibrium


# ------------------------------------------------------------- the posterior study's regression

LR = 1e-3  # lr * h_max = 1.01: the largest lr at which SGLD's entropy production is large enough to test quickly
CHAINS, DRAWS, BURN_IN = 1024, 600, 200  # burn-in: 110 relaxation times 1/(lr h_min) at LR


@pytest.fixture(scope="module")
def blr():
    config = Config()
    X, y = make_data(config)
    problem = BayesianLinearRegression(torch.tensor(X), torch.tensor(y), noise_std=config.noise_std,
                                       prior_std=config.prior_std)
    target = problem.target()
    init = np.random.default_rng(shifted_seed(4)).multivariate_normal(target.mean, target.cov, size=CHAINS)
    return problem, config, init


def _theory(problem, config, method: str, lr: float, thin: int) -> float:
    """Entropy production per draw of the draw-to-draw map: exact stationary covariance and mean map
    ``(I - lr H)^thin`` of the step-wise schemes (sgworld.theory.exact)."""
    A, g = problem.quadratic_terms()
    temperature = 0.0 if method == "sgd" else 1.0
    moments = stepwise_stationary_moments(A, g, lr, temperature, config.batch_size,
                                          scheme="full" if method == "ula" else "wr")
    F = np.linalg.matrix_power(np.eye(problem.dim) - lr * A.mean(0), thin)
    return map_entropy_production(F, moments.cov)


@pytest.mark.parametrize("method", ["sgld", "sgd"])
def test_blr_out_of_equilibrium_matches_theory(blr, method):
    problem, config, init = blr
    trace = sample(problem, method, lr=LR, temperature=0.0 if method == "sgd" else 1.0,
                   batch_size=config.batch_size, chains=CHAINS, num_draws=DRAWS, burn_in=BURN_IN,
                   init=init, seed=shifted_seed(5))
    result = trace.diagnose(level=LEVEL)
    exact = _theory(problem, config, method, LR, 1)
    ep = result.entropy_production
    assert ep.low <= exact <= ep.high, f"{method}: theory {exact:.4g} outside {ep}"
    assert exact > (Z_TOL + 2) * ep.stderr, f"{method}: no power, theory {exact:.3g} vs stderr {ep.stderr:.3g}"
    assert ep.verdict == NONEQUILIBRIUM
    assert result.meta["sampler"] == method


@pytest.mark.parametrize("method, lr, thin, chains, draws", [
    ("mala", LR, 1, CHAINS, DRAWS),
    ("ula", LR, 1, CHAINS, DRAWS),
    # SGWORLD at small lr, one draw per epoch (M = 20 steps): lr * M * h_max = 2, epoch map radius 0.31
    ("sgworld", 1e-4, 20, 256, 150),
])
def test_blr_equilibrium_samplers_read_zero(blr, method, lr, thin, chains, draws):
    """MALA and ULA are exactly reversible (theory 0); SGWORLD's exact value at lr = 1e-4 is 2e-6 per
    epoch, far below the standard error. SGLD and SGD at the same LR, chains and draws read many
    standard errors above 0 (test above), which is the power of this check."""
    problem, config, init = blr
    trace = sample(problem, method, lr=lr, batch_size=config.batch_size, chains=chains, num_draws=draws,
                   burn_in=BURN_IN, thin=thin, init=init[:chains], seed=shifted_seed(6))
    result = diagnose(trace, level=LEVEL)
    assert result.entropy_production.verdict == EQUILIBRIUM, result
    assert result.circulation.verdict == EQUILIBRIUM, result
    if method == "ula":
        assert _theory(problem, config, "ula", LR, 1) == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------------- records, CLI, bad input


def _small_trace(tmp_path, chains=8, draws=50):
    rng = np.random.default_rng(shifted_seed(7))
    x, _ = _ar1(F3, N3, chains, draws, rng)
    path = Trace(x, np.arange(1, draws + 1), {"sampler": "test", "lr": 0.1}).save(tmp_path / "t.npz")
    return x, path


def test_record_table_and_json(tmp_path):
    x, _ = _small_trace(tmp_path)
    result = diagnose(Trace(x, np.arange(1, x.shape[1] + 1), {"sampler": "test"}), top=2)
    data = json.loads(json.dumps(result.to_json()))
    assert data["top"] == 2 and len(data["ess"]) == 2 and data["entropy_production"]["verdict"] in (
        EQUILIBRIUM, NONEQUILIBRIUM)
    assert data["sampler"] == {"sampler": "test"}
    text = str(result)
    assert "entropy production" in text and "circulation A_12" in text and "R-hat" in text


def test_cli_diagnose(tmp_path, capsys):
    _, path = _small_trace(tmp_path)
    assert main(["diagnose", str(path), "--json", "--top", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["top"] == 2
    assert main(["diagnose", str(path)]) == 0
    assert "entropy production" in capsys.readouterr().out


@pytest.mark.parametrize("options, message", [
    (["--top", "0"], "top = 0 is out of range"),
    (["--lag", "10"], "at least 8 draws per chain at lag 10"),
    (["--level", "1.5"], "level = 1.5 is out of range"),
])
def test_cli_diagnose_bad_input(tmp_path, capsys, options, message):
    _, path = _small_trace(tmp_path)
    assert main(["diagnose", str(path), *options]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_cli_diagnose_missing_or_corrupt_trace(tmp_path, capsys):
    assert main(["diagnose", str(tmp_path / "missing.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"not a trace")
    assert main(["diagnose", str(tmp_path / "bad.npz")]) == 2
    err = capsys.readouterr().err
    assert "not a readable sgworld trace" in err and err.count("\n") == 1, err


def test_principal_subspace_by_subspace_iteration_matches_dense(monkeypatch):
    """Above the dense limit the top components come from subspace iteration over the draws."""
    import sgworld.diagnose as module

    rng = np.random.default_rng(shifted_seed(8))
    scales = np.concatenate([[5.0, 4.0, 3.0, 2.5], np.full(36, 1.0)])
    x = rng.normal(size=(6, 200, 40)) * scales @ np.linalg.qr(rng.normal(size=(40, 40)))[0]
    dense = module.principal_subspace(x, 4)
    monkeypatch.setattr(module, "_DENSE_P", 10)
    iterated = module.principal_subspace(x, 4)
    assert np.allclose(iterated[1], dense[1], rtol=1e-8)
    assert np.allclose(np.abs(iterated[2].T @ dense[2]), np.eye(4), atol=1e-6)  # same directions


def test_lag_and_notes():
    """lag L analyses every L-th draw; a weak map and unmixed chains are flagged."""
    rng = np.random.default_rng(shifted_seed(9))
    x, _ = _ar1(F3, N3, 8, 400, rng)
    assert diagnose(x, lag=4).map_radius == pytest.approx(diagnose(x[:, ::4]).map_radius)
    independent = diagnose(rng.normal(size=(8, 100, 2)))
    assert any("weak" in note for note in independent.notes)
    shifted = x + 3.0 * np.arange(8)[:, None, None]  # chains around different means
    assert any("R-hat" in note for note in diagnose(shifted).notes)


def test_bad_inputs():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="at least 4 independent chains"):
        diagnose(rng.normal(size=(3, 100, 2)))
    with pytest.raises(ValueError, match="at least 8 draws per chain"):
        diagnose(rng.normal(size=(8, 5, 2)))
    with pytest.raises(ValueError, match="shape \\(chains, draws, p\\)"):
        diagnose(rng.normal(size=(8, 5)))
    x = rng.normal(size=(8, 50, 2))
    x[1, 3, 0] = np.nan
    with pytest.raises(ValueError, match="1 non-finite value"):
        diagnose(x)
    with pytest.raises(ValueError, match="every parameter is constant"):
        diagnose(np.ones((8, 50, 2)))
    with pytest.raises(ValueError, match="groups = 2 is out of range"):
        diagnose(rng.normal(size=(8, 50, 2)), groups=2)
