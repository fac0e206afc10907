"""The digits study (sgworld.experiments.digits): features, the softmax problem, the circulation plane,
and the quick run end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sgworld import Problem
from sgworld.datasets import load_digits
from sgworld.experiments import digits
from sgworld.experiments.common import resolve_config
from sgworld.nonequilibrium import top_circulation_plane
from sgworld.theory import find_minimum, gradient_covariance


@pytest.fixture(scope="module")
def small():
    """Digits on 6 principal components (p = 63), b = 70."""
    feats = digits.make_features(load_digits(), 6, 70)
    return digits.SoftmaxRegression(feats.x_train, feats.y_train, 10, prior_std=1.0), feats


def test_features_are_whitened_with_a_bias(small):
    _, feats = small
    x = feats.x_train[:, :-1]
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(np.cov(x, rowvar=False), np.eye(6), atol=1e-10)
    np.testing.assert_array_equal(feats.x_train[:, -1], 1.0)
    assert feats.x_test.shape == (397, 7) and feats.dropped == 0 and 0 < feats.explained_variance < 1


def test_training_set_is_cut_to_a_multiple_of_b():
    feats = digits.make_features(load_digits(), 4, 64, n_train=1000)
    assert len(feats.y_train) == 960 and feats.dropped == 40
    with pytest.raises(ValueError, match="pca_dim"):
        digits.make_features(load_digits(), 65, 70)
    with pytest.raises(ValueError, match="at least 2 batches"):
        digits.make_features(load_digits(), 4, 70, n_train=100)


def test_analytic_gradient_matches_autodiff(small):
    problem, _ = small
    reference = Problem(problem.potential_fn, problem.data, problem.dim)  # vmap(grad) of the same potential
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(5, problem.dim, generator=gen, dtype=torch.float64)
    idx = torch.randint(problem.n, (5, 9), generator=gen)
    torch.testing.assert_close(problem.batch_grad(w, idx), reference.batch_grad(w, idx), rtol=1e-12, atol=1e-8)
    torch.testing.assert_close(problem.batch_grad(w), reference.batch_grad(w), rtol=1e-12, atol=1e-8)


def test_gauge_is_fixed_so_the_noise_reaches_every_direction(small):
    """p = (d + 1)(C - 1) and S(w*) is full rank (with all C classes free it would have d + 1 zero modes)."""
    problem, _ = small
    assert problem.dim == 7 * 9
    w_star, _ = find_minimum(problem)
    lam = np.linalg.eigvalsh(gradient_covariance(problem, w_star))
    assert lam[0] > 1e-8 * lam[-1]


def test_class_probabilities_average_the_draws(small):
    problem, feats = small
    w = np.random.default_rng(1).normal(size=(3, problem.dim))
    probs = problem.class_probabilities(w, feats.x_test[:4])
    each = [torch.softmax(problem.logits(torch.tensor(v), torch.tensor(feats.x_test[:4])), -1).numpy() for v in w]
    np.testing.assert_allclose(probs, np.mean(each, 0), rtol=1e-12)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-12)


def test_top_circulation_plane_of_a_known_current():
    """Sigma = diag(s), Q with rotation rates 0.3 (coords 0, 1) and 0.1 (coords 2, 3) in whitened units."""
    s = np.array([4.0, 1.0, 9.0, 0.25])
    root = np.sqrt(s)
    omega = np.zeros((4, 4))
    omega[0, 1], omega[2, 3] = 0.3, 0.1
    omega -= omega.T
    Q = root[:, None] * omega * root[None, :]              # Sigma^{1/2} Omega Sigma^{1/2}
    plane = top_circulation_plane(Q, np.diag(s))
    assert plane["omega"] == pytest.approx(0.3, rel=1e-12)
    np.testing.assert_allclose(plane["omegas"][:2], [0.3, 0.1], rtol=1e-12)
    E = plane["basis"]
    np.testing.assert_allclose(E.T @ E, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(np.abs(E[2:]), 0, atol=1e-12)  # the plane of coordinates 0 and 1


FIGURES = list(digits.FIGURES)


def test_quick_run_writes_every_metric_and_figure(tmp_path):
    config = resolve_config(digits.Config, digits.QUICK)
    metrics = digits.run(config, tmp_path, progress=False)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["figures"] == FIGURES
    for name in FIGURES:
        assert (tmp_path / name).stat().st_size > 10_000, name
    assert on_disk["model"]["p"] == (config.pca_dim + 1) * 9
    neq, post = on_disk["nonequilibrium"], on_disk["posterior"]
    wr, wor = neq["wr"], neq["wor"]
    # sanity of the physics at smoke-test size (the accuracy of the theory is tested in tests/theory)
    assert wr["ep_rate_theory"] > 0 and 0 < wr["commutator_ratio"] < 1
    assert wor["lr_M_hmax"] == pytest.approx(config.lr_M_hmax, rel=1e-3)  # h_max at w_eff, not w*
    assert np.all(np.asarray(wr["sigma_theory_eig"]) > 100 * np.asarray(wor["sigma_theory_eig"]))
    assert set(wr["ift"]) == {str(k) for k in config.ft_windows}
    assert wr["circulation"]["omega_theory"] > 0
    # the predictive side
    assert 0.5 < post["reference"]["accuracy"] <= 1 and 0 < post["reference"]["acceptance_rate"] <= 1
    assert len(post["runs"]) == 2 * len(config.sampler_lr_hmax)
    for run in post["runs"]:
        assert 0 <= run["tv_to_reference"] <= 1 and 0 <= run["ece"] <= 1 and run["nll"] > 0
    assert all(c.name for c in digits.checks(on_disk))
    assert not (tmp_path / "checkpoints").exists()


def test_bad_settings_are_named(tmp_path):
    config = resolve_config(digits.Config, digits.QUICK, {"segment": 50})
    with pytest.raises(ValueError, match="multiple of M"):
        digits.run(config, tmp_path)
    config = resolve_config(digits.Config, digits.QUICK, {"data": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match="does not exist"):
        digits.run(config, tmp_path)


def test_train_shifts_enlarge_the_training_set_only():
    plain = digits.make_features(load_digits(), 6, 70)
    shifted = digits.make_features(load_digits(), 6, 70, train_shifts=1)
    assert shifted.x_train.shape == (9 * 1400, 7) and plain.x_train.shape == (1400, 7)
    assert shifted.x_test.shape == plain.x_test.shape and "shifts up to 1 px" in shifted.source
    with pytest.raises(ValueError, match="train_shifts"):
        digits.build_problem(digits.Config(train_shifts=-1))
