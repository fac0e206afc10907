"""Exact transition matrices of HMC, look-ahead HMC and Markov-jump HMC on a ring energy ladder.

The ladder (Berger et al. 2015, spectral-gap figure): n energies ``E_0 .. E_{n-1}`` on a ring and
2n states ``(i, s)``, s = +1 / -1 the direction of the momentum, with

    L (i, s) = (i + s mod n, s),    F (i, s) = (i, -s),    p(i, s) ~ exp(-E_i),

so ``F L F L`` is the identity, as for leapfrog. The matrices use the kernels' own probability and
rate functions (:class:`sgworld.samplers.lahmc.CumulativeLeapProbabilities`,
:func:`sgworld.samplers.mjhmc.log_rates`), so exact checks on them (``p T = p``, ``p Q = 0``) check the
code the samplers run. State index ``2 i`` is ``(i, +1)`` and ``2 i + 1`` is ``(i, -1)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..samplers.lahmc import CumulativeLeapProbabilities
from ..samplers.mjhmc import log_rates


def _states(n: int):
    i = np.repeat(np.arange(n), 2)
    s = np.tile([1, -1], n)
    return i, s


def _index(i, s, n: int):
    return 2 * (np.asarray(i) % n) + (np.asarray(s) == -1)


def stationary_law(energies) -> np.ndarray:
    """``p(i, s) ~ exp(-E_i)`` over the 2n states."""
    e = np.repeat(np.asarray(energies, dtype=float), 2)
    w = np.exp(-(e - e.min()))
    return w / w.sum()


def lahmc_matrix(energies, look_ahead: int) -> np.ndarray:
    """(2n, 2n) transition matrix of look-ahead HMC (no momentum refresh); ``look_ahead = 1`` is HMC."""
    e = np.asarray(energies, dtype=float)
    n = e.size
    i, s = _states(n)
    along = [torch.tensor(e[(i + a * s) % n]) for a in range(look_ahead + 1)]   # H(L^a zeta) for every state
    pi = CumulativeLeapProbabilities(along).transition_probabilities(look_ahead).numpy()   # (2n, K+1)
    T = np.zeros((2 * n, 2 * n))
    rows = np.arange(2 * n)
    np.add.at(T, (rows, _index(i, -s, n)), pi[:, 0])
    for a in range(1, look_ahead + 1):
        np.add.at(T, (rows, _index(i + a * s, s, n)), pi[:, a])
    return T


def mjhmc_rates(energies, refresh_rate: float = 0.0) -> np.ndarray:
    """(2n, 2n) jump rates of Markov-jump HMC, ``W[a, b]`` from state a to b: ``Gamma_L``, ``Gamma_F`` and
    the resample (rate ``refresh_rate``), which draws the direction afresh, +1 or -1 with probability 1/2
    (the half that keeps it is a jump onto the same state, on the diagonal)."""
    e = np.asarray(energies, dtype=float)
    n = e.size
    i, s = _states(n)
    h = torch.tensor(e[i])
    log_gamma = math.log(refresh_rate) if refresh_rate > 0 else -math.inf
    log_l, log_f, _, _ = log_rates(h, torch.tensor(e[(i + s) % n]), torch.tensor(e[(i - s) % n]), log_gamma)
    W = np.zeros((2 * n, 2 * n))
    rows = np.arange(2 * n)
    np.add.at(W, (rows, _index(i + s, s, n)), log_l.exp().numpy())
    np.add.at(W, (rows, _index(i, -s, n)), log_f.exp().numpy())
    np.add.at(W, (rows, _index(i, s, n)), refresh_rate / 2)
    np.add.at(W, (rows, _index(i, -s, n)), refresh_rate / 2)
    return W


def mjhmc_generator(energies, refresh_rate: float = 0.0) -> np.ndarray:
    """The generator ``Q = W - diag(W 1)`` of the jump process (rows sum to 0); ``p Q = 0`` at stationarity."""
    W = mjhmc_rates(energies, refresh_rate)
    return W - np.diag(W.sum(1))


def mjhmc_jump_chain(energies, refresh_rate: float = 0.0) -> np.ndarray:
    """The embedded jump chain ``P = W / Gamma_tot``; its stationary law is ``p Gamma_tot``, not p."""
    W = mjhmc_rates(energies, refresh_rate)
    return W / W.sum(1, keepdims=True)


def spectral_gap(P: np.ndarray) -> float:
    """``1 - |lambda_2|`` of a transition matrix (the second-largest eigenvalue modulus)."""
    moduli = np.sort(np.abs(np.linalg.eigvals(P)))[::-1]
    return float(1.0 - moduli[1])


def generator_gap(Q: np.ndarray) -> float:
    """The relaxation rate of a generator: the smallest ``-Re lambda`` over its non-zero eigenvalues."""
    re = np.sort(-np.linalg.eigvals(Q).real)
    return float(re[1])
