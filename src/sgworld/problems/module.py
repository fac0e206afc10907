"""Problems from an ``nn.Module``: Gaussian (regression) or categorical (classification)
likelihood with an optional Gaussian prior, evaluated functionally with ``torch.func``."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

from .._checks import (check_choice, check_class_labels, check_finite, check_module_deterministic,
                       check_positive, check_prior_std)
from ..devices import check_device
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


def _probe_outputs(module: nn.Module, layout: ParamLayout, buffers: dict, X: torch.Tensor, dtype) -> tuple:
    """The shape of the module's output for one sample, from one forward pass on a float copy of its weights."""
    params = layout.unflatten(layout.flatten(module).to(dtype=dtype, device=X.device))
    try:
        with torch.no_grad():
            out = functional_call(module, {**params, **buffers}, (X[:2],))
    except Exception as error:  # the user's module: report its own error on one line
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(f"the module cannot be evaluated on X of shape {tuple(X.shape)} "
                         f"({type(error).__name__}: {detail}); X must be what its forward expects") from None
    if not isinstance(out, torch.Tensor) or out.ndim < 1 or out.shape[0] != min(2, X.shape[0]):
        raise ValueError("the module's forward must return one tensor with the samples along dimension 0")
    return tuple(out.shape[1:])


def from_module(module: nn.Module, X, y, *, likelihood: str = "gaussian", noise_std: float = 1.0,
                prior_std: float | None = 1.0, dtype: torch.dtype = torch.float64, device=None) -> Problem:
    """Build a Problem from a network ``f(x; w)``.

    ``U_i(w) = N * nll_i(w) + |w|^2 / (2 prior_std^2)`` with
    ``nll_i = |y_i - f(x_i; w)|^2 / (2 noise_std^2)`` (gaussian, constants dropped) or
    ``nll_i = -log softmax(f(x_i; w))[y_i]`` (categorical, integer labels). ``prior_std=None`` drops
    the prior (plain training loss). The module's current weights are the problem's initial point.

    The module itself is left untouched: its parameters and floating buffers are copied in ``dtype``
    and passed to ``torch.func.functional_call``. Checked up front, each with a one-line message:

    - the module must be a deterministic per-sample function of the weights: BatchNorm and Dropout
      must be in eval mode (``module.eval()``), and BatchNorm must keep running statistics;
    - categorical labels must be integers in ``0 .. C - 1``, C the module's number of outputs;
    - classes with no sample: with a prior the posterior stays proper (those classes' logits are
      pushed down by the data and held by the prior), so this is a legitimate data set and only
      warns; without a prior (``prior_std=None``) their logits can decrease without bound, the loss
      has no minimum and the posterior is improper, so it is refused;
    - gaussian targets must have as many values per sample as the module has outputs.

    ``device`` (default: X's device) holds the data and the copies of the weights and buffers, and so
    every chain sampled from the problem; ``problem.to(device)`` rebuilds the problem on another one.
    """
    check_choice("likelihood", likelihood, LIKELIHOODS)
    check_module_deterministic(module)
    X = torch.as_tensor(X, dtype=dtype)
    if device is not None:
        X = X.to(check_device(device))
    check_finite("X", X)
    if X.ndim < 1 or X.shape[0] < 1:
        raise ValueError(f"X must have shape (N, ...) with N >= 1, got {tuple(X.shape)}")
    layout = ParamLayout(module)
    # Float copies of the parameters and buffers: functional_call never casts the caller's module.
    buffers = {name: b.detach().to(dtype=dtype if b.is_floating_point() else b.dtype, device=X.device)
               for name, b in module.named_buffers()}
    out_shape = _probe_outputs(module, layout, buffers, X, dtype)
    _, prior_precision = check_prior_std(prior_std)
    y = torch.as_tensor(y).to(X.device)
    if y.ndim == 0 or y.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} samples but y has {y.shape[0] if y.ndim else 'a single value'}; "
                         "give one label or target per sample")
    if likelihood == "categorical":
        if len(out_shape) != 1:
            raise ValueError(f"a categorical likelihood needs the module to return logits of shape (N, classes), "
                             f"got (N, {', '.join(map(str, out_shape))})")
        if prior_std is None:
            fix = ("without a prior (prior_std=None) their logits decrease without bound and the posterior is "
                   "improper: give prior_std, or drop those outputs and relabel")
        else:
            fix = "their weights are held by the prior alone; relabel or drop those outputs if that is not intended"
        y = check_class_labels(y, out_shape[0], missing="refuse" if prior_std is None else "warn", fix=fix)
    else:
        y = torch.as_tensor(y, dtype=dtype)
        check_finite("y", y)
        outputs = math.prod(out_shape)
        if y[0].numel() != outputs:
            raise ValueError(f"y has {y[0].numel()} value(s) per sample but the module has {outputs} output(s); "
                             "they must match")
    n = X.shape[0]
    if likelihood == "gaussian":
        inv_two_var = 0.5 / check_positive("noise_std", noise_std) ** 2

    def potential(w, xb, yb):
        out = functional_call(module, {**layout.unflatten(w), **buffers}, (xb,))
        if likelihood == "gaussian":
            nll = ((out.reshape(yb.shape) - yb) ** 2).reshape(yb.shape[0], -1).sum(1) * inv_two_var
        else:
            nll = -torch.log_softmax(out, dim=-1).gather(-1, yb.unsqueeze(-1)).squeeze(-1)
        return n * nll + 0.5 * prior_precision * (w * w).sum()

    problem = Problem(potential, (X, y), layout.dim, initial=layout.flatten(module).to(dtype=dtype, device=X.device),
                      name=f"{type(module).__name__}/{likelihood}")
    problem.layout = layout
    problem._builder = lambda to: from_module(module, X, y, likelihood=likelihood, noise_std=noise_std,
                                              prior_std=prior_std, dtype=dtype, device=to)
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
