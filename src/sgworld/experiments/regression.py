"""Regression study: the nonequilibrium stationary state of SGD on the paper's tanh network (arXiv 2306.03521).

The example of DESIGN 3: N = 200 points on the grid -3.0 : 0.03 : 2.97, ``y = exp(-x^2) + 0.1 noise``,
``f(x; w) = w5 tanh(w1 x + w3) + w6 tanh(w2 x + w4) + w7`` and
``U_i = N (y_i - f_i)^2 / (2 sigma^2) + (N lambda / (2 sigma^2)) |w|^2`` (sigma = 0.1, lambda = 1e-3),
SGD with b = 10 and lr = 1e-7 in float64. The study

1. finds ``w*`` by Newton's method (from the authors' ``wmin.txt`` when ``data_dir`` is given);
2. computes the Fokker–Planck theory at ``w*`` for ``wr`` (Sigma, circulation Q, entropy-production
   rate, commutator ratio) and ``wor`` (mean ``w_eff = argmin L_eff``, per-epoch diffusion,
   O(lr^3) covariance), :mod:`sgworld.theory.point`;
3. runs many SGD chains of each scheme (vectorised), started from the *predicted* stationary
   Gaussian: a linear process started in its stationary law has no transient, so no burn-in is
   spent; what the simulation then tests is whether that law is kept. The slowest modes relax in
   ``1/(lr h_min)`` ~ 2e5 steps, longer than the run, so the moments are estimated with a
   *relaxation-corrected* estimator (below) whose standard errors say how much each mode tells;
4. measures from the WR trajectories the areal velocity A (estimates Q), the per-step entropy
   production (midpoint rule) and its rate, a model-free rate from a fitted linear drift, and the
   integral and detailed fluctuation theorems over windows of 1, 2, 3 and 10 steps;
5. writes ``metrics.json``, ``config.json`` and figures.

Relaxation-corrected moments. For the linearised dynamics the ensemble moments of a group of
chains relax, in the eigenbasis of H with per-unit decay ``phi_k = (1 - lr h_k)`` (WR, per step) or
``(1 - lr h_k)^M`` (WOR, per epoch), as ``m(t) - w = phi^t (m(0) - w)`` and
``C(t) - Sigma = phi^t (C(0) - Sigma) phi^t``. Solving for ``w`` and ``Sigma`` with the measured
``m(0), C(0)`` (the actual initial sample) and ``m(t), C(t)`` gives unbiased estimates of the
stationary moments for every mode, however little it has relaxed; the noise is amplified by
``1/(1 - phi^2t)`` there, and the reported standard errors (over independent groups of chains)
include that. ``relaxed_fraction = 1 - phi^(2T)`` per mode says how far each mode has moved.

metrics.json (all per step for ``wr``, at epoch boundaries for ``wor``): ``sigma_*_diag`` are the
parameters' variances, ``sigma_*_eig`` the variances along the Hessian's eigenvectors (soft to
stiff), ``*_se`` standard errors (for WOR theory: the Monte Carlo error of D_WOR), ``*_z`` z-scores
of simulation against theory. ``wr.ift[k]`` is the IFT figure of merit
``(<exp(-Delta s)> - 1) / <Delta s>`` for windows of k steps (0 if the IFT holds; ``ift_ci`` its
bootstrap interval over chains); ``dft_slope`` the slope of ``ln P(Delta s)/P(-Delta s)`` (1 if the
DFT holds). ``wor.sigma_theory_discrete_*`` uses the simulated D_WOR and the epoch map
``(I - lr H)^M`` (removes the O(lr M h) terms of the leading-order theory).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._checks import check_int_range
from ..problems import Problem
from ..run import sample
from ..theory.point import find_minimum, wor_sigma_standard_error, wor_theory, wr_theory
from ..thermo.fluctuation import detailed_fluctuation_theorem, integral_fluctuation_theorem
from ..thermo.model_free import fit_linear_drift
from ..thermo.trajectory import areal_velocity, chain_mean, entropy_production_steps, window_sums
from .common import Check, StudyCheckpoints, check_resources, write_config, write_json

DESCRIPTION = "Nonequilibrium stationary state of SGD (wr vs wor) on the paper's tanh regression network"

log = logging.getLogger(__name__)

DATA_FILES = ("x_train.txt", "y_train.txt")
P = 7  # parameters of the network


@dataclass(frozen=True)
class Config:
    n: int = 200                   # data points N (grid -3.0 .. 2.97) [>= 2]
    batch_size: int = 10           # b (M = N/b = 20 steps per epoch) [1 <= b <= n]
    lr: float = 1e-7               # SGD learning rate [> 0]
    noise_std: float = 0.1         # sigma: likelihood and noise of the generated data [> 0]
    lam: float = 1e-3              # lambda: prior precision N lambda / sigma^2 on every weight [>= 0]
    data_dir: str | None = None    # folder with x_train.txt, y_train.txt (and wmin.txt): the authors' data
                                   # [a folder, or none: generated]
    data_seed: int = 0             # seed of the generated data (when data_dir is None) [>= 0]
    w_init: tuple[float, ...] = (1.0, 1.0, 0.5, -0.5, 1.0, -1.0, 0.0)  # Newton start without wmin.txt [7 numbers]
    chains: int = 4096             # chains per scheme [>= groups]
    steps: int = 24000             # SGD steps per chain and scheme [>= 2 segments]
    segment: int = 120             # steps per recorded segment (multiple of M and of every FT window; small
                                   # segments keep the temporaries below the allocator's mmap threshold)
                                   # [a multiple of M, of every FT window and of model_free_thin]
    groups: int = 32               # independent groups of chains for standard errors [2 <= groups <= chains]
    ft_windows: tuple[int, ...] = (1, 2, 3, 10)  # windows (steps) of the integral FT
                                   # [each >= 1 and dividing segment]
    ft_steps: int = 3000           # steps (from the start, all chains) whose entropy production feeds the FTs [>= 1]
    dft_window: int = 10           # window of the detailed-FT histogram [one of ft_windows]
    dft_bins: int = 20             # histogram bins of the detailed FT [>= 2]
    bootstrap: int = 1000          # bootstrap replicates of the FT intervals [>= 1]
    model_free_chains: int = 1024  # chains whose thinned path feeds the model-free drift fit [>= 1]
    model_free_thin: int = 5       # thinning of that path (bias O(thin lr h_max)) [>= 1 and dividing segment]
    wor_epochs: int = 100000       # permutations behind D_WOR (theory's Monte Carlo error ~0.45%) [>= 1]
    seed: int = 0                  # random seed of the chains, the WOR theory and the bootstrap [>= 0]


QUICK = {"chains": 256, "steps": 1200, "groups": 16, "ft_steps": 1200, "bootstrap": 200,
         "model_free_chains": 256, "wor_epochs": 2000}


# --------------------------------------------------------------------------- data and problem


class RegressionProblem(Problem):
    r"""The paper's network ``f(x; w) = w5 tanh(w1 x + w3) + w6 tanh(w2 x + w4) + w7`` (1-based).

    ``U_i(w) = N (y_i - f(x_i; w))^2 / (2 sigma^2) + (N lambda / (2 sigma^2)) |w|^2``. The potential is a
    plain torch function (Hessians, per-sample gradients and ``L_eff`` use ``torch.func`` on it);
    ``batch_grad``, the sampler's hot path, is the same gradient written out by hand (about twice as
    fast as ``vmap(grad)``; a test checks that they agree).
    """

    def __init__(self, x, y, noise_std: float = 0.1, lam: float = 1e-3, dtype: torch.dtype = torch.float64):
        x = torch.as_tensor(x, dtype=dtype)
        y = torch.as_tensor(y, dtype=dtype)
        if x.ndim != 1 or y.shape != x.shape:
            raise ValueError(f"x and y must be 1-D of equal length, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
        if not (noise_std > 0 and lam >= 0):
            raise ValueError(f"need noise_std > 0 and lam >= 0, got noise_std={noise_std!r}, lam={lam!r}")
        n = x.shape[0]
        self.scale = n / noise_std**2               # N / sigma^2
        self.prior = n * lam / noise_std**2         # N lambda / sigma^2
        super().__init__(self._potential, (x, y), P, name="tanh_regression")

    @staticmethod
    def network(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``f(x; w)`` for one parameter vector w (7,) and inputs x of any shape."""
        return w[4] * torch.tanh(w[0] * x + w[2]) + w[5] * torch.tanh(w[1] * x + w[3]) + w[6]

    def _potential(self, w, x, y):
        r = y - self.network(w, x)
        return 0.5 * self.scale * r * r + 0.5 * self.prior * (w * w).sum()

    def batch_grad(self, w, idx=None):
        # About 15 tensor ops for all chains (per-op dispatch dominates the step at small K).
        self.check_params(w)
        if idx is None:
            x, y = (d.unsqueeze(0) for d in self.data)                              # (1, N)
        else:
            flat = idx.reshape(-1)
            x, y = (d.index_select(0, flat).view(idx.shape) for d in self.data)      # (K, b)
        wc = w.unsqueeze(2)                                                          # (K, 7, 1)
        xb = x.unsqueeze(1)                                                          # (K, 1, b)
        t = torch.tanh(torch.addcmul(wc[:, 2:4], wc[:, 0:2], xb))                    # tanh(w1 x + w3), tanh(w2 x + w4)
        r = (wc[:, 4:6] * t).sum(1, keepdim=True).add_((wc[:, 6] - y).unsqueeze(1))  # f - y, (K, 1, b)
        a = torch.ops.aten.tanh_backward(r * wc[:, 4:6], t)                          # r w5 (1 - t1^2), r w6 (1 - t2^2)
        g = torch.cat([(a * xb).sum(2), a.sum(2), (t * r).sum(2), r.sum(2)], 1)
        return g.mul_(self.scale / x.shape[1]).add_(w, alpha=self.prior)


