"""Stationary state of SGD near a minimum: covariance, circulation, velocity, entropy production.

Near a minimum ``w*`` with Hessian ``H`` and per-step diffusion ``D = D(w*)`` the update
``w_{n+1} = w_n - lr H (w_n - w*) + xi_n``, ``Cov[xi_n] = 2 D``, is (to leading order in ``lr``)
an Ornstein-Uhlenbeck process with drift ``-lr H`` per step. Its Fokker-Planck stationary state is
Gaussian, ``N(w_bar, Sigma)``, with (all per step; arXiv 2306.03521; docs/concepts.md, "SGD near a
minimum")::

    H Sigma + Sigma H = (2 / lr) D                  (continuous Lyapunov equation)
    Q = (lr / 2) (H Sigma - Sigma H)                (circulation, antisymmetric)
    v(w) = -Q Sigma^{-1} (w - w_bar)                (probability velocity J / P)
    Pi = -tr(Q D^{-1} Q Sigma^{-1}) = tr(Q^T D^{-1} Q Sigma^{-1}) >= 0
                                                    (mean entropy production per step)

and it is in equilibrium (``Q = 0``, ``Pi = 0``) iff ``[H, D] = 0``.

The same functions serve a general linear drift: pass ``symmetric=False`` and any stable drift
matrix ``H`` (an OU process ``dx = -B x dt + sqrt(2 D_c) dW`` sampled every ``dt`` is ``H = B``,
``lr = dt``, ``D = D_c dt``; a fitted drift from :mod:`sgworld.thermo.model_free` is ``H = K``,
``lr = 1``). Then ``H^T`` replaces ``H`` on the right of ``Sigma``:
``H Sigma + Sigma H^T = (2/lr) D`` and ``Q = (lr/2)(H Sigma - Sigma H^T)``. With
``discrete=True`` the covariance is the *exact* stationary covariance of the linear recursion
``w_{n+1} - w_bar = (I - lr H)(w_n - w_bar) + xi_n`` instead of its small-step limit.

Reference: S. Adhikari, A. Kabakçıoğlu, A. Strang, D. Yuret, M. Hinczewski, "Machine learning in
and out of equilibrium", arXiv:2306.03521.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np
import scipy.linalg

from .._checks import (
    SINGULAR_RCOND, SYMMETRY_RTOL, as_float64, check_minimum, check_positive, check_psd, check_square,
    check_symmetric,
)

__all__ = [
    "solve_lyapunov",
    "circulation",
    "velocity",
    "entropy_production_rate",
    "commutator_ratio",
    "inverse_diffusion",
    "StationaryState",
    "stationary_state",
]


# --------------------------------------------------------------------------- input checks


def _check_stable(A: np.ndarray, discrete: bool, lam: np.ndarray | None = None) -> None:
    """``A = lr * scale * H``: the drift per step must contract (continuous: Re eig > 0; discrete:
    spectral radius of ``I - A`` below 1). ``lam``: A's eigenvalues, if already known."""
    lam = np.linalg.eigvals(A) if lam is None else lam
    if discrete:
        radius = np.max(np.abs(1.0 - lam))
        if radius >= 1.0:
            raise ValueError(f"no stationary state: the linear map I - lr H has spectral radius {radius:.6g} >= 1 "
                             "(lr * h_max must stay below 2); reduce lr")
    else:
        worst = lam[np.argmin(lam.real)]
        if worst.real <= 0:
            raise ValueError(f"no stationary state: the drift matrix has eigenvalue {worst:.6g} with real part "
                             "<= 0 (not a stable / attracting point)")


def _cholesky(S: np.ndarray, name: str) -> np.ndarray:
    """Lower Cholesky factor of a symmetric positive definite matrix, with a clear error."""
    S = check_symmetric(S, name)
    try:
        return np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        lam = np.linalg.eigvalsh(S)
        raise ValueError(f"{name} must be positive definite; its smallest eigenvalue is {lam[0]:.6g}") from None


# --------------------------------------------------------------------------- the equations


