"""Model inputs checked up front: the caller's module untouched, categorical labels, layers with batch
statistics or dropout, and ``prior_std=None`` (a flat prior) in the exact models."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from sgworld import BayesianLinearRegression, GaussianLocation, from_module, sample


def classifier(classes=3, features=4):
    torch.manual_seed(0)  # the module's own initialisation only; nothing in sgworld reads it
    return nn.Sequential(nn.Linear(features, 8), nn.Tanh(), nn.Linear(8, classes))


def data(n=12, features=4, classes=3):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, features, generator=gen), torch.arange(n) % classes


# -- the caller's module ---------------------------------------------------------------------------

@pytest.mark.parametrize("net", [classifier(), nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.Tanh())],
                         ids=["mlp fast path", "generic path"])
def test_from_module_leaves_the_callers_module_untouched(net):
    X, y = data()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    problem = from_module(net, X, y, likelihood="categorical")
    sample(problem, "sgld", lr=1e-3, batch_size=4, chains=2, num_draws=3, progress=False)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert net(X).dtype == torch.float32                     # the user's own float32 forward still works
    assert problem.grad(problem.initial_params()[None]).dtype == torch.float64


def test_float32_buffers_of_an_eval_mode_batchnorm_are_copied_not_cast():
    net = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3))
    net[1].running_mean.fill_(0.3)
    net[1].running_var.fill_(2.0)
    net.eval()
    X, y = data()
    problem = from_module(net, X, y, likelihood="categorical")
    assert net[1].running_mean.dtype == torch.float32
    w = problem.initial_params()[None]
    with torch.no_grad():
        expected = nn.functional.cross_entropy(net.double()(X.double()), y, reduction="sum") \
            + 0.5 * (w * w).sum()
    torch.testing.assert_close(problem.loss(w)[0], expected.to(torch.float64))


# -- layers that are not a deterministic per-sample function of the weights --------------------------

@pytest.mark.parametrize("layer", [nn.BatchNorm1d(8), nn.Dropout(0.1), nn.AlphaDropout(0.1)],
                         ids=["batchnorm", "dropout", "alpha dropout"])
def test_train_mode_layers_are_refused_with_the_fix(layer):
    net = nn.Sequential(nn.Linear(4, 8), layer, nn.Linear(8, 3))
    X, y = data()
    with pytest.raises(ValueError, match=r"layer '1' is in training mode .*; call module\.eval\(\)"):
        from_module(net, X, y, likelihood="categorical")
    net.eval()
    from_module(net, X, y, likelihood="categorical")          # the fix works


def test_batchnorm_without_running_statistics_is_refused_in_eval_mode_too():
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8, track_running_stats=False), nn.Linear(8, 3)).eval()
    X, y = data()
    with pytest.raises(ValueError, match=r"uses batch statistics even in eval mode \(track_running_stats=False\)"):
        from_module(net, X, y, likelihood="categorical")


# -- categorical labels ----------------------------------------------------------------------------

def test_non_integer_labels_are_refused_not_truncated():
    X, _ = data()
    y = torch.tensor([0.0, 1.0, 2.7, 2.0] * 3)
    with pytest.raises(ValueError, match=r"y\[2\] = 2\.7 is not \(3 such label\(s\)\): relabel"):
        from_module(classifier(), X, y, likelihood="categorical")


@pytest.mark.parametrize("bad, where", [(3, "y[5] = 3"), (-1, "y[5] = -1")])
def test_labels_outside_the_outputs_are_refused(bad, where):
    X, y = data()
    y[5] = bad
    with pytest.raises(ValueError, match=rf"label {where.replace('[', '.').replace(']', '.')} is outside 0\.\.2 "
                                         r"\(the model has 3 outputs.*relabel"):
        from_module(classifier(), X, y, likelihood="categorical")


def test_missing_classes_without_a_prior_are_refused_by_name():
    X, _ = data()
    y = torch.zeros(12, dtype=torch.long)
    y[::2] = 2                                               # classes 0 and 2 present, 1 absent
    with pytest.raises(ValueError, match=r"no sample of class\(es\) 1 of 0\.\.2; without a prior .* improper"):
        from_module(classifier(), X, y, likelihood="categorical", prior_std=None)


def test_missing_classes_with_a_prior_warn_and_sample():
    X, _ = data()
    y = torch.zeros(12, dtype=torch.long)
    held = r"no sample of class\(es\) 1, 2 of 0\.\.2; their weights are held by the prior"
    with pytest.warns(UserWarning, match=held):
        problem = from_module(classifier(), X, y, likelihood="categorical", prior_std=1.0)
    assert np.isfinite(sample(problem, "sgld", lr=1e-3, batch_size=4, num_draws=2, progress=False).draws).all()


def test_complete_labels_do_not_warn():
    X, y = data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_module(classifier(), X, y.double(), likelihood="categorical")   # integral floats are fine


# -- prior_std=None: the flat prior ----------------------------------------------------------------

def test_gaussian_location_without_prior_is_the_sample_mean():
    y = torch.tensor([[1.0, 2.0], [3.0, -1.0], [2.0, 0.5]], dtype=torch.float64)
    problem = GaussianLocation(y, noise_std=0.5, prior_std=None)
    t = problem.target()
    np.testing.assert_allclose(t.mean, y.mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(t.cov, 0.25 / 3 * np.eye(2), rtol=1e-12)
    assert problem.prior_precision == 0.0


def test_linear_regression_without_prior_is_least_squares():
    gen = torch.Generator().manual_seed(2)
    X = torch.randn(30, 3, generator=gen, dtype=torch.float64)
    noise = torch.randn(30, generator=gen, dtype=torch.float64)
    y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.3 * noise
    problem = BayesianLinearRegression(X, y, noise_std=0.3, prior_std=None)
    t = problem.target()
    Xn, yn = X.numpy(), y.numpy()
    np.testing.assert_allclose(t.mean, np.linalg.lstsq(Xn, yn, rcond=None)[0], rtol=1e-10)
    np.testing.assert_allclose(t.cov, 0.09 * np.linalg.inv(Xn.T @ Xn), rtol=1e-10)
    # the potentials agree: the gradient of L vanishes at the exact mean on every path
    mean = torch.tensor(t.mean)[None]
    torch.testing.assert_close(problem.grad(mean), torch.zeros(1, 3, dtype=torch.float64), atol=1e-9, rtol=0)
    idx = torch.arange(30).reshape(1, 30)
    torch.testing.assert_close(problem.batch_grad(mean, idx), torch.zeros(1, 3, dtype=torch.float64), atol=1e-9, rtol=0)
    A, g = problem.quadratic_terms()
    np.testing.assert_allclose(np.linalg.solve(A.mean(0), g.mean(0)), t.mean, rtol=1e-10)


def test_rank_deficient_regression_without_prior_is_refused():
    X = torch.ones(10, 2, dtype=torch.float64)               # two identical columns
    with pytest.raises(ValueError, match=r"X has rank 1 < 2 columns: without a prior \(prior_std=None\) the posterior "
                                         r"is improper; give prior_std"):
        BayesianLinearRegression(X, torch.zeros(10, dtype=torch.float64), prior_std=None)
    BayesianLinearRegression(X, torch.zeros(10, dtype=torch.float64), prior_std=1.0)   # the prior makes it proper
