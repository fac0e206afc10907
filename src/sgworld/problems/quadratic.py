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
import torch.nn.functional as F

from .._checks import check_finite, check_full_column_rank, check_positive, check_prior_std
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
        return self.A.double().cpu().numpy(), self.g.double().cpu().numpy()

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

    def h_max(self) -> float:
        """Largest eigenvalue of the (constant) Hessian ``H = mean_i A_i``."""
        return float(torch.linalg.eigvalsh(self.hessian().double())[-1])

    def equal_sample_hessians(self) -> bool:
        """Whether every per-sample Hessian ``A_i`` is the same (then so is every batch's)."""
        return bool(torch.equal(self.A, self.A[:1].expand_as(self.A)))

    def lr_limit(self, scheme: str | None = None) -> float | None:
        """The step size ``2 / h_max`` at and above which the update rule with this ``scheme`` (None: full
        batch) has no stationary state and its chains diverge geometrically (see :mod:`sgworld.divergence`).

        Exact for full batch and the step-wise schemes (``wr``, ``iid``), whose mean moves by ``I - lr H``
        each step, and for every scheme when all per-sample Hessians are equal (every step then contracts
        by ``I - lr H``). For epoch schemes with unequal per-sample Hessians an epoch's product of
        different batch maps can contract beyond it: None (no up-front limit; growth is still detected).
        """
        h = self.h_max()
        if h > 0 and (scheme in (None, "wr", "iid") or self.equal_sample_hessians()):
            return 2.0 / h
        return None


class BayesianLinearRegression(QuadraticProblem):
    """Bayesian linear regression ``y_i ~ N(x_i^T w, sigma^2)``, prior ``w ~ N(0, tau^2 I)``.

    ``U_i(w) = N (y_i - x_i^T w)^2 / (2 sigma^2) + |w|^2 / (2 tau^2)``; the posterior is Gaussian
    with covariance ``(X^T X / sigma^2 + I / tau^2)^{-1}`` and mean ``cov X^T y / sigma^2``.
    ``prior_std=None`` drops the prior (``1 / tau^2 = 0``, a flat prior): the posterior is then
    ``N((X^T X)^{-1} X^T y, sigma^2 (X^T X)^{-1})``, the least-squares fit, which is proper only when X
    has full column rank; a rank-deficient X without a prior is refused.
    The data are ``(X, y)``; the per-sample Hessians ``A`` (N, d, d) of :class:`QuadraticProblem` are
    formed only when asked for (``quadratic_terms``, the exact theory), not for sampling.
    """

    def __init__(self, X, y, noise_std: float = 1.0, prior_std: float | None = 1.0,
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
        self.prior_std, self.prior_precision = check_prior_std(prior_std)
        if self.prior_std is None:
            check_full_column_rank("X", X, "without a prior (prior_std=None) the posterior is improper; "
                                   "give prior_std or drop the collinear columns")
        self.X, self.y = X, y
        self.scale = X.shape[0] / self.noise_std**2   # N / sigma^2
        Problem.__init__(self, self._regression_potential, (X, y), X.shape[1], name="bayesian_linear_regression")

    def _regression_potential(self, w, X, y):
        r = y - X @ w
        return 0.5 * self.scale * r * r + 0.5 * self.prior_precision * (w * w).sum()

    @property
    def A(self) -> torch.Tensor:
        """Per-sample Hessians ``N x_i x_i^T / sigma^2 + I / tau^2``, (N, d, d)."""
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.device) * self.prior_precision
        return self.scale * self.X[:, :, None] * self.X[:, None, :] + eye

    @property
    def g(self) -> torch.Tensor:
        """Per-sample linear terms ``N y_i x_i / sigma^2``, (N, d)."""
        return self.scale * self.y[:, None] * self.X

    def equal_sample_hessians(self) -> bool:
        """False: ``N x_i x_i^T / sigma^2 + I / tau^2`` differ unless every ``x_i`` is the same up to sign,
        which is not checked (it would form the N per-sample Hessians)."""
        return False

    def hessian(self, w=None, chunk_size: int = 4096):
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.device)
        return self.scale * self.X.T @ self.X / self.n + eye * self.prior_precision

    def target(self, temperature: float = 1.0) -> Gaussian:
        H = self.hessian().double().cpu().numpy()
        cov = np.linalg.inv(H)
        mean = cov @ (self.scale * self.X.T.double() @ self.y.double() / self.n).cpu().numpy()
        return Gaussian(mean=mean, cov=temperature * 0.5 * (cov + cov.T))

    def batch_grad(self, w, idx=None):
        # O(K b d), gathering rows with index_select (several times faster than advanced indexing).
        self.check_params(w)
        if idx is None:
            resid = w @ self.X.T - self.y                                       # (K, N)
            return self.scale * resid @ self.X / self.n + w * self.prior_precision
        X = self.X.index_select(0, idx.reshape(-1)).view(*idx.shape, self.dim)  # (K, b, d)
        resid = (X * w.unsqueeze(1)).sum(-1) - self.y[idx]                     # (K, b)
        if torch.compiler.is_compiling():
            # sample()'s compiled blocks, which take no derivatives: sum_i resid_ki x_(idx_ki) as an embedding
            # bag, so that the gather above is fused into the residuals and never formed (about 3x faster)
            g = F.embedding_bag(idx, self.X, mode="sum", per_sample_weights=resid)
        else:  # differentiable (torch.func takes Hessians and jvps of this gradient)
            g = (resid.unsqueeze(1) @ X).squeeze(1)
        return g.mul_(self.scale / idx.shape[1]).add_(w, alpha=self.prior_precision)


class GaussianLocation(QuadraticProblem):
    """Unknown mean ``mu`` of ``y_i ~ N(mu, sigma^2 I)`` with prior ``mu ~ N(0, tau^2 I)``.

    ``U_i(mu) = N |y_i - mu|^2 / (2 sigma^2) + |mu|^2 / (2 tau^2)``. All per-sample Hessians are equal,
    so minibatch noise only enters through the linear terms. The posterior is
    ``N(N ybar / sigma^2 / (N / sigma^2 + 1 / tau^2), I / (N / sigma^2 + 1 / tau^2))``;
    ``prior_std=None`` drops the prior (flat), leaving ``N(ybar, sigma^2 / N I)``, proper for any N >= 1.
    """

    def __init__(self, y, noise_std: float = 1.0, prior_std: float | None = 1.0,
                 dtype: torch.dtype = torch.float64):
        y = torch.as_tensor(y, dtype=dtype)
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2:
            raise ValueError(f"y must have shape (N,) or (N, d), got {tuple(y.shape)}")
        check_finite("y", y)
        self.noise_std = check_positive("noise_std", noise_std)
        self.prior_std, self.prior_precision = check_prior_std(prior_std)
        n, d = y.shape
        scale = n / self.noise_std**2
        A = (scale + self.prior_precision) * torch.eye(d, dtype=dtype).expand(n, d, d).clone()
        super().__init__(A, scale * y, name="gaussian_location", dtype=dtype)
