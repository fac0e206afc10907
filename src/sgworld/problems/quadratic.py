"""Exactly solvable problems: quadratic per-sample potentials with closed-form posteriors.

``U_i(w) = 1/2 w^T A_i w - g_i^T w + c_i``: the full loss has Hessian ``H = mean_i A_i`` and
minimiser ``H^{-1} mean_i g_i``; the target ``exp(-L/T)`` is the Gaussian ``N(H^{-1} gbar, T H^{-1})``.
Because every batch gradient is affine in w, the exact discrete-time stationary moments of every
sampler and minibatch scheme are computable (``sgworld.theory.exact``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_finite, check_positive
from .base import Problem


@dataclass(frozen=True)
class Gaussian:
    """A Gaussian distribution given by its mean (p,) and covariance (p, p)."""

    mean: np.ndarray
    cov: np.ndarray


class QuadraticProblem(Problem):
    """Per-sample quadratic potentials from their Hessians ``A`` (N, p, p) and linear terms ``g`` (N, p)."""

    def __init__(self, hessians: torch.Tensor, linear: torch.Tensor, *, name: str = "quadratic",
                 dtype: torch.dtype = torch.float64):
        A = torch.as_tensor(hessians, dtype=dtype)
        g = torch.as_tensor(linear, dtype=dtype)
        if A.ndim != 3 or A.shape[1] != A.shape[2]:
            raise ValueError(f"hessians must have shape (N, p, p), got {tuple(A.shape)}")
        if g.shape != A.shape[:2]:
            raise ValueError(f"linear terms must have shape {tuple(A.shape[:2])} to match hessians, got {tuple(g.shape)}")
        if not torch.allclose(A, A.transpose(1, 2)):
            raise ValueError("per-sample hessians must be symmetric")
        self.A, self.g = A, g
        super().__init__(self._quadratic_potential, (A, g), A.shape[1], name=name)

    @staticmethod
    def _quadratic_potential(w, A, g):
        return 0.5 * torch.einsum("i,bij,j->b", w, A, w) - g @ w

    def quadratic_terms(self) -> tuple[np.ndarray, np.ndarray]:
        """``(A, g)`` as float64 numpy arrays, the input of ``sgworld.theory.exact``."""
        return self.A.double().numpy(), self.g.double().numpy()

    def batch_grad(self, w, idx=None):
        self.check_params(w)
        if idx is None:
            return w @ self.A.mean(0) - self.g.mean(0)
        return torch.einsum("kbij,kj->ki", self.A[idx], w) / idx.shape[1] - self.g[idx].mean(1)

    def target(self, temperature: float = 1.0) -> Gaussian:
        """The exact target ``exp(-L/T)``: ``N(H^{-1} gbar, T H^{-1})`` (the posterior at T = 1)."""
        A, g = self.quadratic_terms()
        H = A.mean(0)
        cov = np.linalg.inv(H)
        return Gaussian(mean=cov @ g.mean(0), cov=temperature * 0.5 * (cov + cov.T))

    def hessian(self, w=None, chunk_size: int = 4096):
        return self.A.mean(0)


class BayesianLinearRegression(QuadraticProblem):
    """Bayesian linear regression ``y_i ~ N(x_i^T w, sigma^2)``, prior ``w ~ N(0, tau^2 I)``.

    ``U_i(w) = N (y_i - x_i^T w)^2 / (2 sigma^2) + |w|^2 / (2 tau^2)``; the posterior is Gaussian
    with covariance ``(X^T X / sigma^2 + I / tau^2)^{-1}`` and mean ``cov X^T y / sigma^2``.
    The data are ``(X, y)``; the per-sample Hessians ``A`` (N, d, d) of :class:`QuadraticProblem` are
    formed only when asked for (``quadratic_terms``, the exact theory), not for sampling.
    """

    def __init__(self, X, y, noise_std: float = 1.0, prior_std: float = 1.0,
                 dtype: torch.dtype = torch.float64):
        X = torch.as_tensor(X, dtype=dtype)
        y = torch.as_tensor(y, dtype=dtype)
        if X.ndim != 2:
            raise ValueError(f"X must have shape (N, d), got {tuple(X.shape)}")
        if y.shape != (X.shape[0],):
            raise ValueError(f"y must have shape ({X.shape[0]},) to match X {tuple(X.shape)}, got {tuple(y.shape)}")
        check_finite("X", X)
        check_finite("y", y)
        self.noise_std = check_positive("noise_std", noise_std)
        self.prior_std = check_positive("prior_std", prior_std)
        self.X, self.y = X, y
        self.scale = X.shape[0] / self.noise_std**2   # N / sigma^2
        Problem.__init__(self, self._regression_potential, (X, y), X.shape[1], name="bayesian_linear_regression")

    def _regression_potential(self, w, X, y):
        r = y - X @ w
        return 0.5 * self.scale * r * r + 0.5 * (w * w).sum() / self.prior_std**2

    @property
    def A(self) -> torch.Tensor:
        """Per-sample Hessians ``N x_i x_i^T / sigma^2 + I / tau^2``, (N, d, d)."""
        eye = torch.eye(self.dim, dtype=self.dtype) / self.prior_std**2
        return self.scale * self.X[:, :, None] * self.X[:, None, :] + eye

    @property
    def g(self) -> torch.Tensor:
        """Per-sample linear terms ``N y_i x_i / sigma^2``, (N, d)."""
        return self.scale * self.y[:, None] * self.X

    def hessian(self, w=None, chunk_size: int = 4096):
        return self.scale * self.X.T @ self.X / self.n + torch.eye(self.dim, dtype=self.dtype) / self.prior_std**2

    def target(self, temperature: float = 1.0) -> Gaussian:
        H = self.hessian().double().numpy()
        cov = np.linalg.inv(H)
        mean = cov @ (self.scale * self.X.T.double() @ self.y.double() / self.n).numpy()
        return Gaussian(mean=mean, cov=temperature * 0.5 * (cov + cov.T))

    def batch_grad(self, w, idx=None):
        # O(K b d), gathering rows with index_select (several times faster than advanced indexing).
        self.check_params(w)
        if idx is None:
            resid = w @ self.X.T - self.y                                       # (K, N)
            return self.scale * resid @ self.X / self.n + w / self.prior_std**2
        flat = idx.reshape(-1)
        X = self.X.index_select(0, flat).view(*idx.shape, self.dim)            # (K, b, d)
        y = self.y.index_select(0, flat).view(idx.shape)
        resid = (X * w.unsqueeze(1)).sum(-1) - y                                # (K, b)
        return (resid.unsqueeze(1) @ X).squeeze(1).mul_(self.scale / idx.shape[1]).add_(w, alpha=1 / self.prior_std**2)


class GaussianLocation(QuadraticProblem):
    """Unknown mean ``mu`` of ``y_i ~ N(mu, sigma^2 I)`` with prior ``mu ~ N(0, tau^2 I)``.

    ``U_i(mu) = N |y_i - mu|^2 / (2 sigma^2) + |mu|^2 / (2 tau^2)``. All per-sample Hessians are equal,
    so minibatch noise only enters through the linear terms.
    """

    def __init__(self, y, noise_std: float = 1.0, prior_std: float = 1.0, dtype: torch.dtype = torch.float64):
        y = torch.as_tensor(y, dtype=dtype)
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2:
            raise ValueError(f"y must have shape (N,) or (N, d), got {tuple(y.shape)}")
        check_finite("y", y)
        self.noise_std = check_positive("noise_std", noise_std)
        self.prior_std = check_positive("prior_std", prior_std)
        n, d = y.shape
        scale = n / self.noise_std**2
        A = (scale + 1 / self.prior_std**2) * torch.eye(d, dtype=dtype).expand(n, d, d).clone()
        super().__init__(A, scale * y, name="gaussian_location", dtype=dtype)