def solve_lyapunov(H, D, lr: float, *, scale: float = 1.0, symmetric: bool = True,
                   discrete: bool = False) -> np.ndarray:
    r"""Stationary covariance ``Sigma`` of the linearised dynamics: ``lr*scale (H Sigma + Sigma H^T) = 2 D``.

    With the defaults this is ``H Sigma + Sigma H = (2 / lr) D`` (per-step diffusion ``D``, Hessian
    ``H``; docs/concepts.md, "SGD near a minimum"). For WOR, whose natural time unit is one epoch of ``M``
    steps, ``scale=M`` solves ``lr M (H Sigma + Sigma H) = 2 D_WOR`` with the per-epoch diffusion.

    Parameters
    ----------
    H : (p, p) array
        Hessian at the minimum (``symmetric=True``: must be symmetric positive definite), or any
        drift matrix whose eigenvalues have positive real part (``symmetric=False``).
    D : (p, p) array
        Diffusion per time unit (half the per-step noise covariance), symmetric PSD.
    lr : float
        Learning rate (time step); the drift per step is ``-lr * scale * H``.
    scale : float
        Steps per time unit of ``D`` (``M`` batches per epoch for WOR).
    symmetric : bool
        Require ``H`` symmetric positive definite (a Hessian at a minimum).
    discrete : bool
        Solve the exact discrete-time equation ``Sigma = F Sigma F^T + 2 D``, ``F = I - lr*scale*H``,
        i.e. the stationary covariance of the recursion itself rather than of its small-step
        (continuous-time) limit. Internally the Cayley transform ``A' = (2I - A)^{-1} A``,
        ``2 D' = 4 (2I - A)^{-1} D (2I - A)^{-T}`` (``A = lr*scale*H``) maps it to a continuous
        equation without forming ``I - A`` (which would lose ``A``'s digits when ``lr`` is tiny).

    Returns
    -------
    Sigma : (p, p) float64 array, symmetric positive semidefinite.

    Raises
    ------
    ValueError
        Non-finite input, shape mismatch, ``H`` not a minimum / not stable, ``D`` not symmetric
        PSD, ``lr`` or ``scale`` not > 0.
    """
    H = check_square(H, "H")
    p = H.shape[0]
    D = check_psd(check_square(D, "D", p))
    lr = check_positive("lr", lr)
    scale = check_positive("scale", scale)
    if symmetric:
        # A symmetric H decouples the equation in its eigenbasis H = V diag(h) V^T: with
        # a = lr*scale*h and R = V^T (2D) V, (a_i + a_j) S_ij = R_ij, or, discrete,
        # (1 - (1 - a_i)(1 - a_j)) S_ij = (a_i + a_j - a_i a_j) S_ij = R_ij (no 1 - a formed, so a
        # tiny lr keeps its digits), and Sigma = V S V^T. One eigh (plus four matrix products)
        # replaces the nonsymmetric eigenvalues of the stability check and the Schur-based solver.
        H = check_symmetric(H, "H")
        h, V = np.linalg.eigh(H)
        check_minimum(H, "the point", h)
        a = (lr * scale) * h
        _check_stable(None, discrete, a)
        denom = a[:, None] + a[None, :]
        if discrete:
            denom -= a[:, None] * a[None, :]
        Sigma = V @ ((V.T @ (2.0 * D) @ V) / denom) @ V.T
        if not np.all(np.isfinite(Sigma)):
            raise ValueError("the Lyapunov solution is not finite; H is probably numerically singular")
        return 0.5 * (Sigma + Sigma.T)
    A = (lr * scale) * H
    _check_stable(A, discrete)
    rhs = 2.0 * D
    if discrete:
        P = 2.0 * np.eye(p) - A
        A = np.linalg.solve(P, A)
        Pinv_rhs = np.linalg.solve(P, rhs)
        rhs = 2.0 * np.linalg.solve(P, Pinv_rhs.T).T  # 2 P^{-1} (2D) P^{-T}
        rhs = 0.5 * (rhs + rhs.T)
    try:
        Sigma = scipy.linalg.solve_continuous_lyapunov(A, rhs)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError, ValueError) as exc:
        raise ValueError(f"the Lyapunov equation could not be solved ({exc}); H is probably numerically "
                         "singular or badly scaled") from None
    if not np.all(np.isfinite(Sigma)):
        raise ValueError("the Lyapunov solution is not finite; H is probably numerically singular")
    return 0.5 * (Sigma + Sigma.T)


def circulation(H, Sigma, lr: float, *, scale: float = 1.0) -> np.ndarray:
    r"""Circulation ``Q = (lr*scale / 2) (H Sigma - Sigma H^T)`` (antisymmetric, per time unit).

    ``Q`` is the antisymmetric part of the stationary probability current: ``J = v P`` with
    ``v(w) = -Q Sigma^{-1}(w - w_bar)``; it is what the areal velocity of a trajectory measures
    (:func:`sgworld.thermo.trajectory.areal_velocity`). ``H^T = H`` for a Hessian. The formula is
    also exact for the discrete recursion ``F = I - lr H`` with its exact ``Sigma``: then
    ``Q = (Sigma F^T - F Sigma) / 2`` is exactly the expected areal velocity.

    Returns
    -------
    Q : (p, p) float64 array, ``Q^T = -Q``.
    """
    H = check_square(H, "H")
    Sigma = check_square(Sigma, "Sigma", H.shape[0])
    factor = 0.5 * check_positive("lr", lr) * check_positive("scale", scale)
    HS = H @ Sigma
    Q = factor * (HS - HS.T)  # Sigma H^T = (H Sigma)^T for a symmetric Sigma: one product, not two
    return 0.5 * (Q - Q.T)  # exact antisymmetry (round-off otherwise breaks it at ~1e-16)