@dataclass(frozen=True)
class RegressionData:
    x: np.ndarray
    y: np.ndarray
    w_min: np.ndarray | None   # the authors' minimum (wmin.txt), if present
    source: str


def make_data(n: int = 200, noise_std: float = 0.1, seed: int = 0) -> RegressionData:
    """The paper's recipe with this library's seed: x on -3.0 .. 2.97 (step 0.03 for N = 200),
    ``y = exp(-x^2) + noise_std * N(0, 1)``."""
    x = np.linspace(-3.0, 2.97, n)
    y = np.exp(-x * x) + noise_std * np.random.default_rng(seed).standard_normal(n)
    return RegressionData(x=x, y=y, w_min=None, source=f"generated (seed {seed})")


def _read_column(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise ValueError(f"{what}: file {str(path)!r} is missing")
    try:
        values = np.loadtxt(path, dtype=np.float64, ndmin=1)
    except ValueError as exc:
        raise ValueError(f"{what}: {str(path)!r} is malformed (expected one number per line): {exc}") from None
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{what}: {str(path)!r} must hold one number per line, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what}: {str(path)!r} contains non-finite values")
    return values


def load_authors_data(data_dir) -> RegressionData:
    """Read the authors' ``x_train.txt``, ``y_train.txt`` and (optional) ``wmin.txt`` from ``data_dir``.

    Raises ValueError naming the file for a missing folder or file, unreadable numbers, unequal
    lengths, or a ``wmin.txt`` without exactly 7 values.
    """
    folder = Path(data_dir)
    if not folder.is_dir():
        raise ValueError(f"data_dir {str(folder)!r} is not a folder (it should hold {', '.join(DATA_FILES)})")
    x = _read_column(folder / "x_train.txt", "inputs")
    y = _read_column(folder / "y_train.txt", "targets")
    if x.shape != y.shape:
        raise ValueError(f"x_train.txt has {x.size} values but y_train.txt has {y.size}; they must match")
    w_min = None
    if (folder / "wmin.txt").exists():
        w_min = _read_column(folder / "wmin.txt", "minimum")
        if w_min.shape != (P,):
            raise ValueError(f"wmin.txt must hold the {P} weights w1..w7, got {w_min.size} values")
    return RegressionData(x=x, y=y, w_min=w_min, source=str(folder))


