"""Exact discrete-time stationary moments of stochastic-gradient samplers on quadratic potentials.

Per-sample potentials ``U_i(w) = 1/2 w^T A_i w - g_i^T w + c_i`` (i = 1..N, each ``A_i``
symmetric; only their mean ``H = mean_i A_i`` need be positive definite), so the minibatch gradient
``grad L_B(w) = A_B w - g_B`` (``A_B = mean_{i in B} A_i``, ``g_B = mean_{i in B} g_i``) is affine in
``w`` and *linear in the batch means* ``(A_B, g_B)``. Every sampler of the family is then one
*random affine map* per step of its state ``x`` (dimension d)::

    x <- x + K_B x + c_B + eta,     eta ~ N(0, Q) independent of the past and of B,

with ``(K_B, c_B)`` affine in ``(A_B, g_B)`` — the batch means of per-sample coefficients
``(K_i, c_i)`` — and constant ``Q``:

* Langevin with a constant preconditioner ``P = C C^T`` (SPD; ``P = I`` is SGD / SGLD / SGWORLD), state
  ``x = w`` (d = p)::

      w' = w - lr P g_n + sqrt(2 lr T) C xi:   K_B = -lr P A_B,  c_B = lr P g_B,  Q = 2 lr T P;

* SGHMC (Chen, Fox & Guestrin 2014, eq. 15), state ``x = (w, v)`` (d = 2p), friction ``alpha``,
  noise estimate ``beta_hat``::

      v' = (1 - alpha) v - lr g_n + sqrt(2 (alpha - beta_hat) lr T) xi,   w' = w + v',
      K_B = [[-lr A_B, (1 - alpha) I], [-lr A_B, -alpha I]],  c_B = (lr g_B, lr g_B),
      Q = 2 (alpha - beta_hat) lr T [[I, I], [I, I]];

* the gradient estimate ``g_n`` is the plain minibatch gradient ``A_B w - g_B`` or its control variate
  around a fixed centre ``w_hat`` (SGLD-CV, Baker et al. 2019),
  ``g_n = grad L(w_hat) + grad L_B(w) - grad L_B(w_hat) = A_B w - g'_B`` with per-sample
  ``g'_i = A_i w_hat - (H w_hat - gbar)``: the same form with ``g`` replaced by ``g'``, whose spread
  vanishes where ``A_i`` do not vary (and whose additive noise ``A_B (w - w_hat) - H (w - w_hat)``
  vanishes at the centre).

Iterating a random affine map whose coefficients are drawn afresh and independently of the past has a
stationary mean and covariance that solve linear equations in the first two moments of ``(K, c)``.
This module solves them exactly, in discrete time, with minibatch noise switched on — no small-lr
expansion and no simulation — with one solver and one permutation average for every sampler:

* step-wise schemes (``wr``, ``iid``, ``full``/ULA): one step is the random map, and the moments of
  ``(K_B, c_B)`` follow from the population moments of the per-sample ``(K_i, c_i)`` and the
  scheme's factor ``f`` (:func:`batch_noise_factor`);
* ``wor`` (random reshuffling, SGWORLD): the time unit is one epoch, whose map
  ``x -> M_pi x + c_pi + eta_pi`` is the product of the epoch's step maps; its moments are averaged
  over the permutation ``pi``, exactly by enumeration for tiny N or by sampling permutations
  (with a standard error) otherwise. Moments are those at epoch boundaries.

References: S. Adhikari, A. Kabakçıoğlu, A. Strang, D. Yuret, M. Hinczewski, "Machine learning in
and out of equilibrium", arXiv:2306.03521; T. Chen, E. Fox, C. Guestrin, "Stochastic gradient
Hamiltonian Monte Carlo", ICML 2014; J. Baker, P. Fearnhead, E. Fox, C. Nemeth, "Control variates for
stochastic gradient MCMC", Statistics and Computing 29 (2019).

Numerics. With ``K = M - I`` (computed without forming ``I + small``), ``m`` the stationary mean and
``d = K m + c`` the map's displacement at ``m`` (``E[d] = 0``), the stationary covariance solves::

    E[K] Sigma + Sigma E[K]^T + E[K Sigma K^T] + Cov[d] + E[Q] = 0,

which is the second-moment recursion ``P = E[M P M^T] + E[M m c^T] + E[c m^T M^T] + E[c c^T] + E[Q]``
rewritten about the mean (``Sigma = P - m m^T``). Solved as a d^2 x d^2 linear system, it keeps
full relative precision even where ``Sigma`` is ~1e-11 next to an O(1) mean (the paper's WOR regime), which
the raw form cannot. Dense ``d^4`` memory: intended for d up to a few tens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Callable

import numpy as np

from .._checks import check_choice, check_int_range, check_nonnegative, check_positive
from ..batching import STEPWISE_SCHEMES, noise_factor

__all__ = [
    "Moments",
    "batch_noise_factor",
    "stepwise_stationary_moments",
    "ula_stationary_cov",
    "epoch_stationary_moments",
    "sghmc_stationary_moments",
    "STEPWISE_OR_FULL_SCHEMES",
    "MAX_ENUMERATED_PARTITIONS",
]

# The step-wise schemes plus the full batch ("full": every sample every step, i.e. ULA; noise factor 0),
# a scheme of the theory only.
STEPWISE_OR_FULL_SCHEMES = STEPWISE_SCHEMES + ("full",)
SGHMC_STATES = ("position", "momentum", "full")
MAX_ENUMERATED_PARTITIONS = 200_000
_SE_GROUPS = 32  # permutation groups for the jackknife standard error of sampled epoch moments
_CHUNK_ELEMENTS = 1 << 21  # floats in the largest work array of the epoch maps (the (chunk, b, p, p) gather)


@dataclass(frozen=True)
class Moments:
    """Stationary mean (d,) and covariance (d, d).

    ``mean_se`` / ``cov_se`` are the Monte Carlo standard errors of the entries when the moments are
    averaged over sampled permutations (``permutations=<int>`` with ``wor``); ``None`` when the answer
    is exact.
    """

    mean: np.ndarray
    cov: np.ndarray
    mean_se: np.ndarray | None = None
    cov_se: np.ndarray | None = None

    def part(self, index) -> "Moments":
        """The moments of the sub-vector ``x[index]`` (a slice or an index array)."""
        index = np.arange(len(self.mean))[index]
        pick = np.ix_(index, index)
        return Moments(self.mean[index], self.cov[pick],
                       None if self.mean_se is None else self.mean_se[index],
                       None if self.cov_se is None else self.cov_se[pick])


# --------------------------------------------------------------------------------------------- checks

_positive = check_positive
_nonnegative = check_nonnegative
_int_in = check_int_range


def _symmetric(name, a):
    """Check (..., p, p) symmetric up to rounding; return the exactly symmetrised array."""
    at = np.swapaxes(a, -1, -2)
    scale = max(float(np.max(np.abs(a))), np.finfo(float).tiny)
    err = float(np.max(np.abs(a - at)))
    if err > 1e-10 * scale:
        raise ValueError(f"{name} must be symmetric: max |{name} - {name}^T| = {err:.3g} "
                         f"(relative {err / scale:.3g}, allowed 1e-10)")
    return 0.5 * (a + at)


def _hessian(name, h):
    h = np.asarray(h, dtype=float)
    if h.ndim != 2 or h.shape[0] != h.shape[1] or h.shape[0] == 0:
        raise ValueError(f"{name} must have shape (p, p), got {h.shape}")
    if not np.all(np.isfinite(h)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    h = _symmetric(name, h)
    lam = np.linalg.eigvalsh(h)
    if lam[0] <= 0:
        raise ValueError(f"{name} must be positive definite for a stationary state to exist; "
                         f"its smallest eigenvalue is {lam[0]:.6g}")
    return h


def _problem(A, g, lr, temperature, batch_size):
    A = np.asarray(A, dtype=float)
    g = np.asarray(g, dtype=float)
    if A.ndim != 3 or A.shape[1] != A.shape[2] or A.shape[0] == 0 or A.shape[1] == 0:
        raise ValueError(f"A must have shape (N, p, p) with N, p >= 1, got {A.shape}")
    if g.shape != A.shape[:2]:
        raise ValueError(f"g must have shape {A.shape[:2]} (N, p) to match A, got {g.shape}")
    for name, x in (("A", A), ("g", g)):
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name} contains {int(np.sum(~np.isfinite(x)))} non-finite value(s) (NaN or inf)")
    A = _symmetric("A", A)
    _hessian("H = mean_i A_i", A.mean(0))
    n = A.shape[0]
    return (A, g, _positive("lr", lr), _nonnegative("temperature", temperature),
            _int_in("batch_size", batch_size, 1, n))


def _preconditioner(P, p):
    """A constant preconditioner: (p, p), finite, symmetric positive definite; None stays None (P = I)."""
    if P is None:
        return None
    P = np.asarray(P, dtype=float)
    if P.shape != (p, p):
        raise ValueError(f"preconditioner must have shape ({p}, {p}) to match the {p} parameters, got {P.shape}")
    if not np.all(np.isfinite(P)):
        raise ValueError("preconditioner contains non-finite values (NaN or inf); pass a finite SPD matrix")
    P = _symmetric("preconditioner", P)
    lam = np.linalg.eigvalsh(P)[0]
    if lam <= 0:
        raise ValueError(f"preconditioner must be symmetric positive definite; its smallest eigenvalue is "
                         f"{lam:.6g} (pass e.g. the inverse Hessian at the MAP)")
    return P


def _control_variate(A, g, centre):
    """Per-sample linear terms ``g'_i = A_i w_hat - (H w_hat - gbar)`` of the control-variate gradient
    ``grad L(w_hat) + grad L_B(w) - grad L_B(w_hat) = A_B w - g'_B`` (``g`` itself when no centre)."""
    if centre is None:
        return g
    p = g.shape[1]
    centre = np.asarray(centre, dtype=float)
    if centre.shape != (p,):
        raise ValueError(f"control_variate_centre must have shape ({p},) to match the {p} parameters, "
                         f"got {centre.shape}")
    if not np.all(np.isfinite(centre)):
        raise ValueError("control_variate_centre contains non-finite values (NaN or inf); pass a finite point "
                         "such as the MAP")
    return A @ centre - (A.mean(0) @ centre - g.mean(0))


