"""The hand-batched MLP gradient agrees with the generic torch.func path."""

import pytest
import torch
from torch import nn

from sgworld.problems import Problem, from_module
from sgworld.problems.mlp import mlp_layers, tanh


def _net(act, bias=True):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7, bias=bias), act(), nn.Linear(7, 4), act(), nn.Linear(4, 3))


@pytest.mark.parametrize("likelihood", ["categorical", "gaussian"])
@pytest.mark.parametrize("act", [nn.Tanh, nn.ReLU])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("prior_std", [0.7, None])
def test_agrees_with_torch_func(likelihood, act, bias, prior_std):
    g = torch.Generator().manual_seed(1)
    X = torch.randn(30, 5, generator=g, dtype=torch.float64)
    y = torch.randint(3, (30,), generator=g) if likelihood == "categorical" else \
        torch.randn(30, 3, generator=g, dtype=torch.float64)
    p = from_module(_net(act, bias), X, y, likelihood=likelihood, noise_std=0.5, prior_std=prior_std)
    w = p.initial_params() + 0.3 * torch.randn(4, p.dim, generator=g, dtype=torch.float64)
    idx = torch.stack([torch.randperm(30, generator=g)[:6] for _ in range(4)])
    torch.testing.assert_close(p.batch_grad(w, idx), Problem.batch_grad(p, w, idx))
    torch.testing.assert_close(p.batch_grad(w), Problem.batch_grad(p, w))


def test_only_plain_mlps_take_the_fast_path():
    assert mlp_layers(_net(nn.Tanh)) == [(7, 5, True, nn.Tanh), (4, 7, True, nn.Tanh), (3, 4, True, None)]
    assert mlp_layers(nn.Sequential(nn.Linear(2, 2), nn.Tanh())) is None          # ends in an activation
    assert mlp_layers(nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 1))) is None
    assert mlp_layers(nn.Linear(2, 2)) is None


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("compiled", [False, True])
def test_tanh_is_within_two_epsilons(dtype, compiled):
    """The MLP's tanh (via sigmoid) against torch.tanh: small arguments, the range where tanh bends, and
    saturation at +-1 (an absolute error: tanh's output enters sums of terms of order one)."""
    small = torch.logspace(-30, 0, 301, dtype=dtype)
    z = torch.cat([small, -small, torch.linspace(-40, 40, 80001, dtype=dtype), torch.tensor([0.0], dtype=dtype)])
    f = torch.compile(tanh, dynamic=False) if compiled else tanh
    got, want = f(z), torch.tanh(z)
    assert (got - want).abs().max() <= 2 * torch.finfo(dtype).eps
    assert torch.equal(got[z.abs() > 20], torch.sign(z[z.abs() > 20]))
