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

from .._checks import check_class_labels, check_prior_std
from .base import Problem

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


def tanh(z: torch.Tensor) -> torch.Tensor:
    """``tanh z`` as ``2 sigmoid(2 z) - 1``: absolute error below 2 machine epsilons, and about twice as fast
    as ``torch.tanh`` in float64, eager and compiled (inductor turns it into one vectorised ``exp``; its
    float64 ``tanh`` is a slow vector function; benchmarks/PROFILE.md)."""
    return 2 * torch.sigmoid(2 * z) - 1


class MLPGradient:
    """``grad L_B(w)`` for every chain, shape (K, p), with
    ``U_i = n * nll_i + prior_precision / 2 * |w|^2`` (the convention of :func:`from_module`)."""

    def __init__(self, layers, n: int, likelihood: str, prior_precision: float, inv_two_var: float = 0.5,
                 reference_class: bool = False):
        self.layers = layers
        self.n = n
        self.likelihood = likelihood
        self.reference_class = reference_class  # categorical: logits [0, f(x; w)] (see ReferenceClassMLP)
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
        # Hidden activations are (K, b, features), the network's output (K, out, b): the softmax over
        # classes and every bias gradient then reduce over an outer dimension, which compiles to full-width
        # vector code along the contiguous one (rather than short rows of C classes or b samples).
        last = len(self.layers) - 1
        inputs, outputs = [], []
        h = xb
        for layer, ((weight, bias), (_, _, _, act)) in enumerate(zip(params, self.layers)):
            inputs.append(h)
            if layer == last:
                z = torch.baddbmm(bias.unsqueeze(2), weight, h.transpose(1, 2)) if bias is not None \
                    else torch.bmm(weight, h.transpose(1, 2))
            else:
                z = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2)) if bias is not None \
                    else torch.bmm(h, weight.transpose(1, 2))
            h = z if act is None else (tanh(z) if act is nn.Tanh else torch.relu(z))
            outputs.append(h)
        # d(mean_b n * nll_i) / d(network output), (K, out, b)
        if self.likelihood == "categorical":
            logits = torch.cat([torch.zeros_like(h[:, :1]), h], 1) if self.reference_class else h
            if yb.shape[0] != k:
                yb = yb.expand(k, *yb.shape[1:])
            classes = torch.arange(logits.shape[1], device=h.device).unsqueeze(1)
            # out of place: softmax's backward needs its output (L_eff differentiates through this gradient)
            g = torch.softmax(logits, dim=1) - (classes == yb.unsqueeze(1)).to(h.dtype)
            g = (g[:, 1:] if self.reference_class else g) * (self.n / b)
        else:
            g = (h - yb.reshape(yb.shape[0], b, -1).transpose(1, 2)).mul_(2.0 * self.inv_two_var * self.n / b)
        grads = []
        for layer in reversed(range(len(self.layers))):
            weight, bias = params[layer]
            act = self.layers[layer][3]
            if act is nn.Tanh:
                g = g * (1 - outputs[layer] * outputs[layer])
            elif act is nn.ReLU:
                g = g * (outputs[layer] > 0)
            if layer == last:   # g (K, out, b)
                if bias is not None:
                    grads.append(g.sum(2))
                grads.append(torch.bmm(g, inputs[layer]).reshape(k, -1))
                g = torch.bmm(g.transpose(1, 2), weight) if layer else None
            else:               # g (K, b, out)
                if bias is not None:
                    grads.append(g.sum(1))
                grads.append(torch.bmm(g.transpose(1, 2), inputs[layer]).reshape(k, -1))
                g = torch.bmm(g, weight) if layer else None
        flat = torch.cat(grads[::-1], dim=1)
        return flat.add_(w, alpha=self.prior_precision) if self.prior_precision else flat