def _friction(alpha, beta_hat):
    alpha = float(alpha)
    if not (math.isfinite(alpha) and 0.0 < alpha <= 1.0):
        raise ValueError(f"alpha (friction per step) must be in (0, 1], got {alpha!r}")
    beta_hat = float(beta_hat)
    if not (math.isfinite(beta_hat) and 0.0 <= beta_hat < alpha):
        raise ValueError(f"beta_hat (gradient-noise estimate) must be in [0, alpha) = [0, {alpha:g}), "
                         f"got {beta_hat!r}")
    return alpha, beta_hat


# ------------------------------------------------------------------------- one step as an affine map

@dataclass(frozen=True)
class _Step:
    """One step ``x <- x + K x + c + eta`` of a sampler on a quadratic problem.

    ``coefficients(a, g)`` maps batch means ``a`` (..., p, p) and ``g`` (..., p) to ``(K, c)``
    (..., d, d), (..., d); it is affine, so a batch's coefficients are the batch means of the per-sample
    ones. ``eta ~ N(0, Q)``, independent of the state and the batch.
    """

    coefficients: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    Q: np.ndarray


def _langevin_step(lr, temperature, p, P=None) -> _Step:
    """``w' = w - lr P (A_B w - g_B) + sqrt(2 lr T) C xi`` (``P = C C^T``; ``P = None`` is ``P = I``)."""
    if P is None:
        return _Step(lambda a, g: (-lr * a, lr * g), 2.0 * lr * temperature * np.eye(p))
    return _Step(lambda a, g: (-lr * (P @ a), lr * (g @ P.T)), 2.0 * lr * temperature * P)