def build_problem(config: Config) -> tuple[RegressionProblem, RegressionData]:
    data = load_authors_data(config.data_dir) if config.data_dir else make_data(config.n, config.noise_std,
                                                                                config.data_seed)
    return RegressionProblem(data.x, data.y, config.noise_std, config.lam), data


# --------------------------------------------------------------------------- sampling in segments


def gaussian_draws(mean: np.ndarray, cov: np.ndarray, chains: int, rng: np.random.Generator) -> np.ndarray:
    """``chains`` draws of ``N(mean, cov)`` (cov PSD; eigen-decomposition, robust to tiny scales)."""
    lam, V = np.linalg.eigh(0.5 * (cov + cov.T))
    return mean + (rng.standard_normal((chains, mean.size)) * np.sqrt(np.clip(lam, 0, None))) @ V.T


def segment_seed(seed: int, scheme: str, index: int) -> int:
    return int(np.random.SeedSequence([seed, {"wr": 1, "wor": 2}[scheme], index]).generate_state(1)[0])


def run_segments(problem, config: Config, scheme: str, init: np.ndarray, thin: int, on_segment, progress=None,
                 store: StudyCheckpoints | None = None, kept: dict | None = None):
    """Advance all chains ``config.steps`` SGD steps in segments; ``on_segment(j, path)`` gets each
    segment's path ``(chains, 1 + segment/thin, p)`` (its first point is the previous segment's last).

    ``kept`` names the arrays that ``on_segment`` fills: with a ``store`` they are saved with the
    chains' positions every ``store.every`` seconds and after the last segment, and a rerun restores
    them and continues from the next segment (each segment has its own seed, so the result is the same).
    """
    from tqdm.auto import tqdm

    position = np.asarray(init)
    segments = config.steps // config.segment
    name, kept, start = f"sgd-{scheme}", kept or {}, 0
    saved = store.load(name) if store is not None else None
    if saved is not None:
        for key, array in kept.items():
            array[...] = saved[key]
        position, start = saved["position"], int(saved["next_segment"])
    last_save = time.monotonic()
    with tqdm(total=segments, initial=start, desc=f"sgd/{scheme}", unit="segment", leave=False,
              disable=progress is False if progress is not None else None) as bar:
        for j in range(start, segments):
            trace = sample(problem, "sgd", lr=config.lr, batch_size=config.batch_size, scheme=scheme,
                           chains=config.chains, num_draws=config.segment // thin, thin=thin, init=position,
                           seed=segment_seed(config.seed, scheme, j), progress=False)
            on_segment(j, np.concatenate([position[:, None], trace.draws], axis=1))
            position = trace.draws[:, -1]
            bar.update(1)
            if store is not None and store.every is not None and (
                    j == segments - 1 or time.monotonic() - last_save >= store.every):
                store.save(name, position=position, next_segment=j + 1, **kept)
                last_save = time.monotonic()
    return position


def chain_groups(chains: int, groups: int) -> list[slice]:
    edges = np.linspace(0, chains, groups + 1).round().astype(int)
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


