"""A model file for ``sgworld run samplers --model examples/classifier_model.py`` (or ``nonequilibrium``).

The factory ``make`` returns the network, its likelihood and the data: a 2-8-3 tanh network classifying
three overlapping Gaussian blobs in the plane (300 training points, 300 held out), with a standard normal
prior on every weight. Any ``nn.Module`` works the same way; without ``X`` and ``y`` in the dict the data
come from ``--data FILE.npz`` (arrays ``X``, ``y``) or ``--data FILE.csv`` (``y`` the last column).

    sgworld run samplers --model examples/classifier_model.py --quick --out runs/samplers
"""

import numpy as np
import torch
from torch import nn

CENTRES = np.array([[0.0, 1.0], [-0.9, -0.5], [0.9, -0.5]])


def blobs(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CENTRES), n)
    return CENTRES[y] + 0.6 * rng.standard_normal((n, 2)), y


def make():
    X, y = blobs(300, seed=0)
    X_test, y_test = blobs(300, seed=1)
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 3))
    return {"module": module, "likelihood": "categorical", "X": X, "y": y, "prior_std": 1.0,
            "X_test": X_test, "y_test": y_test}