def _sghmc_step(lr, temperature, p, alpha, beta_hat) -> _Step:
    """State ``(w, v)``: ``v' = (1 - alpha) v - lr (A_B w - g_B) + sqrt(2 (alpha - beta_hat) lr T) xi``,
    ``w' = w + v'``."""
    eye = np.eye(p)

    def coefficients(a, g):
        K = np.empty(a.shape[:-2] + (2 * p, 2 * p))
        K[..., :p, :p] = K[..., p:, :p] = -lr * a
        K[..., :p, p:] = (1.0 - alpha) * eye
        K[..., p:, p:] = -alpha * eye
        return K, np.concatenate([lr * g, lr * g], axis=-1)

    return _Step(coefficients, 2.0 * (alpha - beta_hat) * lr * temperature * np.kron(np.ones((2, 2)), eye))


# --------------------------------------------------------------------------------- the shared solver

def _rearrange_kron(cov_kk, p):
    """Cov[vec K] (row-major vec) -> the matrix with entries Cov[K_ij, K_kl] at ((i,k),(j,l)), i.e. the
    fluctuation part of E[K (x) K]."""
    return cov_kk.reshape(p, p, p, p).transpose(0, 2, 1, 3).reshape(p * p, p * p)


def _solve_affine(mean_y, cov_y, mean_q, lr, unit):
    """Stationary mean and covariance of ``x <- (I + K) x + c + eta`` iterated with i.i.d. coefficients.

    ``y = (vec K, c)`` (row-major vec, length d^2 + d) has mean ``mean_y`` and covariance ``cov_y``;
    ``eta`` has conditional mean 0 and ``E[Cov[eta | K, c]] = mean_q``; ``unit`` names one map
    ("step", "epoch") for error messages. Raises ValueError when the recursion for the mean or for
    the second moment does not contract (no stationary state).
    """
    p = mean_q.shape[0]
    pp = p * p
    ek, ec = mean_y[:pp].reshape(p, p), mean_y[pp:]
    eye = np.eye(p)

    rho = float(np.max(np.abs(1.0 + np.linalg.eigvals(ek))))
    if not rho < 1.0:
        raise ValueError(f"no stationary state at lr = {lr:g}: the mean recursion does not contract "
                         f"(spectral radius of E[M] per {unit} = {rho:.6g} >= 1); use a smaller lr")
    m = np.linalg.solve(-ek, ec)

    # E[M (x) M] - I, with E[M] = I + E[K]
    op = np.kron(ek, eye) + np.kron(eye, ek) + np.kron(ek, ek) + _rearrange_kron(cov_y[:pp, :pp], p)
    rho2 = float(np.max(np.abs(1.0 + np.linalg.eigvals(op))))
    if not rho2 < 1.0:
        raise ValueError(f"no stationary state at lr = {lr:g}: the second-moment recursion does not "
                         f"contract (spectral radius of E[M (x) M] per {unit} = {rho2:.6g} >= 1, minibatch "
                         "noise included); use a smaller lr")
    jac = np.hstack([np.kron(eye, m[None, :]), eye])  # d = K m + c = jac @ y
    rhs = jac @ cov_y @ jac.T + mean_q
    cov = np.linalg.solve(-op, rhs.reshape(-1)).reshape(p, p)
    return m, 0.5 * (cov + cov.T)