class ReferenceClassMLP(Problem):
    r"""A tanh MLP classifier with class 0 as the reference class: ``p(c | x, w) = softmax([0, f(x; w)])_c``.

    ``f`` maps d inputs through ``hidden`` tanh layers to C - 1 logits (``Linear`` layers with biases, the
    parameter order of ``nn.Sequential``: weight then bias, layer by layer). With all C logits free, adding
    one function to every logit leaves the likelihood unchanged, so the per-sample gradients miss the
    last layer's ``hidden[-1] + 1`` gauge directions and S, D are singular; the reference class removes
    them. ``U_i(w) = -N log p(y_i | x_i, w) + |w|^2 / (2 prior_std^2)``. ``batch_grad`` is the hand-batched
    gradient of :class:`MLPGradient`; the potential is a plain torch function for ``torch.func``.
    The initial point has weights ``N(0, 1 / fan_in)`` (seeded) and zero biases.
    """

    def __init__(self, x, y, num_classes: int, hidden=(32,), prior_std: float = 1.0, seed: int = 0,
                 dtype: torch.dtype = torch.float64):
        x = torch.as_tensor(x, dtype=dtype)
        if x.ndim != 2:
            raise ValueError(f"x must be (N, features), got shape {tuple(x.shape)}")
        y = check_class_labels(y, int(num_classes), missing="refuse",
                               fix="every class needs training samples (an absent class makes S and D singular)")
        if y.shape != x.shape[:1]:
            raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}; give one label per sample")
        hidden = tuple(int(h) for h in hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden must list one or more layer widths >= 1, got {hidden}")
        _, precision = check_prior_std(prior_std)
        widths = (x.shape[1], *hidden, int(num_classes) - 1)
        self.layers = [(o, i, True, nn.Tanh) for i, o in zip(widths[:-2], widths[1:-1])] + \
                      [(widths[-1], widths[-2], True, None)]
        self.num_classes, self.precision = int(num_classes), precision
        self.scale = float(x.shape[0])
        self._grad = MLPGradient(self.layers, x.shape[0], "categorical", precision, reference_class=True)
        gen = torch.Generator().manual_seed(int(seed))
        init = []
        for o, i, _, _ in self.layers:
            init += [torch.randn(o * i, generator=gen, dtype=dtype) / i**0.5, torch.zeros(o, dtype=dtype)]
        dim = sum(o * i + o for o, i, _, _ in self.layers)
        super().__init__(self._potential, (x, y), dim, initial=torch.cat(init), name="reference_class_mlp")

    def logits(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[0, f(x; w)]`` of inputs ``x`` (n, d) for parameters ``w`` (p,) or (S, p): (n, C) or (S, n, C)."""
        single = w.ndim == 1
        h = x.unsqueeze(0).expand(1 if single else w.shape[0], *x.shape)
        for (weight, bias), (_, _, _, act) in zip(self._grad._split(w.reshape(-1, self.dim)), self.layers):
            h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            h = torch.tanh(h) if act is not None else h
        out = torch.cat([torch.zeros_like(h[..., :1]), h], -1)
        return out[0] if single else out

    def _potential(self, w, x, y):
        nll = -torch.log_softmax(self.logits(w, x), -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        return self.scale * nll + 0.5 * self.precision * (w * w).sum()

    def batch_loss(self, w, idx=None):
        """``L_B(w)`` (or ``L`` when ``idx`` is None) for every chain, (K,): batched forward passes."""
        self.check_params(w)
        x, y = self.data if idx is None else self.gather(idx)
        if idx is None:
            x, y = x.expand(w.shape[0], *x.shape), y.expand(w.shape[0], *y.shape)
        h = x
        for (weight, bias), (_, _, _, act) in zip(self._grad._split(w), self.layers):
            h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            h = torch.tanh(h) if act is not None else h
        logp = torch.log_softmax(torch.cat([torch.zeros_like(h[..., :1]), h], -1), -1)
        nll = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(1)
        return self.scale * nll + 0.5 * self.precision * (w * w).sum(1)

    def batch_grad(self, w, idx=None):
        self.check_params(w)
        x, y = self.data
        if idx is None:
            return self._grad(w, x.unsqueeze(0), y.unsqueeze(0))
        return self._grad(w, x[idx], y[idx])
