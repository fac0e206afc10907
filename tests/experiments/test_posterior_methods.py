"""The posterior study's pieces: method specs, the one exact-moment dispatch, and the excess-spread metric."""

import re

import numpy as np
import pytest
import torch

from sgworld.experiments import posterior
from sgworld.experiments.common import resolve_config
from sgworld.experiments.posterior_evidence import (INTERVAL_Z, chain_excess, excess_of_moments, separation,
                                                    summary)
from sgworld.experiments.posterior_methods import (MethodSpec, exact_moments, family, parse_method, parse_methods,
                                                   preconditioner_for, relaxation_steps, sample_options,
                                                   wr_wor_pairs)
from sgworld.problems import BayesianLinearRegression
from sgworld.theory.exact import epoch_stationary_moments, sghmc_stationary_moments, stepwise_stationary_moments

from conftest import Z_TOL, shifted_seed


@pytest.mark.parametrize("text, spec", [
    ("sgld", MethodSpec("sgld", "wr", False, "sgld")),
    ("sgworld", MethodSpec("sgworld", "wor", False, "sgworld")),
    ("ula", MethodSpec("ula", "full", False, "ula")),
    ("sghmc:wor", MethodSpec("sghmc", "wor", False, "sghmc:wor")),
    ("sgld_cv", MethodSpec("sgld_cv", "wr", False, "sgld_cv")),
    ("sgld+pc:wor", MethodSpec("sgld", "wor", True, "sgld+pc:wor")),
    (" sgld:iid ", MethodSpec("sgld", "iid", False, "sgld:iid")),
])
def test_method_specs(text, spec):
    assert parse_method(text) == spec