def _stepwise_moments(A, g, step, f, lr) -> Moments:
    """Stationary moments of the step map with batch means whose covariance is ``f`` times the
    population covariance (:func:`batch_noise_factor`)."""
    n = A.shape[0]
    K, c = step.coefficients(A, g)  # per-sample coefficients; the batch's are their batch means
    y = np.hstack([K.reshape(n, -1), c])
    mean_y = y.mean(0)
    dy = y - mean_y
    return Moments(*_solve_affine(mean_y, (f / n) * (dy.T @ dy), step.Q, lr, "step"))


# --------------------------------------------------------------------------------- step-wise schemes

def batch_noise_factor(scheme: str, n: int, batch_size: int) -> float:
    """Covariance of a batch mean of per-sample quantities over their population covariance.

    ``Cov[z_B] = f S_z`` with ``S_z = (1/N) sum_i (z_i - zbar)(z_i - zbar)^T`` and ``z_B`` the mean over
    the batch: ``"wr"`` (b distinct indices) ``f = (N-b)/(b(N-1))``; ``"iid"`` (b i.i.d. indices)
    ``f = 1/b``; ``"full"`` (every sample, every step) ``f = 0``.
    """
    if scheme not in STEPWISE_OR_FULL_SCHEMES:
        raise ValueError(f"unknown step-wise scheme {scheme!r}; choose one of: "
                         f"{', '.join(STEPWISE_OR_FULL_SCHEMES)} (for 'wor' use epoch_stationary_moments)")
    n = _int_in("N (number of samples)", n, 1)
    b = _int_in("batch_size", batch_size, 1, n)
    return 0.0 if scheme == "full" else noise_factor(scheme, n, b)


