"""Hand-batched gradient for multilayer perceptrons (``nn.Sequential`` of ``Linear`` and ``Tanh`` /
``ReLU``), the sampler's hot path for small networks.

For K chains with their own weights and minibatches, the forward and backward passes are a few
batched matrix products (``baddbmm`` / ``bmm``) over the chain dimension: about a third of the
per-step time of ``torch.func.vmap(grad(...))`` on a 64-32-10 network, whose per-call tracing
overhead dominates at small K. It computes the same ``grad L_B`` as the generic path (a test
checks that they agree), and is used only where the module has exactly this form.
"""

from __future__ import annotations

import torch
from torch import nn

_ACTIVATIONS = (nn.Tanh, nn.ReLU)


def mlp_layers(module: nn.Module):
    """``[(out, in, has_bias, activation or None), ...]`` when ``module`` is an MLP of the supported
    form (Linear layers, each followed by at most one Tanh / ReLU, the last one by none), else None."""
    if not isinstance(module, nn.Sequential) or len(module) == 0:
        return None
    layers = []
    for m in module:
        if isinstance(m, nn.Linear):
            layers.append([m.out_features, m.in_features, m.bias is not None, None])
        elif isinstance(m, _ACTIVATIONS) and layers and layers[-1][3] is None:
            layers[-1][3] = type(m)
        else:
            return None
    if not layers or layers[-1][3] is not None:
        return None
    return [tuple(layer) for layer in layers]


class MLPGradient:
    """``grad L_B(w)`` for every chain, shape (K, p), with
    ``U_i = n * nll_i + prior_precision / 2 * |w|^2`` (the convention of :func:`from_module`)."""

    def __init__(self, layers, n: int, likelihood: str, prior_precision: float, inv_two_var: float = 0.5):
        self.layers = layers
        self.n = n
        self.likelihood = likelihood
        self.prior_precision = prior_precision
        self.inv_two_var = inv_two_var

    def _split(self, w: torch.Tensor):
        """Per layer (weight (K, out, in), bias (K, out) or None): views into w (parameter order of the
        module: weight then bias, layer by layer)."""
        k, at, out = w.shape[0], 0, []
        for o, i, has_bias, _ in self.layers:
            weight = w[:, at:at + o * i].view(k, o, i)
            at += o * i
            bias = None
            if has_bias:
                bias = w[:, at:at + o]
                at += o
            out.append((weight, bias))
        return out

    def __call__(self, w: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """``w`` (K, p); ``xb`` (K, b, in) or (1, b, in) shared by all chains; ``yb`` (K or 1, b[, out])."""
        k = w.shape[0]
        params = self._split(w)
        if xb.shape[0] != k:
            xb = xb.expand(k, *xb.shape[1:])
        b = xb.shape[1]
        inputs, outputs = [], []
        h = xb
        for (weight, bias), (_, _, _, act) in zip(params, self.layers):
            inputs.append(h)
            z = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2)) if bias is not None \
                else torch.bmm(h, weight.transpose(1, 2))
            h = z if act is None else (torch.tanh(z) if act is nn.Tanh else torch.relu(z))
            outputs.append(h)
        # d(mean_b n * nll_i) / d(network output), (K, b, out)
        if self.likelihood == "categorical":
            g = torch.softmax(h, dim=-1)
            if yb.shape[0] != k:
                yb = yb.expand(k, *yb.shape[1:])
            g.scatter_add_(-1, yb.unsqueeze(-1), torch.full(yb.shape + (1,), -1.0, dtype=g.dtype, device=g.device))
            g.mul_(self.n / b)
        else:
            g = (h - yb.reshape(yb.shape[0], b, -1)).mul_(2.0 * self.inv_two_var * self.n / b)
        grads = []
        for layer in reversed(range(len(self.layers))):
            weight, bias = params[layer]
            act = self.layers[layer][3]
            if act is nn.Tanh:
                g = g * (1 - outputs[layer] * outputs[layer])
            elif act is nn.ReLU:
                g = g * (outputs[layer] > 0)
            if bias is not None:
                grads.append(g.sum(1))
            grads.append(torch.bmm(g.transpose(1, 2), inputs[layer]).reshape(k, -1))
            if layer:
                g = torch.bmm(g, weight)
        flat = torch.cat(grads[::-1], dim=1)
        return flat.add_(w, alpha=self.prior_precision) if self.prior_precision else flat
