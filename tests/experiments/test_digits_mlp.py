"""The digits study with an MLP (``--set model=mlp``): the reference-class network, and both theory paths (dense,
and the top-k Hessian eigenspace above ``dense_max_p``) end to end at a tiny size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sgworld import Problem
from sgworld.datasets import load_digits
from sgworld.experiments import digits
from sgworld.experiments.common import resolve_config
from sgworld.problems.mlp import ReferenceClassMLP

TINY = {"model": "mlp", "pca_dim": 4, "hidden": (4,), "chains": 16, "steps": 120, "segment": 60, "groups": 4,
        "ft_steps": 120, "bootstrap": 20, "model_free_chains": 16, "wor_epochs": 300, "sampler_lr_hmax": (0.3,),
        "sampler_chains": 8, "sampler_burn_in": 20, "sampler_draws": 4, "sampler_thin": 20,
        "reference_burn_in": 20, "reference_draws": 4, "reference_thin": 5}


def test_reference_class_mlp_gradient_and_loss_match_autodiff():
    feats = digits.make_features(load_digits(), 5, 70)
    problem = ReferenceClassMLP(feats.x_train[:, :-1], feats.y_train, 10, hidden=(7, 3), prior_std=0.5)
    assert problem.dim == 5 * 7 + 7 + 7 * 3 + 3 + 3 * 9 + 9
    reference = Problem(problem.potential_fn, problem.data, problem.dim)  # torch.func on the same potential
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, problem.dim, generator=gen, dtype=torch.float64)
    idx = torch.randint(problem.n, (4, 9), generator=gen)
    for i in (idx, None):
        torch.testing.assert_close(problem.batch_grad(w, i), reference.batch_grad(w, i), rtol=1e-11, atol=1e-8)
        torch.testing.assert_close(problem.batch_loss(w, i), reference.batch_loss(w, i), rtol=1e-12, atol=1e-9)
    logits = problem.logits(w, torch.as_tensor(feats.x_test[:3, :-1]))
    assert logits.shape == (4, 3, 10) and torch.all(logits[..., 0] == 0)    # class 0 is the reference


@pytest.mark.parametrize("dense_max_p, path", [(4096, "dense"), (40, "topk")])
def test_tiny_mlp_run_takes_the_dense_or_the_topk_path(tmp_path, dense_max_p, path):
    config = resolve_config(digits.Config, TINY, {"dense_max_p": dense_max_p, "topk": 6})
    metrics = digits.run(config, tmp_path, progress=False)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    p = 4 * 4 + 4 + 4 * 9 + 9
    assert on_disk["model"]["p"] == p and on_disk["model"]["kind"] == "mlp"
    neq = on_disk["nonequilibrium"]
    assert neq["analysis"]["path"] == path and neq["wr"]["ep_rate_theory"] > 0
    assert neq["wr"]["ift"].keys() == {str(k) for k in config.ft_windows}
    assert metrics["newton"]["grad_norm"] < 1e-6 * (1 + abs(metrics["newton"]["loss"]))
    names = [c.name for c in digits.checks(on_disk)]
    if path == "topk":
        assert len(neq["wr"]["sigma_theory_eig"]) == 6 and neq["analysis"]["notes"]
        assert names[0] == "Theory path: top-k Hessian eigenspace"
    else:
        assert len(neq["wr"]["sigma_theory_eig"]) == p and "hessian_condition" in on_disk
        assert np.all(np.asarray(on_disk["hessian_eigenvalues"]) > 0)
    assert all((tmp_path / f).is_file() for f in on_disk["figures"])
    assert not (tmp_path / "checkpoints").exists()