def _stepwise_batch_size(g, batch_size, scheme):
    """The batch size to validate: all N samples for ``"full"`` (a given one is ignored)."""
    if scheme == "full":
        return np.shape(g)[0] if np.ndim(g) == 2 else 1  # all N samples (validated with the data)
    if scheme in STEPWISE_OR_FULL_SCHEMES and batch_size is None:
        raise ValueError(f"batch_size is required for scheme {scheme!r}: pass batch_size=b with 1 <= b <= N")
    return batch_size


def stepwise_stationary_moments(A, g, lr, temperature, batch_size=None, scheme="wr", *, preconditioner=None,
                                control_variate_centre=None) -> Moments:
    """Exact stationary mean and covariance of the step-wise Langevin update on quadratic potentials.

    Update: ``w <- w - lr P g_n + sqrt(2 lr T) C xi`` (``P = C C^T``; ``P = I`` by default: SGD at
    ``T = 0``, SGLD) with a fresh batch ``B`` every step, independent of the past: ``scheme="wr"``
    (b distinct indices), ``"iid"`` (b i.i.d. indices) or ``"full"`` (full-batch Langevin / ULA: every
    sample every step, so ``batch_size`` is not needed; one that is given is ignored). ``g_n`` is the
    minibatch gradient ``A_B w - g_B``, or with ``control_variate_centre=w_hat`` (SGLD-CV) the
    control-variate estimate ``grad L(w_hat) + grad L_B(w) - grad L_B(w_hat)``. With per-sample map
    coefficients ``y_i = (vec K_i, c_i)`` (module docstring) the batch map's coefficients ``y_B`` have
    ``E[y_B] = ybar`` and ``Cov[y_B] = f S_y`` (:func:`batch_noise_factor`), so the stationary state
    solves ``H m = gbar`` and the moment recursion of the module docstring — the exact discrete-time
    answer, not a small-lr expansion (arXiv:2306.03521).

    Parameters: ``A`` (N, p, p) symmetric per-sample Hessians, ``g`` (N, p), ``lr > 0``,
    ``temperature >= 0`` (0 is plain SGD), ``1 <= batch_size <= N`` (``wr``, ``iid``),
    ``preconditioner`` (p, p) symmetric positive definite or None, ``control_variate_centre`` (p,) or None.
    Raises ValueError for bad input or when no stationary state exists at this lr.
    """
    batch_size = _stepwise_batch_size(g, batch_size, scheme)
    A, g, lr, temperature, b = _problem(A, g, lr, temperature, batch_size)
    n, p = g.shape
    f = batch_noise_factor(scheme, n, b)
    step = _langevin_step(lr, temperature, p, _preconditioner(preconditioner, p))
    return _stepwise_moments(A, _control_variate(A, g, control_variate_centre), step, f, lr)


def ula_stationary_cov(H, lr, temperature) -> np.ndarray:
    """Closed form ``T (H - lr H^2 / 2)^{-1}`` of full-batch Langevin (ULA) on a quadratic.

    The stationary covariance of ``w <- w - lr H (w - w*) + sqrt(2 lr T) xi``; exists for
    ``0 < lr h < 2`` for every eigenvalue ``h`` of ``H``.
    """
    H = _hessian("H", H)
    lr = _positive("lr", lr)
    temperature = _nonnegative("temperature", temperature)
    h, v = np.linalg.eigh(H)
    rho = float(np.max(np.abs(1.0 - lr * h)))
    if not rho < 1.0:
        raise ValueError(f"no stationary state at lr = {lr:g}: spectral radius of I - lr H = {rho:.6g} >= 1 "
                         f"(need lr < 2 / h_max = {2.0 / h[-1]:.6g}); use a smaller lr")
    return (v * (temperature / (h - 0.5 * lr * h * h))) @ v.T


# ------------------------------------------------------------------------------------- epoch scheme

def _partition_count(n, b, m):
    """Number of distinct ordered partitions N! / (b!^m r!), as an int, or as "about 10^k" if huge."""
    log10 = (math.lgamma(n + 1) - m * math.lgamma(b + 1) - math.lgamma(n - m * b + 1)) / math.log(10)
    if log10 > 30:
        return f"about 10^{log10:.0f}"
    return math.factorial(n) // (math.factorial(b) ** m * math.factorial(n - m * b))


