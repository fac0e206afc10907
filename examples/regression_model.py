"""A model file for ``sgworld run nonequilibrium --model examples/regression_model.py`` (or ``samplers``).

The factory ``make`` returns a small nonlinear regression network and its data: a 1-3-1 tanh network
(10 weights) fitted to ``y = sin(2 x) + 0.1 noise`` at 200 points on [-2, 2], with a Gaussian likelihood
(noise_std 0.1) and a Gaussian prior (prior_std 1) on every weight. Wider networks can reach minima
with duplicate hidden units, where the per-sample gradients agree along the swap of two units: the
gradient noise then misses that direction, D is singular and the analysis says so. Any ``nn.Module``
works the same way; without ``X`` and ``y`` in the dict the data come from ``--data FILE.npz`` (arrays ``X``, ``y``) or
``--data FILE.csv`` (``y`` the last column).

    sgworld run nonequilibrium --model examples/regression_model.py --quick --out runs/nonequilibrium
"""

import numpy as np
import torch
from torch import nn


def data(n: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = np.linspace(-2.0, 2.0, n)[:, None]
    return X, np.sin(2 * X[:, 0]) + 0.1 * rng.standard_normal(n)


def make():
    X, y = data()
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(1, 3), nn.Tanh(), nn.Linear(3, 1))
    return {"module": module, "likelihood": "gaussian", "X": X, "y": y, "noise_std": 0.1, "prior_std": 1.0}