@pytest.mark.parametrize("text, message", [
    ("hmc", "unknown method 'hmc' in methods entry 'hmc'; choose one of: sgld, sgworld, ula, sgld_cv, sghmc"),
    ("sgld:shuffled", "unknown scheme 'shuffled' in methods entry 'sgld:shuffled'; choose one of: wr, iid, wor, full"),
    ("sgld:", "unknown scheme '' in methods entry 'sgld:'"),
    ("sgld+x", "unknown option '+x' in methods entry 'sgld+x'; the one option is '+pc'"),
    ("sghmc+pc", "'+pc' in methods entry 'sghmc+pc' applies to the Langevin methods"),
    ("ula:wr", "methods entry 'ula:wr': ula is full-batch Langevin (scheme full); use sgld:wr for minibatches"),
])
def test_bad_method_specs_name_the_entry_and_the_fix(text, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_method(text)


def test_methods_list_checks_and_pairs():
    with pytest.raises(ValueError, match="methods lists sgld more than once; give each method once"):
        parse_methods(["sgld", "sgworld", "sgld"])
    with pytest.raises(ValueError, match="unknown method 'mala'"):
        posterior.check_config(resolve_config(posterior.Config, {"methods": "sgld,mala"}))
    specs = parse_methods(["sgld", "sgworld", "ula", "sghmc:wr", "sghmc:wor", "sgld+pc:wr", "sgld_cv"])
    assert wr_wor_pairs(specs) == [("sgld", "sgworld"), ("sghmc:wr", "sghmc:wor")]
    assert family("sgworld") == ("sgld", "wor") and family("sgld+pc:wor") == ("sgld+pc", "wor")


@pytest.fixture(scope="module")
def blr():
    config = resolve_config(posterior.Config, {"n": 40, "batch_size": 5})
    X, y = posterior.make_data(config)
    problem = BayesianLinearRegression(torch.tensor(X), torch.tensor(y), config.noise_std, config.prior_std)
    A, g = problem.quadratic_terms()
    H = A.mean(0)
    target = problem.target()
    lr = 0.3 / (8 * np.linalg.eigvalsh(H)[-1])
    theory = {"map_point": target.mean, "preconditioner": preconditioner_for(H), "alpha": 0.2}
    return A, g, H, target, lr, theory


def test_exact_moments_dispatch_to_the_theory(blr):
    """One function maps every spec to sgworld.theory.exact with the right scheme and options."""
    A, g, H, target, lr, theory = blr
    get = lambda text: exact_moments(parse_method(text), A, g, lr, 1.0, 5, **theory, beta_hat=0.05,
                                     permutations=64, seed=3)
    same = lambda a, b: np.testing.assert_allclose(a.cov, b.cov, rtol=1e-12) or \
        np.testing.assert_allclose(a.mean, b.mean, rtol=1e-12)
    same(get("sgld"), stepwise_stationary_moments(A, g, lr, 1.0, 5, "wr"))
    same(get("ula"), stepwise_stationary_moments(A, g, lr, 1.0, 5, "full"))
    same(get("sgworld"), epoch_stationary_moments(A, g, lr, 1.0, 5, permutations=64, seed=3))
    same(get("sgld:wor"), get("sgworld"))
    P = preconditioner_for(H)
    same(get("sgld+pc:iid"), stepwise_stationary_moments(A, g, lr, 1.0, 5, "iid", preconditioner=P))
    same(get("sgld_cv:wor"), epoch_stationary_moments(A, g, lr, 1.0, 5, permutations=64, seed=3,
                                                      control_variate_centre=target.mean))
    same(get("sghmc:wr"), sghmc_stationary_moments(A, g, lr, 1.0, 5, "wr", alpha=0.2, beta_hat=0.05))
    # and the options differ where they should: the preconditioner and the control variate change the answer
    assert not np.allclose(get("sgld+pc").cov, get("sgld").cov)
    assert not np.allclose(get("sgld_cv").cov, get("sgld").cov)


def test_sample_options_and_relaxation(blr):
    A, g, H, target, lr, theory = blr
    opts = sample_options(parse_method("sghmc:wor"), 5, 40, **theory, beta_hat=0.0)
    assert opts == {"method": "sghmc", "scheme": "wor", "batch_size": 5,
                    "kernel_options": {"alpha": 0.2, "beta_hat": 0.0}}
    assert sample_options(parse_method("ula"), 5, 40, **theory, beta_hat=0.0)["scheme"] is None
    full = sample_options(parse_method("sghmc:full"), 5, 40, **theory, beta_hat=0.0)
    assert (full["scheme"], full["batch_size"]) == ("wr", 40)  # wr batches of all N distinct samples
    cv = sample_options(parse_method("sgld_cv+pc"), 5, 40, **theory, beta_hat=0.0)["kernel_options"]
    np.testing.assert_array_equal(cv["centre"], target.mean)
    np.testing.assert_array_equal(cv["preconditioner"], theory["preconditioner"])
    # Langevin: -1 / log(1 - lr h_min); SGHMC at small lr: overdamped, about alpha times SGLD's
    h = np.linalg.eigvalsh(H)
    assert relaxation_steps(parse_method("sgld"), H, lr, None, 0.2) == pytest.approx(-1 / np.log(1 - lr * h[0]))
    # P = h_max H^-1 whitens the curvature: every mode relaxes like SGLD's fastest
    np.testing.assert_allclose(theory["preconditioner"] @ H, h[-1] * np.eye(2), rtol=1e-10, atol=1e-10 * h[-1])
    assert relaxation_steps(parse_method("sgld+pc"), H, lr, theory["preconditioner"], 0.2) == pytest.approx(
        -1 / np.log(1 - lr * h[-1]))
    small = lr / 1000
    ratio = relaxation_steps(parse_method("sghmc"), H, small, None, 0.2) / relaxation_steps(
        parse_method("sgld"), H, small, None, 0.2)
    assert ratio == pytest.approx(0.2, rel=0.01)
    with pytest.raises(ValueError, match="sgld has no stationary state at lr = .*; lower lr_max_factor or the lrs"):
        relaxation_steps(parse_method("sgld"), H, 2.5 / h[-1], None, 0.2)


def test_excess_spread_exact_and_sampled():
    """e = 0 at the posterior and e = s - 1 for N(mu, s Sigma); the chain average estimates it without bias,
    within its between-chain interval (2 numbers at z = 5: false-failure rate 1.2e-6)."""
    rng = np.random.default_rng(shifted_seed(41))
    mu, Sigma = np.array([1.0, -2.0]), np.array([[2.0, 0.6], [0.6, 0.5]])
    assert excess_of_moments(mu, Sigma, mu, Sigma) == pytest.approx(0.0, abs=1e-14)
    assert excess_of_moments(mu, 1.3 * Sigma, mu, Sigma) == pytest.approx(0.3)
    shift = np.linalg.cholesky(Sigma) @ np.array([0.2, 0.0])
    assert excess_of_moments(mu + shift, Sigma, mu, Sigma) == pytest.approx(0.04 / 2)
    draws = rng.multivariate_normal(mu, 1.1 * Sigma, size=(4000, 20))
    s = summary(chain_excess(draws, mu, Sigma))
    assert abs(s["value"] - 0.1) < Z_TOL * s["se"]
    # power: the estimate separates 0.1 from 0 by far more than its tolerance
    assert 0.1 > 4 * Z_TOL * s["se"]
    # paired separation: common draws cancel, and the interval is +-INTERVAL_Z SE
    a = chain_excess(draws, mu, Sigma)
    b = chain_excess(mu + (draws - mu) / np.sqrt(1.1), mu, Sigma)  # the same chains, exact spread
    sep = separation(a, b, 0.1, 0.0)
    assert sep["resolved"] and sep["se"] < s["se"] / 5
    assert sep["ci"] == pytest.approx([sep["value"] - INTERVAL_Z * sep["se"], sep["value"] + INTERVAL_Z * sep["se"]])
    assert abs(sep["z_vs_exact"]) < Z_TOL
    assert not separation([0.0, 1.0, 2.0, 3.0], [1.0, 0.0, 3.0, 2.0], 0.0, 0.0)["resolved"]  # mean difference 0