def _enumerate_partitions(n, b, m):
    """All distinct ordered partitions of 0..n-1 into m batches of b (+ the unordered remainder), as
    rows of an (count, n) array; each stands for the same number b!^m r! of permutations."""
    orders = np.zeros((1, 0), dtype=np.int64)
    rest = np.arange(n)[None, :]
    for _ in range(m):
        r = rest.shape[1]
        pick = np.array(list(combinations(range(r), b)), dtype=np.int64)
        keep = np.array([[j for j in range(r) if j not in c] for c in pick], dtype=np.int64).reshape(len(pick), r - b)
        orders = np.hstack([np.repeat(orders, len(pick), axis=0), rest[:, pick].reshape(-1, b)])
        rest = rest[:, keep].reshape(len(orders), r - b)
    return np.hstack([orders, rest])


def _epoch_maps(A, g, step, orders, b, steps):
    """Statistics of the epoch maps of the rows of ``orders`` (k, N): step s uses the indices
    ``orders[:, s*b:(s+1)*b]`` (the last step takes the rest when it is short). Returns
    ``(k, mean, cov, mean_q)``: count, mean and population covariance of ``y = (vec K, c)``, mean ``Q``."""
    k = orders.shape[0]
    d = step.Q.shape[0]
    eye = np.eye(d)
    K = np.zeros((k, d, d))
    c = np.zeros((k, d))
    Q = np.zeros((k, d, d)) if np.any(step.Q) else None
    for s in range(steps):
        idx = orders[:, s * b:(s + 1) * b]
        k_b, c_b = step.coefficients(A[idx].mean(1), g[idx].mean(1))
        K = K + (k_b + k_b @ K)  # M <- (I + K_B) M, tracked as K = M - I
        c = c + np.einsum("kij,kj->ki", k_b, c) + c_b
        if Q is not None:
            m_b = eye + k_b
            Q = m_b @ Q @ np.swapaxes(m_b, 1, 2) + step.Q
    y = np.hstack([K.reshape(k, d * d), c])
    mean = y.mean(0)
    dy = y - mean
    return k, mean, dy.T @ dy / k, (Q.mean(0) if Q is not None else np.zeros((d, d)))


def _pool(weights, units):
    """Pool per-unit statistics (``_epoch_maps`` outputs) with 0/1 ``weights`` (J, units): one pooled
    (mean, cov, mean_q) per row, combined about the overall mean so that nothing cancels."""
    count, mean, cov, mean_q = (np.array(x, dtype=float) for x in zip(*units))
    mu = count @ mean / count.sum()
    dev = mean - mu
    second = cov + dev[:, :, None] * dev[:, None, :]  # per-unit second moment about mu
    w = weights * count
    total = w.sum(1)
    shift = w @ dev / total[:, None]
    q = mean.shape[1]
    covs = (w @ second.reshape(len(count), -1)).reshape(-1, q, q) / total[:, None, None]
    covs -= shift[:, :, None] * shift[:, None, :]
    qs = (w @ mean_q.reshape(len(count), -1)).reshape(-1, *mean_q.shape[1:]) / total[:, None, None]
    return list(zip(mu + shift, covs, qs))


