"""Problems from an ``nn.Module``: Gaussian (regression) or categorical (classification)
likelihood with an optional Gaussian prior, evaluated functionally with ``torch.func``."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from .._checks import check_choice, check_finite, check_positive
from .base import Problem
from .mlp import MLPGradient, mlp_layers

LIKELIHOODS = ("gaussian", "categorical")


class ParamLayout:
    """Maps a flat vector (p,) to a module's named parameters and back."""

    def __init__(self, module: nn.Module):
        self.names = [name for name, _ in module.named_parameters()]
        self.shapes = [p.shape for _, p in module.named_parameters()]
        self.sizes = [p.numel() for _, p in module.named_parameters()]
        self.dim = sum(self.sizes)

    def unflatten(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = torch.split(w, self.sizes)
        return {n: t.reshape(s) for n, t, s in zip(self.names, parts, self.shapes)}

    def flatten(self, module: nn.Module) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def from_module(module: nn.Module, X, y, *, likelihood: str = "gaussian", noise_std: float = 1.0,
                prior_std: float | None = 1.0, dtype: torch.dtype = torch.float64) -> Problem:
    """Build a Problem from a network ``f(x; w)``.

    ``U_i(w) = N * nll_i(w) + |w|^2 / (2 prior_std^2)`` with
    ``nll_i = |y_i - f(x_i; w)|^2 / (2 noise_std^2)`` (gaussian, constants dropped) or
    ``nll_i = -log softmax(f(x_i; w))[y_i]`` (categorical, integer labels). ``prior_std=None`` drops
    the prior (plain training loss). The module's current weights are the problem's initial point.
    """
    check_choice("likelihood", likelihood, LIKELIHOODS)
    module = module.to(dtype)
    X = torch.as_tensor(X, dtype=dtype)
    check_finite("X", X)
    if likelihood == "categorical":
        y = torch.as_tensor(y, dtype=torch.long)
        if y.ndim != 1:
            raise ValueError(f"categorical labels y must have shape (N,), got {tuple(y.shape)}")
    else:
        y = torch.as_tensor(y, dtype=dtype)
        check_finite("y", y)
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} samples but y has {y.shape[0]}")
    n = X.shape[0]
    layout = ParamLayout(module)
    prior_precision = 0.0 if prior_std is None else 1.0 / check_positive("prior_std", prior_std) ** 2
    if likelihood == "gaussian":
        inv_two_var = 0.5 / check_positive("noise_std", noise_std) ** 2

    def potential(w, xb, yb):
        out = functional_call(module, layout.unflatten(w), (xb,))
        if likelihood == "gaussian":
            nll = ((out.reshape(yb.shape) - yb) ** 2).reshape(yb.shape[0], -1).sum(1) * inv_two_var
        else:
            nll = -torch.log_softmax(out, dim=-1).gather(-1, yb.unsqueeze(-1)).squeeze(-1)
        return n * nll + 0.5 * prior_precision * (w * w).sum()

    problem = Problem(potential, (X, y), layout.dim, initial=layout.flatten(module).to(dtype),
                      name=f"{type(module).__name__}/{likelihood}")
    problem.layout = layout
    layers = mlp_layers(module)
    if layers is not None:
        # The sampler's hot path: the same gradient, hand-batched over chains (problems/mlp.py).
        fast = MLPGradient(layers, n, likelihood, prior_precision, inv_two_var if likelihood == "gaussian" else 0.5)
        generic = problem.batch_grad

        def batch_grad(w, idx=None):
            problem.check_params(w)
            if idx is None:
                return fast(w, X.unsqueeze(0), y.unsqueeze(0))
            return fast(w, X[idx], y[idx])

        batch_grad.generic = generic
        problem.batch_grad = batch_grad
    return problem