def velocity(w, w_bar, Q, Sigma) -> np.ndarray:
    r"""Stationary probability velocity ``v(w) = J(w)/P(w) = -Q Sigma^{-1} (w - w_bar)``.

    Parameters
    ----------
    w : (..., p) array
        Points, any leading dimensions (e.g. ``(chains, steps, p)``).
    w_bar : (p,) array
        Stationary mean.
    Q, Sigma : (p, p) arrays
        Circulation and stationary covariance (``Sigma`` positive definite).

    Returns
    -------
    v : (..., p) float64 array (per time unit of ``Q``).
    """
    Q = check_square(Q, "Q")
    p = Q.shape[0]
    L = _cholesky(check_square(Sigma, "Sigma", p), "Sigma")
    w = as_float64(w, "w")
    w_bar = as_float64(w_bar, "w_bar")
    if w.shape[-1:] != (p,) or w_bar.shape != (p,):
        raise ValueError(f"w must have shape (..., {p}) and w_bar shape ({p},); got {w.shape} and {w_bar.shape}")
    dw = (w - w_bar).reshape(-1, p)
    x = np.linalg.solve(L.T, np.linalg.solve(L, dw.T))  # Sigma^{-1} dw^T, (p, n)
    return -(Q @ x).T.reshape(w.shape)


def inverse_diffusion(D, rcond: float | None = None) -> np.ndarray:
    r"""``D^{-1}`` for a symmetric PSD diffusion matrix, or its pseudo-inverse on the range of ``D``.

    Entropy production weighs currents by ``D^{-1}``: a direction without noise makes it infinite.

    Parameters
    ----------
    D : (p, p) array
    rcond : float, optional
        ``None`` (default): ``D`` must be positive definite (eigenvalue ratio above 1e-12), else a
        ``ValueError``. A number: pseudo-inverse keeping eigenvalues ``> rcond * lambda_max``, i.e.
        the entropy production restricted to the range of ``D`` (drops currents in noiseless
        directions; use only if the circulation has no component there).
    """
    D = check_psd(check_square(D, "D"))
    lam, V = np.linalg.eigh(D)
    if lam[-1] <= 0:
        raise ValueError("D is zero: without noise the entropy production is undefined")
    if rcond is None:
        if lam[0] <= SINGULAR_RCOND * lam[-1]:
            raise ValueError(
                f"D is singular (eigenvalues {lam[0]:.3g} .. {lam[-1]:.3g}): entropy production along directions "
                "without noise is infinite. Use more gradient noise (smaller batch, or add Langevin noise), or "
                "pass rcond (e.g. 1e-10) to use the pseudo-inverse restricted to the range of D")
        keep = np.ones_like(lam, dtype=bool)
    else:
        keep = lam > check_positive("rcond", rcond) * lam[-1]
    Vk = V[:, keep]
    Dinv = (Vk / lam[keep]) @ Vk.T
    return 0.5 * (Dinv + Dinv.T)


def entropy_production_rate(Q, D, Sigma, *, rcond: float | None = None) -> float:
    r"""Mean entropy production per time unit ``Pi = -tr(Q D^{-1} Q Sigma^{-1}) = <v^T D^{-1} v> >= 0``.

    Evaluated as the squared Frobenius norm ``|D^{-1/2} Q L^{-T}|^2`` (``Sigma = L L^T``), which is
    ``tr(Q^T D^{-1} Q Sigma^{-1})`` and therefore non-negative by construction.

    Parameters
    ----------
    Q : (p, p) array
        Circulation (antisymmetric).
    D : (p, p) array
        Diffusion (symmetric PD; see ``rcond`` for singular ``D``).
    Sigma : (p, p) array
        Stationary covariance (symmetric PD).
    rcond : float, optional
        Pseudo-inverse cut-off for singular ``D``; see :func:`inverse_diffusion`.

    Returns
    -------
    float, in the time unit of ``Q`` and ``D`` (per step for the SGD conventions).
    """
    Q = check_square(Q, "Q")
    p = Q.shape[0]
    Dinv = inverse_diffusion(check_square(D, "D", p), rcond)
    L = _cholesky(check_square(Sigma, "Sigma", p), "Sigma")
    QL = np.linalg.solve(L, Q.T).T  # Q L^{-T} (scipy's solve_triangular has ms of overhead per call)
    return float(np.vdot(QL, Dinv @ QL))  # tr(L^{-1} Q^T D^{-1} Q L^{-T}); a 3-operand einsum would loop in C, O(p^3) without BLAS


