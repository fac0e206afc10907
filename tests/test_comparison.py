"""compare_samplers (sgworld.comparison): exact references against closed forms, the methods against their exact
discrete-time stationary moments, the predictive distances, and what the result records."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sgworld import BayesianLinearRegression, from_module
from sgworld.comparison import (TestSet, _Predictive, checks, compare_samplers, module_predictor,
                                parse_method)
from sgworld.experiments.common import to_jsonable
from sgworld.theory import stepwise_stationary_moments

from conftest import Z_TOL, shifted_seed


@pytest.fixture(scope="module")
def blr():
    """N = 40, d = 2 correlated features, b = 10 (M = 4): a Gaussian posterior in closed form."""
    rng = np.random.default_rng(shifted_seed(2024))
    X = rng.normal(size=(40, 2)) @ np.array([[1.0, 0.4], [0.0, 0.7]])
    y = X @ np.array([0.5, -1.0]) + 0.3 * rng.normal(size=40)
    return BayesianLinearRegression(torch.tensor(X), torch.tensor(y), noise_std=0.3, prior_std=1.0)


def test_reference_and_sgld_reach_their_exact_stationary_moments(blr):
    """MALA started far from the posterior (4 SD off, 5x too narrow) reaches it; SGLD at lr h_max = 1 reaches its
    exact discrete-time stationary law (theory.exact), which differs from the posterior by many standard errors.

    Tolerance Z_TOL = 5 on 8 numbers (2 means and 2 SDs each): false-failure rate 8 x 5.7e-7. Standard errors
    from the ESS: ``sd / sqrt(ESS)`` for a mean, ``sd / sqrt(2 ESS)`` for an SD (Gaussian draws; the squares'
    autocorrelation is below the draws', so the ESS of the mean is the conservative one)."""
    post = blr.target()
    H = blr.hessian().numpy()
    h_max = float(np.linalg.eigvalsh(H)[-1])
    post_sd = np.sqrt(np.diag(post.cov))
    start = post.mean + 4 * post_sd
    lr = 1.0 / h_max
    result = compare_samplers(blr, ("sgld",), lrs=(lr,), reference="mala", batch_size=10, chains=64, burn_in=200,
                              draws=300, thin=1, reference_lr=0.5 / h_max, reference_burn_in=300,
                              reference_draws=300, reference_thin=2, w_star=start, hessian=25 * H,
                              seed=shifted_seed(7))
    exact_sgld = stepwise_stationary_moments(blr.A.numpy(), blr.g.numpy(), lr, 1.0, 10, "wr")
    cases = [(result.reference.moments, post.mean, post_sd, "MALA reference"),
             (result.runs[0].moments, exact_sgld.mean, np.sqrt(np.diag(exact_sgld.cov)), "SGLD")]
    for moments, mean, sd, what in cases:
        se = moments["mean_se"]
        assert np.all(np.abs(moments["mean"] - mean) < Z_TOL * se), (what, moments["mean"], mean, se)
        assert np.all(np.abs(moments["sd"] - sd) < Z_TOL * se / np.sqrt(2)), (what, moments["sd"], sd, se)
    # power: the start, and SGLD's law, are far from what they are compared with
    ref_se = result.reference.moments["mean_se"]
    assert np.all(np.abs(start - post.mean) > 2 * Z_TOL * ref_se)
    sgld_se = result.runs[0].moments["mean_se"] / np.sqrt(2)
    assert np.max(np.abs(np.sqrt(np.diag(exact_sgld.cov)) - post_sd) / sgld_se) > 2 * Z_TOL
    # and the reported distance of SGLD's moments to the reference says so
    assert result.runs[0].log_sd_ratio > 0.05 and result.reference.rhat_max < 1.1


@pytest.fixture(scope="module")
def classifier():
    """A softmax classifier (one nn.Linear, p = 9) on three Gaussian blobs, with held-out data."""
    rng = np.random.default_rng(shifted_seed(5))
    centres = np.array([[0.0, 1.0], [-1.0, -0.5], [1.0, -0.5]])

    def blobs(n):
        y = rng.integers(0, 3, n)
        return centres[y] + 0.7 * rng.normal(size=(n, 2)), y

    X, y = blobs(60)
    X_test, y_test = blobs(50)
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(2, 3))  # an MLP: the hand-batched gradient
    problem = from_module(module, X, y, likelihood="categorical", prior_std=1.0)
    return problem, TestSet(X_test, y_test, module_predictor(module), "categorical")


SMALL = dict(batch_size=10, chains=8, burn_in=20, draws=6, thin=6, reference_burn_in=20, reference_draws=6,
             reference_thin=2)