def _epoch_moments(A, g, step, lr, b, permutations, seed, drop_last) -> Moments:
    """Stationary moments at epoch boundaries of ``step`` with ``wor`` batches of ``b``, averaged over
    the permutations as described in :func:`epoch_stationary_moments`."""
    n, p = g.shape
    d = step.Q.shape[0]
    full_steps = n // b
    steps = full_steps + (1 if n % b and not drop_last else 0)
    chunk = max(1, _CHUNK_ELEMENTS // (max(b * p * p, d * d) + d))
    maps = lambda orders: _epoch_maps(A, g, step, orders, b, steps)  # noqa: E731
    solve = lambda e: _solve_affine(*e, lr, "epoch")  # noqa: E731

    if isinstance(permutations, (int, np.integer)) and not isinstance(permutations, (bool, np.bool_)):
        count = _int_in("permutations", permutations, 2)
        rng = np.random.default_rng(seed)
        groups = min(_SE_GROUPS, count)
        units, labels = [], []
        for j, size in enumerate(np.diff(np.linspace(0, count, groups + 1).round().astype(np.int64))):
            for k in np.diff(np.linspace(0, size, -(-size // chunk) + 1).round().astype(np.int64)):
                units.append(maps(rng.permuted(np.tile(np.arange(n), (k, 1)), axis=1)))
                labels.append(j)
        # row 0: all permutations; row 1 + j: all but group j (delete-a-group jackknife)
        weights = np.vstack([np.ones(len(units)), np.array(labels)[None, :] != np.arange(groups)[:, None]])
        (m, cov), *loo = [solve(e) for e in _pool(weights, units)]
        jack = lambda x: np.sqrt((groups - 1) * np.var(x, axis=0))  # noqa: E731
        return Moments(m, cov, jack(np.array([x[0] for x in loo])), jack(np.array([x[1] for x in loo])))

    if isinstance(permutations, str) and permutations == "enumerate":
        count = _partition_count(n, b, full_steps)
        if isinstance(count, str) or count > MAX_ENUMERATED_PARTITIONS:
            raise ValueError(f"permutations='enumerate' needs {count} distinct batch partitions for N = {n}, "
                             f"batch_size = {b}, above the limit of {MAX_ENUMERATED_PARTITIONS}; pass "
                             "permutations=<int> to average over sampled permutations instead")
        orders = _enumerate_partitions(n, b, full_steps)
    elif isinstance(permutations, str) and permutations == "sequential":
        orders = np.arange(n)[None, :]
    elif isinstance(permutations, str):
        raise ValueError(f"unknown permutations {permutations!r}; choose 'enumerate', 'sequential', "
                         "an int >= 2 (sampled), or a 1-D permutation array (fixed order)")
    else:
        orders = np.asarray(permutations)
        if orders.shape != (n,) or not np.array_equal(np.sort(orders), np.arange(n)):
            raise ValueError(f"permutations must be 'enumerate', 'sequential', an int >= 2, or a permutation "
                             f"of 0..{n - 1} of shape ({n},); got {permutations!r}")
        orders = orders.astype(np.int64)[None, :]
    units = [maps(o) for o in np.array_split(orders, -(-len(orders) // chunk))]
    (m, cov), = [solve(e) for e in _pool(np.ones((1, len(units))), units)]
    return Moments(m, cov)


def epoch_stationary_moments(A, g, lr, temperature, batch_size, *, permutations="enumerate", seed=None,
                             drop_last=True, preconditioner=None, control_variate_centre=None) -> Moments:
    """Exact stationary moments, at epoch boundaries, of the Langevin update with ``wor`` minibatching
    (SGWORLD; SGD at ``T = 0``).

    Update per step ``w <- w - lr P g_n + sqrt(2 lr T) C xi`` (``P = C C^T``, ``P = I`` by default;
    ``g_n = A_B w - g_B``, or the control-variate estimate with ``control_variate_centre``, as in
    :func:`stepwise_stationary_moments`); each epoch draws a fresh uniform permutation of 0..N-1
    (independent of the past and of ``w``) cut into ``M = floor(N/b)`` consecutive batches of b, the
    remainder dropped (``drop_last=False``: a short last batch of the ``N mod b`` leftover indices is an
    extra step). One epoch is the random affine map ``w -> M_pi w + c_pi + eta_pi``,
    ``M_pi = prod_s (I - lr P A_{B_s})`` (later steps on the left), ``eta_pi ~ N(0, Q_pi)`` from the
    per-step Langevin noise, and its stationary moments solve the linear system of the module
    docstring with expectations over ``pi`` — exact discrete time (arXiv:2306.03521). For N divisible
    by b every sample is used once per epoch and the minibatch part of the covariance is O(lr^3)
    (docs/concepts.md, "SGD near a minimum"); a dropped remainder varies which samples an epoch skips,
    which puts back an O(lr) term (smaller than wr's by about the dropped fraction).

    ``permutations``:

    * ``"enumerate"`` — exact: the average over all N! permutations, computed over the
      ``N! / (b!^M r!)`` distinct ordered partitions into batches (each standing for the same number
      of permutations); raises ValueError above ``MAX_ENUMERATED_PARTITIONS``.
    * an int n >= 2 — average over n uniform permutations from ``np.random.default_rng(seed)`` (an int,
      SeedSequence or Generator); vectorised over permutations, in chunks of bounded memory; the
      result carries ``mean_se`` and ``cov_se``, jackknife standard errors over 32 groups of
      permutations (about t-distributed with 31 degrees of freedom).
    * ``"sequential"`` — the fixed order 0..N-1 every epoch (a deterministic epoch map); a 1-D
      permutation array gives any other fixed order (e.g. a chain's ``shuffle_once`` order).
    """
    A, g, lr, temperature, b = _problem(A, g, lr, temperature, batch_size)
    p = g.shape[1]
    step = _langevin_step(lr, temperature, p, _preconditioner(preconditioner, p))
    return _epoch_moments(A, _control_variate(A, g, control_variate_centre), step, lr, b, permutations, seed,
                          drop_last)


# ------------------------------------------------------------------------------------------- SGHMC

def sghmc_stationary_moments(A, g, lr, temperature, batch_size=None, scheme="wr", *, alpha, beta_hat=0.0,
                             control_variate_centre=None, state="position", permutations="enumerate", seed=None,
                             drop_last=True) -> Moments:
    """Exact stationary moments of SGHMC on quadratic potentials, in its 2p-dimensional state (w, v).

    Update (Chen, Fox & Guestrin 2014, eq. 15, the "SGD with momentum" form; momentum first, then the
    position with the new momentum)::

        v' = (1 - alpha) v - lr g_n + sqrt(2 (alpha - beta_hat) lr T) xi,   xi ~ N(0, I),
        w' = w + v',

    with ``g_n = A_B w - g_B`` the minibatch gradient (or its control variate around
    ``control_variate_centre``, as in :func:`stepwise_stationary_moments`). Per step this is the random
    affine map of the module docstring on ``x = (w, v)``; ``scheme`` ``"wr"``, ``"iid"`` or ``"full"``
    solve its moment recursion per step, ``"wor"`` per epoch (at epoch boundaries), averaged over
    ``permutations`` (``seed``, ``drop_last``) exactly as in :func:`epoch_stationary_moments`.

    ``state``: ``"position"`` (default) returns the moments of w (p,), ``"momentum"`` those of v,
    ``"full"`` those of the 2p-vector (w, v) (covariance blocks ww, wv; vw, vv).

    Limits (full batch, exact per eigenmode h of H; minibatch noise only adds O(lr) terms): with
    ``kappa = 1 - beta_hat / alpha``, ``Var v = 2 kappa lr T / (2 - alpha - lr h / 2)``,
    ``Var w = (2 - alpha) Var v / (2 lr h)``, ``Cov(w, v) = Var v / 2``; so as lr -> 0 at fixed
    alpha the position covariance tends to ``kappa T H^-1`` (the posterior's ``T H^-1`` when
    ``beta_hat = 0``: a beta_hat not matched by gradient noise lowers the temperature) and the
    momentum covariance to ``2 kappa lr T / (2 - alpha) I``, Chen et al.'s ``lr T I`` only as alpha -> 0
    too. ``alpha = 1, beta_hat = 0`` is the Langevin update (SGLD) exactly.

    Parameters: ``A`` (N, p, p), ``g`` (N, p), ``lr > 0``, ``temperature >= 0``, ``batch_size`` (not
    needed for ``"full"``), friction ``0 < alpha <= 1``, noise estimate ``0 <= beta_hat < alpha``.
    Raises ValueError for bad input or when no stationary state exists at this lr.
    """
    check_choice("scheme", scheme, STEPWISE_OR_FULL_SCHEMES + ("wor",))
    check_choice("state", state, SGHMC_STATES)
    alpha, beta_hat = _friction(alpha, beta_hat)
    if scheme == "wor" and batch_size is None:
        raise ValueError("batch_size is required for scheme 'wor': pass batch_size=b with 1 <= b <= N")
    A, g, lr, temperature, b = _problem(A, g, lr, temperature, _stepwise_batch_size(g, batch_size, scheme))
    n, p = g.shape
    g = _control_variate(A, g, control_variate_centre)
    step = _sghmc_step(lr, temperature, p, alpha, beta_hat)
    if scheme == "wor":
        moments = _epoch_moments(A, g, step, lr, b, permutations, seed, drop_last)
    else:
        moments = _stepwise_moments(A, g, step, batch_noise_factor(scheme, n, b), lr)
    return {"position": moments.part(slice(0, p)), "momentum": moments.part(slice(p, None)),
            "full": moments}[state]
