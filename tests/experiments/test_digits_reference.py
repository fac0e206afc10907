"""The digits study's exact reference: MALA or look-ahead HMC (``reference_method``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sgworld.datasets import load_digits
from sgworld.experiments import digits
from sgworld.experiments.common import resolve_config
from sgworld.theory import find_minimum

from conftest import shifted_seed

TINY = {"sampler_lr_hmax": (0.3,), "sampler_chains": 8, "sampler_burn_in": 20, "sampler_draws": 5,
        "sampler_thin": 20, "reference_burn_in": 20, "reference_draws": 6, "reference_thin": 2,
        "reference_leapfrog_steps": 5}


@pytest.fixture(scope="module")
def small():
    feats = digits.make_features(load_digits(), 4, 70)
    problem = digits.SoftmaxRegression(feats.x_train, feats.y_train, 10, prior_std=1.0)
    w_star, _ = find_minimum(problem)
    return problem, feats, w_star, problem.hessian(torch.as_tensor(w_star, dtype=torch.float64)).numpy()


def test_set_reference_method_selects_the_sampler_and_its_step():
    config = resolve_config(digits.Config, {"reference_method": "lahmc"})
    assert config.reference_method == "lahmc"
    settings = digits.reference_settings(config, h_max=50.0)
    assert settings["lr"] == pytest.approx(math.sqrt(2 * config.reference_lr_hmax / 50.0))  # eps = sqrt(2 lr)
    assert settings["kernel_options"] == {"leapfrog_steps": 10, "look_ahead": 4, "beta": 0.1}
    assert digits.reference_settings(resolve_config(digits.Config, {}), 50.0) == {"lr": config.reference_lr_hmax / 50}
    bad = resolve_config(digits.Config, {"reference_method": "nuts"})
    with pytest.raises(ValueError, match="unknown reference_method 'nuts'; choose one of: mala, lahmc"):
        digits.check_config(bad, 20)
    with pytest.raises(ValueError, match="reference_beta = 0.0 is out of range"):
        digits.check_config(resolve_config(digits.Config, {"reference_beta": 0.0}), 20)


@pytest.mark.parametrize("method", ["mala", "lahmc"])
def test_reference_records_its_method_and_cost(small, method):
    problem, feats, w_star, H = small
    config = resolve_config(digits.Config, TINY, {"reference_method": method, "seed": shifted_seed(0)})
    post = digits.posterior_sampling(problem, feats, w_star, H, config, progress=False).to_json()
    ref = post["reference"]
    assert ref["method"] == method and 0 < ref["acceptance_rate"] <= 1
    steps = config.reference_burn_in + config.reference_draws * config.reference_thin
    if method == "mala":
        assert ref["grad_evals_per_chain"] == steps
    else:  # between M and K M gradients per step
        m, k = config.reference_leapfrog_steps, config.reference_look_ahead
        assert m * steps <= ref["grad_evals_per_chain"] <= k * m * steps
    assert ref["ess_min"] > 0 and ref["seconds_per_ess_min"] > 0 and np.isfinite(ref["grad_evals_per_ess_min"])
    assert 0.5 < ref["accuracy"] <= 1