def test_module_predictor_gives_the_problems_logits(classifier):
    """The predictor's logits reproduce the problem's potentials: U_i = -N log softmax(f(x_i))[y_i] + |w|^2 / 2."""
    problem, _ = classifier
    w = torch.randn(3, problem.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    X, y = problem.data
    logits = module_predictor(torch.nn.Sequential(torch.nn.Linear(2, 3)))(w, X)
    nll = -torch.log_softmax(logits, -1).gather(-1, y.expand(3, -1).unsqueeze(-1)).squeeze(-1)
    expected = problem.n * nll + 0.5 * (w * w).sum(1, keepdim=True)
    torch.testing.assert_close(problem.potentials(w), expected, rtol=1e-12, atol=1e-10)


def test_result_records_every_run_and_is_reproducible(classifier, tmp_path):
    problem, test = classifier
    methods = ("sgld", "sgworld", "sgld:wor")
    first = compare_samplers(problem, methods, lr_hmax=(0.5, 0.1), test=test, seed=3, **SMALL)
    again = compare_samplers(problem, methods, lr_hmax=(0.1, 0.5), test=test, seed=3, **SMALL)
    strip = lambda d: json.loads(json.dumps(to_jsonable(d)).replace("runtime", "x"))  # noqa: E731
    a, b = first.to_json(), again.to_json()
    for d in (a, b):
        d["reference"].pop("seconds"), d["reference"].pop("runtime_s"), d["reference"].pop("seconds_per_ess_min")
        for r in d["runs"]:
            r.pop("runtime_s")
    assert strip(a) == strip(b)                                        # same seed, same numbers
    assert [(r["method"], r["scheme"], r["lr_hmax"]) for r in a["runs"]] == [
        (m, s, f) for f in (0.1, 0.5) for m, s in (("sgld", None), ("sgworld", None), ("sgld", "wor"))]
    ref = a["reference"]
    assert ref["method"] == "mala" and ref["init"].startswith("Laplace") and 0 < ref["acceptance_rate"] <= 1
    assert ref["tv_floor"] == pytest.approx(ref["tv_halves"] / np.sqrt(2)) and ref["tv_floor"] > 0
    for r in a["runs"]:
        assert 0 <= r["tv_to_reference"] <= 1 and 0 <= r["ece"] <= 1 and r["nll"] > 0
        assert r["steps"] == r["burn_in"] + SMALL["draws"] * r["thin"] and r["ess_min"] > 0
    assert [c["lr_hmax"] for c in a["comparison"]] == [0.1, 0.5] and "tv_sgld_over_sgworld" in a["comparison"][0]
    names = [c.name for c in checks(a)]
    assert len(names) == 2 + 2 * 2 and all(names)
    assert first.figures(tmp_path, "x_") == ["x_predictive_vs_lr.png", "x_reliability.png", "x_moments_vs_lr.png"]
    assert all((tmp_path / f).stat().st_size > 10_000 for f in ("x_predictive_vs_lr.png", "x_reliability.png"))


def test_hellinger_distance_of_gaussian_predictives_matches_quadrature():
    p = {"mean": np.array([0.0, 1.0]), "var": np.array([1.0, 0.25])}
    q = {"mean": np.array([0.5, 1.0]), "var": np.array([2.0, 0.25])}
    x = np.linspace(-15, 15, 200001)
    dens = lambda m, v: np.exp(-(x - m) ** 2 / (2 * v)) / np.sqrt(2 * np.pi * v)  # noqa: E731
    h0 = np.sqrt(1 - np.trapezoid(np.sqrt(dens(0.0, 1.0) * dens(0.5, 2.0)), x))
    assert _Predictive.distance(p, q) == pytest.approx(h0 / 2, rel=1e-8)       # the second input: identical, 0
    assert _Predictive.distance(p, p) == 0.0


@pytest.mark.parametrize("kwargs, message", [
    ({"methods": ("sgld", "nuts")}, "unknown method 'nuts'"),
    ({"reference": "sgld"}, "unknown reference 'sgld'"),
    ({"chains": 9}, "chains = 9 must be even"),
    ({"lrs": (1e-3,)}, "either as lrs (absolute) or as lr_hmax"),
    ({"lr_hmax": (0.1, -1.0)}, "learning rates must be positive"),
    ({"methods": ()}, "methods is empty"),
])
def test_bad_settings_are_named(classifier, kwargs, message):
    problem, _ = classifier
    args = {"methods": ("sgld",), "lr_hmax": (0.1,), "batch_size": 10, "chains": 8, **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compare_samplers(problem, args.pop("methods"), **args)


def test_method_entries_take_a_scheme():
    assert parse_method("sgld") == ("sgld", None) and parse_method("sgd:wor") == ("sgd", "wor")