def commutator_ratio(H, D) -> float:
    r"""Non-equilibrium indicator ``|[H, D]|_F / |H D|_F`` (0 iff equilibrium for a Hessian ``H``)."""
    H = check_square(H, "H")
    D = check_square(D, "D", H.shape[0])
    HD = H @ D
    denom = np.linalg.norm(HD)
    if denom == 0:
        raise ValueError("H D is zero (no curvature or no noise): the commutator ratio is undefined")
    symmetric = np.array_equal(H, H.T) and np.array_equal(D, D.T)
    return float(np.linalg.norm(HD - (HD.T if symmetric else D @ H)) / denom)  # D H = (H D)^T if both symmetric


# --------------------------------------------------------------------------- bundled state


@dataclass(frozen=True, eq=False)
class StationaryState:
    """Gaussian stationary state ``N(mean, Sigma)`` of linearised SGD, with its current.

    Attributes (float64, read-only)
    ----------
    mean : (p,)     stationary mean ``w_bar``
    Sigma : (p, p)  stationary covariance
    Q : (p, p)      circulation (antisymmetric)
    D : (p, p)      diffusion per step
    H : (p, p)      drift matrix (Hessian for SGD; any stable matrix for a general linear drift)
    lr : float      learning rate (time step); the drift per step is ``-lr H``

    Derived (computed once, on first use): :attr:`ep_rate`, :attr:`commutator_ratio`, :attr:`lr_hmax`.
    Records of the theory (``WRTheory``, ``WORTheory``, ``TopKTheory``, ``LinearDriftFit``) hold one
    of these as ``state`` rather than copies of its fields.
    """

    mean: np.ndarray
    Sigma: np.ndarray
    Q: np.ndarray
    D: np.ndarray
    H: np.ndarray
    lr: float

    def __post_init__(self):
        for f in fields(self):
            if f.name == "lr":
                object.__setattr__(self, "lr", check_positive("lr", self.lr))
                continue
            arr = np.array(as_float64(getattr(self, f.name), f.name))  # private copy
            arr.setflags(write=False)
            object.__setattr__(self, f.name, arr)
        p = self.mean.shape[0] if self.mean.ndim == 1 else -1
        for name in ("Sigma", "Q", "D", "H"):
            if getattr(self, name).shape != (p, p):
                raise ValueError(f"StationaryState: mean must be (p,) and {name} (p, p); got mean "
                                 f"{self.mean.shape}, {name} {getattr(self, name).shape}")

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    @cached_property
    def ep_rate(self) -> float:
        """Mean entropy production per time step, ``-tr(Q D^{-1} Q Sigma^{-1})`` (:func:`entropy_production_rate`)."""
        return entropy_production_rate(self.Q, self.D, self.Sigma)

    @cached_property
    def commutator_ratio(self) -> float:
        """``|[H, D]|_F / |H D|_F``: 0 iff the state is in equilibrium (:func:`commutator_ratio`)."""
        return commutator_ratio(self.H, self.D)

    @cached_property
    def lr_hmax(self) -> float:
        """``lr h_max``, the time step times the largest eigenvalue of ``H`` (largest modulus for a
        non-symmetric drift): the small-step (Lyapunov) description needs it ``<< 1``, and at 2 the
        recursion has no stationary state. For WOR, whose time step is one epoch, it is ``lr M h_max``."""
        H = self.H
        if np.max(np.abs(H - H.T)) <= SYMMETRY_RTOL * np.max(np.abs(H)):
            h_max = float(np.linalg.eigvalsh(H)[-1])
        else:
            h_max = float(np.max(np.abs(np.linalg.eigvals(H))))
        return float(self.lr * h_max)

    def velocity(self, w) -> np.ndarray:
        """``v(w) = -Q Sigma^{-1} (w - mean)`` for ``w`` of shape ``(..., p)``."""
        return velocity(w, self.mean, self.Q, self.Sigma)


def stationary_state(H, D, lr: float, mean, *, symmetric: bool = True, discrete: bool = False) -> StationaryState:
    """Stationary state at a minimum: ``Sigma`` by :func:`solve_lyapunov`, ``Q`` by :func:`circulation`.

    Parameters
    ----------
    H, D, lr, symmetric, discrete
        As in :func:`solve_lyapunov` (for WOR pass ``lr * M`` and the per-epoch diffusion).
    mean : (p,) array
        Stationary mean (``w*`` for SGD with replacement; the minimum of ``L_eff`` for WOR).
    """
    H = check_square(H, "H")
    mean = as_float64(mean, "mean")
    if mean.shape != H.shape[:1]:
        raise ValueError(f"mean must have shape ({H.shape[0]},) to match H, got {mean.shape}")
    Sigma = solve_lyapunov(H, D, lr, symmetric=symmetric, discrete=discrete)
    Q = circulation(H, Sigma, lr)
    return StationaryState(mean=mean, Sigma=Sigma, Q=Q, D=D, H=H, lr=lr)