# --------------------------------------------------------------------------- estimators


def relaxation_corrected_moments(snapshots: np.ndarray, times: np.ndarray, H: np.ndarray, log_decay_per_unit,
                                 ref: np.ndarray, groups: list[slice]) -> dict:
    """Stationary mean and covariance from snapshots of a relaxing ensemble (see the module docstring).

    Parameters
    ----------
    snapshots : (chains, J + 1, p)   positions at ``times`` (``times[0] = 0``: the initial sample)
    times : (J + 1,)                 in the unit of ``log_decay_per_unit`` (steps or epochs)
    H : (p, p)                       Hessian whose eigenbasis diagonalises the linear relaxation
    log_decay_per_unit : (p,)        ``log phi_k`` per time unit, in the order of ``eigh(H)``
    ref : (p,)                       reference point (the predicted mean); estimates are about it
    groups : list of slices          independent groups of chains (standard errors from their spread)

    Snapshots in the second half of the run are averaged; each group gives one estimate.
    """
    _, V = np.linalg.eigh(H)
    z = (snapshots - ref) @ V                                   # eigen-coordinates
    late = np.nonzero(times >= times[-1] / 2)[0]
    late = late[times[late] > 0]
    phi = np.exp(np.outer(times[late], log_decay_per_unit))      # (L, p)
    phi2 = phi[:, :, None] * phi[:, None, :]
    means, covs, plain = [], [], []
    for g in groups:
        zg = z[g]
        m = zg.mean(0)                                           # (J + 1, p)
        dz = zg - m
        C = np.einsum("ktp,ktq->tpq", dz, dz) / (zg.shape[0] - 1)
        m_hat = ((m[late] - phi * m[0]) / (1 - phi)).mean(0)
        C_hat = ((C[late] - phi2 * C[0]) / (1 - phi2)).mean(0)
        means.append(ref + V @ m_hat)
        covs.append(V @ C_hat @ V.T)
        plain.append(np.diagonal(C[late], axis1=1, axis2=2).mean(0))
    means, covs = np.array(means), np.array(covs)
    eig_covs = np.einsum("pi,gpq,qi->gi", V, covs, V)
    se = lambda a: a.std(0, ddof=1) / math.sqrt(len(groups))  # noqa: E731
    return {"mean": means.mean(0), "mean_se": se(means), "cov": covs.mean(0), "cov_se": se(covs),
            "eig_var": eig_covs.mean(0), "eig_var_se": se(eig_covs),
            "cov_uncorrected_eig": np.mean(plain, axis=0),
            "relaxed_fraction": 1 - np.exp(2 * times[-1] * log_decay_per_unit)}


