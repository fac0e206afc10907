"""The three workloads: data (numpy, shared by every contender), sizes, and cost per chain-step.

W1  the paper's 7-parameter tanh network, N = 200, b = 10 (arXiv 2306.03521)
W2  Bayesian linear regression, d = 100, N = 10,000, b = 100
W3  an MLP 64-32-10 (tanh) with a categorical likelihood on the digits data, b = 32

Every workload is written as ``U_i(w) = -N log p(y_i | x_i, w) - log p(w)`` (docs/concepts.md) and each
contender receives the same data, step size, temperature, batch size and initial point.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Workload:
    name: str
    title: str
    n: int
    b: int
    dim: int
    chains: tuple
    lr: float
    data: dict = field(repr=False)
    init: np.ndarray = field(repr=False)
    data_note: str = ""

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.b


def w1(chains=(1, 64, 1024, 16384)) -> Workload:
    """The paper's regression example: x on -3.0 : 0.03 : 2.97, y = exp(-x^2) + 0.1 noise."""
    x = np.linspace(-3.0, 2.97, 200)
    y = np.exp(-x * x) + 0.1 * np.random.default_rng(0).standard_normal(200)
    init = np.array([1.0, -1.0, 1.5, 1.5, 0.5, -0.5, 0.0])
    return Workload("W1", "tanh regression network (p = 7), N = 200, b = 10", 200, 10, 7, chains, 1e-7,
                    {"x": x, "y": y, "noise_std": 0.1, "lam": 1e-3}, init, "generated as in the paper (seed 0)")


def w2(chains=(256,)) -> Workload:
    rng = np.random.default_rng(1)
    n, d = 10_000, 100
    X = rng.standard_normal((n, d)) / np.sqrt(d)
    w_true = rng.standard_normal(d)
    y = X @ w_true + 0.5 * rng.standard_normal(n)
    return Workload("W2", "Bayesian linear regression, d = 100, N = 10,000, b = 100", n, 100, d, chains, 1e-5,
                    {"X": X, "y": y, "noise_std": 0.5, "prior_std": 1.0}, np.zeros(d), "synthetic Gaussian design")


def w3(chains=(64,)) -> Workload:
    try:
        from sgworld.datasets import load_digits  # noqa: PLC0415
        digits = load_digits()
        X = np.concatenate([digits.x_train, digits.x_test]).reshape(-1, 64) / 16.0
        y = np.concatenate([digits.y_train, digits.y_test]).astype(np.int64)
        note = "sgworld.datasets.load_digits"
    except Exception:  # the loader is optional here: the cost per step does not depend on the values
        rng = np.random.default_rng(2)
        X = rng.integers(0, 17, size=(1797, 64)).astype(np.float64) / 16.0
        y = rng.integers(0, 10, size=1797)
        note = "synthetic data of the digits' shape (1797 x 64 inputs in [0, 1], 10 classes)"
    sizes = [(64, 32), (32, 10)]
    rng = np.random.default_rng(3)
    parts = []
    for fan_in, fan_out in sizes:  # parameter order of nn.Sequential: weight (out, in), then bias
        bound = 1 / np.sqrt(fan_in)
        parts += [rng.uniform(-bound, bound, fan_out * fan_in), rng.uniform(-bound, bound, fan_out)]
    init = np.concatenate(parts)
    return Workload("W3", "MLP 64-32-10 (tanh), categorical likelihood, digits, b = 32", X.shape[0], 32, init.size,
                    chains, 1e-5, {"X": X, "y": y, "prior_std": 1.0}, init, note)


WORKLOADS = {"W1": w1, "W2": w2, "W3": w3}


def cost(workload: Workload, itemsize: int) -> dict:
    """Arithmetic (FLOPs) and memory traffic (bytes) of one chain-step: gradient of the batch
    potential plus the Langevin update, counting a tanh / exp as one operation and the bytes that a
    fused implementation must move (indices, gathered data, parameters read, written and noise)."""
    b, p = workload.b, workload.dim
    update_flops = 4 * p                        # w - lr g + s xi, prior term
    param_bytes = 4 * p * itemsize              # read w, read noise, write w, gradient round trip
    if workload.name == "W1":
        flops = b * 31 + update_flops           # forward 13, backward 18 per sample
        data = b * 2 * itemsize
    elif workload.name == "W2":
        d = workload.dim
        flops = b * 4 * d + update_flops        # x.w and the residual-weighted sum of x
        data = b * (d + 1) * itemsize
    else:
        layers = [(64, 32), (32, 10)]
        mac = sum(i * o for i, o in layers)
        flops = b * (2 * mac                    # forward
                     + 2 * mac                  # weight gradients
                     + 2 * 32 * 10              # gradient through the second layer's inputs
                     + 4 * 32 + 5 * 10) + update_flops
        data = b * 64 * itemsize
    return {"flops": flops, "bytes": data + b * 8 + param_bytes}