def group_mean(per_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return per_group.mean(0), per_group.std(0, ddof=1) / math.sqrt(per_group.shape[0])


# --------------------------------------------------------------------------- the two schemes


def check_config(config: Config, steps_per_epoch: int) -> None:
    if steps_per_epoch < 1:  # b > N
        check_int_range("batch_size", config.batch_size, 1, config.n)
    if config.segment % steps_per_epoch or any(config.segment % k for k in config.ft_windows):
        raise ValueError(f"segment = {config.segment} must be a multiple of M = {steps_per_epoch} and of every FT "
                         f"window {config.ft_windows}")
    if config.segment % config.model_free_thin:
        raise ValueError(f"segment = {config.segment} must be a multiple of model_free_thin = {config.model_free_thin}")
    if config.steps < 2 * config.segment:
        raise ValueError(f"steps = {config.steps} must cover at least two segments of {config.segment}")
    if not 2 <= config.groups <= config.chains:
        raise ValueError(f"groups = {config.groups} must be between 2 and chains = {config.chains}")
    if config.dft_window not in config.ft_windows:
        raise ValueError(f"dft_window = {config.dft_window} must be one of ft_windows {config.ft_windows}")


def footprint(config: Config) -> tuple[float, float]:
    """Lower bounds (bytes) on memory and disk: the arrays of :func:`simulate_wr` and :func:`simulate_wor`
    (kept in memory and saved to the checkpoints) and one segment's path and its temporaries."""
    segments = config.steps // config.segment
    mf = min(config.model_free_chains, config.chains)
    kept = 8.0 * (config.chains * (segments + 1) * P + config.chains * min(config.ft_steps, config.steps)
                  + mf * (config.steps // config.model_free_thin + 1) * P)
    wor = 8.0 * config.chains * (segments + 1) * P
    return kept + wor + 3 * 8.0 * config.chains * (config.segment + 1) * P, kept + wor


def simulate_wr(problem, config: Config, theory, rng, progress, store=None) -> dict:
    """WR chains from ``N(w*, Sigma_WR)``: moments, areal velocity, entropy production, FT windows.

    Everything kept across segments is preallocated: small long-lived arrays created between the
    segments' large temporaries fragment the heap and made the resident memory grow by a segment
    per segment.
    """
    groups = chain_groups(config.chains, config.groups)
    state = theory.state
    segments, thin = config.steps // config.segment, config.model_free_thin
    mf = min(config.model_free_chains, config.chains)
    ft = min(config.ft_steps, segments * config.segment)
    snapshots = np.empty((config.chains, segments + 1, P))
    areal = np.empty((segments, len(groups), P, P))
    sigma_ft = np.empty((config.chains, ft))
    mf_path = np.empty((mf, segments * config.segment // thin + 1, P))
    ep_sum = np.zeros(config.chains)
    snapshots[:, 0] = gaussian_draws(state.mean, state.Sigma, config.chains, rng)

    def on_segment(j, path):
        snapshots[:, j + 1] = path[:, -1]
        areal[j] = [areal_velocity(path[g], mean=state.mean).value for g in groups]
        sigma = entropy_production_steps(path, state)          # (chains, segment), midpoint rule
        ep_sum[:] += sigma.sum(1)
        start = j * config.segment
        if start < ft:
            sigma_ft[:, start:start + config.segment] = sigma[:, : ft - start]
        per = config.segment // thin
        mf_path[:, j * per:(j + 1) * per] = path[:mf, : config.segment: thin]

    final = run_segments(problem, config, "wr", snapshots[:, 0], 1, on_segment, progress, store,
                         {"snapshots": snapshots, "areal": areal, "sigma_ft": sigma_ft, "mf_path": mf_path,
                          "ep_sum": ep_sum})
    mf_path[:, -1] = final[:mf]
    times = config.segment * np.arange(segments + 1, dtype=float)
    lam = np.linalg.eigvalsh(state.H)
    moments = relaxation_corrected_moments(snapshots, times, state.H, np.log1p(-config.lr * lam), state.mean, groups)
    A, A_se = group_mean(areal.mean(0))                        # average over segments, spread over groups
    ep = chain_mean((ep_sum / times[-1])[:, None])
    return {"moments": moments, "A": A, "A_se": A_se, "ep_rate": float(ep.value), "ep_rate_se": float(ep.stderr),
            "sigma_ft": sigma_ft, "model_free_path": mf_path, "final": final}


def simulate_wor(problem, config: Config, theory, rng, progress, store=None) -> dict:
    """WOR chains from ``N(w_eff, Sigma_WOR)``, observed at epoch boundaries: relaxation-corrected moments."""
    groups = chain_groups(config.chains, config.groups)
    m = theory.steps_per_epoch
    segments = config.steps // config.segment
    snapshots = np.empty((config.chains, segments + 1, P))
    snapshots[:, 0] = gaussian_draws(theory.w_eff, theory.Sigma, config.chains, rng)

    def on_segment(j, path):
        snapshots[:, j + 1] = path[:, -1]

    final = run_segments(problem, config, "wor", snapshots[:, 0], m, on_segment, progress, store,
                         {"snapshots": snapshots})
    times = (config.segment // m) * np.arange(segments + 1, dtype=float)  # in epochs
    lam = np.linalg.eigvalsh(theory.H)
    moments = relaxation_corrected_moments(snapshots, times, theory.H, m * np.log1p(-config.lr * lam),
                                           theory.w_eff, groups)
    return {"moments": moments, "final": final}


def fluctuation_theorems(sigma: np.ndarray, config: Config):
    ift = {str(k): integral_fluctuation_theorem(window_sums(sigma, k), n_boot=config.bootstrap, seed=config.seed + k)
           for k in config.ft_windows}
    dft = detailed_fluctuation_theorem(window_sums(sigma, config.dft_window), bins=config.dft_bins,
                                       n_boot=config.bootstrap, seed=config.seed)
    return ift, dft


def model_free_rate(path: np.ndarray, config: Config) -> dict:
    """Entropy-production rate per step from a linear drift fitted to the thinned WR path."""
    try:
        fit = fit_linear_drift(path, n_boot=max(config.bootstrap // 5, 20), seed=config.seed)
    except ValueError as exc:  # e.g. a fitted soft mode without a stationary state on a short run
        log.warning("model-free fit failed: %s", exc)
        return {"ep_rate": None, "ep_rate_se": None, "Q": None, "error": str(exc)}
    t = config.model_free_thin
    return {"ep_rate": fit.ep_rate / t, "ep_rate_se": fit.ep_rate_stderr / t, "Q": fit.Q / t,
            "transitions": fit.n_transitions, "thin": t}


# --------------------------------------------------------------------------- the study


def find_w_star(problem, data: RegressionData, config: Config):
    start = data.w_min if data.w_min is not None else np.asarray(config.w_init, dtype=float)
    if start.shape != (P,):
        raise ValueError(f"w_init must hold {P} numbers (w1..w7), got {start.size}")
    w_star, result = find_minimum(problem, start)
    return w_star, result, "wmin.txt" if data.w_min is not None else "w_init"


def _z(estimate, reference, se):
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.asarray(estimate) - np.asarray(reference)) / np.asarray(se)


def run(config: Config, out_dir, progress=None, checkpoint_every: float | None = 60.0) -> dict:
    """Run the study (see the module docstring); returns the metrics written to ``out_dir/metrics.json``.

    The per-step tensors are small (chains x b elements); run it with one torch thread
    (``sgworld run`` does by default, see ``--threads``). The simulations save their progress every
    ``checkpoint_every`` seconds; rerunning with the same settings continues from there.
    """
    started = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    problem, data = build_problem(config)
    m = problem.n // config.batch_size
    check_config(config, m)
    check_resources(out_dir, *footprint(config), sizes=f"chains x steps x p = {config.chains} x {config.steps} x {P}")
    store = StudyCheckpoints(out_dir, checkpoint_every, config=config, data=(data.x, data.y, data.w_min))
    write_config(out_dir, config, steps_per_epoch=m, data_source=data.source)
    timings = {}

    tic = time.time()
    w_star, newton, start = find_w_star(problem, data, config)
    H = problem.hessian(torch.as_tensor(w_star)).numpy()
    wr = wr_theory(problem, w_star, config.lr, config.batch_size)
    wor = wor_theory(problem, w_star, config.lr, config.batch_size, epochs=config.wor_epochs, seed=config.seed,
                     progress=progress)
    timings["theory_s"] = time.time() - tic

    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0]))
    tic = time.time()
    sim_wr = simulate_wr(problem, config, wr, rng, progress, store)
    timings["wr_simulation_s"] = time.time() - tic
    tic = time.time()
    sim_wor = simulate_wor(problem, config, wor, rng, progress, store)
    timings["wor_simulation_s"] = time.time() - tic
    tic = time.time()
    ift, dft = fluctuation_theorems(sim_wr["sigma_ft"], config)
    model_free = model_free_rate(sim_wr["model_free_path"], config)
    timings["thermo_s"] = time.time() - tic

    metrics = assemble_metrics(config, data, problem, w_star, newton, start, H, wr, wor, sim_wr, sim_wor, ift, dft,
                               model_free)
    tic = time.time()
    from .regression_plots import write_figures
    metrics["figures"] = write_figures(out_dir, wr, wor, sim_wr, sim_wor, dft, metrics)
    timings["figures_s"] = time.time() - tic
    metrics["timings"] = timings
    metrics["runtime_s"] = time.time() - started
    write_json(out_dir / "metrics.json", metrics)
    store.clear()
    return metrics


def assemble_metrics(config, data, problem, w_star, newton, start, H, wr, wor, sim_wr, sim_wor, ift, dft,
                     model_free) -> dict:
    mw, mo = sim_wr["moments"], sim_wor["moments"]
    lam_wr = np.linalg.eigvalsh(H)
    _, V = np.linalg.eigh(H)
    _, V_eff = np.linalg.eigh(wor.H)
    eig = lambda S, V=V: np.einsum("pi,pq,qi->i", V, S, V)  # noqa: E731  variances along H's eigenvectors
    iu = np.triu_indices(P, 1)
    wr_metrics = {
        "sigma_theory_diag": np.diag(wr.Sigma),
        "sigma_sim_diag": np.diag(mw["cov"]),
        "sigma_sim_diag_se": np.diag(mw["cov_se"]),
        "sigma_z_diag": _z(np.diag(mw["cov"]), np.diag(wr.Sigma), np.diag(mw["cov_se"])),
        "sigma_theory_eig": eig(wr.Sigma),
        "sigma_sim_eig": mw["eig_var"],
        "sigma_sim_eig_se": mw["eig_var_se"],
        "sigma_z_eig": _z(mw["eig_var"], eig(wr.Sigma), mw["eig_var_se"]),
        "sigma_sim_eig_uncorrected": mw["cov_uncorrected_eig"],
        "relaxed_fraction": mw["relaxed_fraction"],
        "sigma_theory": wr.Sigma,
        "sigma_sim": mw["cov"],
        "sigma_sim_se": mw["cov_se"],
        "mean_sim": mw["mean"],
        "mean_sim_se": mw["mean_se"],
        "Q_theory": wr.Q,
        "A_sim": sim_wr["A"],
        "A_sim_se": sim_wr["A_se"],
        "A_z_upper": _z(sim_wr["A"][iu], wr.Q[iu], sim_wr["A_se"][iu]),
        "D": wr.D,
        "S": wr.S,
        "commutator_ratio": wr.commutator_ratio,
        "lr_hmax": wr.lr_hmax,
        "ep_rate_theory": wr.ep_rate,
        "ep_rate_sim": sim_wr["ep_rate"],
        "ep_rate_sim_se": sim_wr["ep_rate_se"],
        "ep_rate_model_free": model_free["ep_rate"],
        "ep_rate_model_free_se": model_free["ep_rate_se"],
        "model_free": {k: v for k, v in model_free.items() if k not in ("ep_rate", "ep_rate_se")},
        "ift": {k: r.ratio for k, r in ift.items()},
        "ift_ci": {k: list(r.ratio_ci) for k, r in ift.items()},
        "ift_mean_exp": {k: r.mean_exp for k, r in ift.items()},
        "ift_mean_exp_ci": {k: list(r.mean_exp_ci) for k, r in ift.items()},
        "ift_mean_delta_s": {k: r.mean_delta_s for k, r in ift.items()},
        "ift_windows": {k: r.n_windows for k, r in ift.items()},
        "dft_window": config.dft_window,
        "dft_slope": dft.slope,
        "dft_slope_ci": list(dft.slope_ci),
        "dft_slope_se": dft.slope_stderr,
        "ft_steps": int(sim_wr["sigma_ft"].shape[1]),
    }
    ed = wor.diffusion
    wor_eig_se = np.diag(wor_sigma_standard_error(wor.H, ed.second_order_displacements, config.lr,
                                                  wor.steps_per_epoch, basis=V_eff))
    wor_metrics = {
        "w_eff_theory": wor.w_eff,
        "w_eff_first_order": wor.effective.w_first_order,
        "w_eff_newton_vs_first_order": wor.effective.difference,
        "shift_theory": wor.w_eff - w_star,
        "mean_sim": mo["mean"],
        "mean_sim_se": mo["mean_se"],
        "shift_sim": mo["mean"] - w_star,
        "mean_z": _z(mo["mean"], wor.w_eff, mo["mean_se"]),
        "shift_relative_error": float(np.linalg.norm(mo["mean"] - wor.w_eff) / np.linalg.norm(wor.w_eff - w_star)),
        "sigma_theory_diag": np.diag(wor.Sigma),
        "sigma_theory_diag_se": np.diag(wor.Sigma_se),
        "sigma_theory_discrete_diag": np.diag(wor.Sigma_discrete),
        "sigma_sim_diag": np.diag(mo["cov"]),
        "sigma_sim_diag_se": np.diag(mo["cov_se"]),
        "sigma_z_diag": _z(np.diag(mo["cov"]), np.diag(wor.Sigma),
                           np.hypot(np.diag(mo["cov_se"]), np.diag(wor.Sigma_se))),
        "sigma_theory_eig": eig(wor.Sigma, V_eff),
        "sigma_theory_eig_se": wor_eig_se,
        "sigma_theory_discrete_eig": eig(wor.Sigma_discrete, V_eff),
        "sigma_sim_eig": mo["eig_var"],
        "sigma_sim_eig_se": mo["eig_var_se"],
        "sigma_z_eig": _z(mo["eig_var"], eig(wor.Sigma, V_eff), np.hypot(mo["eig_var_se"], wor_eig_se)),
        "sigma_discrete_z_eig": _z(mo["eig_var"], eig(wor.Sigma_discrete, V_eff), np.hypot(mo["eig_var_se"], np.diag(
            wor_sigma_standard_error(wor.H, ed.displacements, config.lr, wor.steps_per_epoch, basis=V_eff)))),
        "relaxed_fraction": mo["relaxed_fraction"],
        "sigma_theory": wor.Sigma,
        "sigma_sim": mo["cov"],
        "D_epoch_second_order": ed.D_second_order,
        "D_epoch_simulated": ed.D,
        "D_epoch_se": ed.D_se,
        "D_epoch_relative_difference_eig": eig(ed.D, V_eff) / eig(ed.D_second_order, V_eff) - 1,
        "lr_M_hmax": wor.lr_M_hmax,
        "steps_per_epoch": wor.steps_per_epoch,
        "variance_ratio_wr_over_wor_eig": eig(wr.Sigma) / eig(wor.Sigma, V_eff),
    }
    return {
        "data": {"source": data.source, "n": problem.n, "newton_start": start},
        "lr": config.lr,
        "batch_size": config.batch_size,
        "w_star": w_star,
        "newton": {"iterations": newton.iterations, "grad_norm": newton.grad_norm, "step_norm": newton.step_norm,
                   "loss": newton.value, "regularised_steps": newton.regularised_steps},
        "hessian_eigenvalues": lam_wr,
        "wr": wr_metrics,
        "wor": wor_metrics,
        "simulation": {
            "chains": config.chains, "steps": config.steps, "groups": config.groups,
            "init": "chains start from the predicted stationary Gaussian: N(w*, Sigma_WR) for wr, N(w_eff, Sigma_WOR) "
                    "for wor (observed at epoch boundaries). A linear process started in its stationary law has "
                    "no transient, so no burn-in; moments use the relaxation-corrected estimator (module "
                    "docstring), whose standard errors grow for modes with small relaxed_fraction.",
            "standard_errors": f"spread over {config.groups} independent groups of chains",
        },
    }


# --------------------------------------------------------------------------- report (sgworld report)


FIGURES = {
    "sigma_theory_vs_sim.png": "Stationary variances of WR and WOR: simulation (relaxation-corrected) against the "
                               "Lyapunov theory, and their ratio per Hessian eigenmode",
    "circulation_Q_vs_A.png": "Probability circulation of WR: measured areal velocity A against the theory "
                              "Q = (lr/2)(H Sigma - Sigma H)",
    "entropy_production_dft.png": "Window entropy production of WR: its histogram, and ln P(ds)/P(-ds) against the "
                                  "slope-1 line of the detailed fluctuation theorem",
    "stationary_clouds.png": "WR and WOR stationary clouds in the top two principal directions of Sigma_WR, with the "
                             "theory's 2-SD ellipses, w* and w_eff",
}

Z_CHECK = 5.0  # as in the tests: two-sided normal tail 5.7e-7 per compared number


def _z_check(name: str, z, note: str = "") -> Check:
    """Largest |z| of a set of z-scores; a missing (non-finite) z fails."""
    z = [math.nan if v is None else float(v) for v in np.ravel(np.asarray(z, dtype=object))]
    if not all(map(math.isfinite, z)):
        return Check(name, None, 0.0, f"|z| < {Z_CHECK:g}", False, f"non-finite z-score among {len(z)}")
    worst = max(map(abs, z))
    return Check(name, worst, 0.0, f"|z| < {Z_CHECK:g}", worst < Z_CHECK, f"{len(z)} numbers; {note}".rstrip("; "))


def _rate_check(name: str, value, se, theory, missing: str) -> Check:
    if value is None or se is None or not se > 0:
        return Check(name, value, theory, f"|z| < {Z_CHECK:g}", None, missing)
    z = (value - theory) / se
    return Check(name, value, theory, f"|z| < {Z_CHECK:g}", abs(z) < Z_CHECK, f"z = {z:+.2f} (SE {se:.2g})")


def _relative_range(sim, theory) -> str:
    ratio = np.asarray(sim, dtype=float) / np.asarray(theory, dtype=float) - 1
    return f"simulation / theory - 1 from {ratio.min():+.1%} to {ratio.max():+.1%}"


def checks(metrics: dict) -> list[Check]:
    """The study's headline numbers against theory: z-scores at the tests' 5 SE, the fluctuation
    theorems within their 95% bootstrap intervals."""
    wr, wor = metrics["wr"], metrics["wor"]
    out = [
        _z_check("WR: Sigma diagonal vs Lyapunov theory, max |z|", wr["sigma_z_diag"],
                 _relative_range(wr["sigma_sim_diag"], wr["sigma_theory_diag"])),
        _z_check("WR: areal velocity A vs circulation Q, max |z|", wr["A_z_upper"],
                 f"|Q| up to {np.max(np.abs(np.asarray(wr['Q_theory'], dtype=float))):.2g}"),
        _rate_check("WR: entropy production per step, simulated", wr["ep_rate_sim"], wr["ep_rate_sim_se"],
                    wr["ep_rate_theory"], "no standard error"),
        _rate_check("WR: entropy production per step, model-free", wr["ep_rate_model_free"],
                    wr["ep_rate_model_free_se"], wr["ep_rate_theory"],
                    "not available: the drift fit failed: " + str(wr["model_free"].get("error", "no standard error"))),
        Check("WR: commutator ratio ||[H, D]|| / ||H D||", wr["commutator_ratio"],
              note="0 when H and D commute (then no circulation)"),
    ]
    for k, ratio in wr["ift"].items():
        lo, hi = wr["ift_ci"][k]
        ok = None if None in (ratio, lo, hi) else lo <= 0 <= hi
        out.append(Check(f"IFT figure of merit (<exp(-ds)> - 1) / <ds>, window {k}", ratio, 0.0,
                         "0 within the 95% CI", ok,
                         f"95% CI [{lo:.3g}, {hi:.3g}]" if ok is not None else "no bootstrap interval"))
    lo, hi = wr["dft_slope_ci"]
    out.append(Check(f"DFT slope of ln P(ds)/P(-ds), window {wr['dft_window']}", wr["dft_slope"], 1.0,
                     "1 within the 95% CI", None if None in (wr["dft_slope"], lo, hi) else lo <= 1 <= hi,
                     f"95% CI [{lo:.3g}, {hi:.3g}]" if None not in (lo, hi) else "no bootstrap interval"))
    out += [
        _z_check("WOR: stationary mean vs w_eff = argmin L_eff, max |z|", wor["mean_z"],
                 f"shift w_eff - w*: simulation within {wor['shift_relative_error']:.1%} of theory"),
        _z_check("WOR: Sigma diagonal vs theory, max |z|", wor["sigma_z_diag"],
                 _relative_range(wor["sigma_sim_diag"], wor["sigma_theory_diag"])),
        Check("WOR: lr M h_max", wor["lr_M_hmax"], None, "< 0.1", wor["lr_M_hmax"] < 0.1,
              "the WOR theory is an expansion in lr M h_max"),
    ]
    ratio = np.asarray(wor["variance_ratio_wr_over_wor_eig"], dtype=float)
    out.append(Check("WR / WOR stationary variance per eigenmode (theory), smallest", float(ratio.min()), None,
                     "> 1e3", bool(ratio.min() > 1e3), f"from {ratio.min():.3g} to {ratio.max():.3g}"))
    gap = np.abs(np.asarray(wor["D_epoch_relative_difference_eig"], dtype=float))
    out.append(Check("WOR: per-epoch diffusion, simulated vs second-order formula, max relative gap",
                     float(gap.max()), note="third order in lr M h; Sigma_WOR uses the simulated D"))
    out.append(Check("Newton: |grad U(w*)|", metrics["newton"]["grad_norm"],
                     note=f"{metrics['newton']['iterations']} iterations from {metrics['data']['newton_start']}"))
    return out
