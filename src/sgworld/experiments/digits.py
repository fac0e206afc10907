"""Digits study: SGD out of equilibrium and SGLD / SGWORLD posterior sampling of a softmax classifier.

Data. The packaged 8 x 8 digits (:func:`sgworld.datasets.load_digits`: 1,400 train / 397 test
images) or MNIST from disk (``data``: the four IDX files or an ``.npz``, :func:`sgworld.datasets.load_mnist`).
Pixels are centred with the training mean and projected on the top ``pca_dim = d`` principal
components of the training images, each scaled to unit training variance (whitened), so constant
pixels (several of the 64 are always 0) drop out and the raw intensity scale does not matter.

Model. Softmax regression on the d features plus a bias, with class 0 as the reference class
(its weights fixed at 0): ``p(c | x, w) = softmax([0, x~ W])_c``, ``x~ = (x, 1)``, ``W`` of shape
(d + 1, C - 1), ``p = (d + 1)(C - 1)`` (d = 16, C = 10: p = 153). Fixing the gauge matters: adding
one vector to every class's weights leaves the likelihood unchanged, so with all C classes free the
per-sample gradients have no component along those d + 1 directions and S, D are singular
(D^{-1}, hence the entropy production, would be undefined). The DESIGN normalisation with a
Gaussian prior of standard deviation ``prior_std`` on every weight:
``U_i(w) = -N log p(y_i | x_i, w) + |w|^2 / (2 prior_std^2)``.

Part (a), out of equilibrium (arXiv 2306.03521; as :mod:`sgworld.experiments.regression`):
``w*`` by Newton's method; at ``w*`` the ``wr`` theory (H, S, D, Sigma, Q, entropy-production rate)
and the ``wor`` theory (``w_eff = argmin L_eff``, per-epoch D_WOR, Sigma_WOR), with
``lr = lr_M_hmax / (M h_max)`` so that the WOR expansion holds (``lr M h_max = 0.05``, M = N/b);
many SGD chains per scheme started from the predicted stationary Gaussian; relaxation-corrected
moments (the soft modes relax in ``1/(lr h_min)`` ~ 4e4 steps, longer than the run); the areal
velocity; the per-step entropy production (midpoint rule) with the integral and detailed
fluctuation theorems; and the stationary probability current in the plane of largest circulation.

Plane of largest circulation. In whitened coordinates ``z = Sigma^{-1/2} (w - w_bar)`` the
stationary velocity ``v = -Q Sigma^{-1} (w - w_bar)`` becomes ``dz = -Omega z`` with
``Omega = Sigma^{-1/2} Q Sigma^{-1/2}`` antisymmetric; its eigenvalues ``+-i omega_k`` are the rotation
rates (radians per step, or per epoch for WOR) of the current in invariant planes. The figure shows
the plane with the largest ``omega``, the cloud's density there (a unit Gaussian if the theory holds)
and the projected velocity field; ``omega`` is also measured from the areal velocity A (which
estimates Q).

Part (b), in equilibrium (the application): SGLD (``wr``) and SGWORLD (``wor``) at T = 1 for several
learning rates ``lr = sampler_lr_hmax / h_max``, chains started from the reference posterior's draws
(so no long burn-in is spent on the slow soft modes), the posterior predictive on the test set
(accuracy, NLL, ECE with equal-width bins, reliability diagram, :mod:`sgworld.predictive`), and the
mean total-variation distance of each predictive to the reference: MALA chains (or look-ahead HMC
with ``reference_method = "lahmc"``) started from the Laplace approximation ``N(w*, H^{-1})``; its cost
(seconds and gradients per effective draw of the worst parameter) is recorded. ``tv_floor`` is the Monte Carlo floor of that distance
(the TV between the predictives of two halves of the reference chains, divided by sqrt 2: what two
independent estimates of the same predictive from this many chains differ by).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import diagnostics, predictive
from .._checks import check_choice, check_class_labels, check_int_range
from ..datasets import ImageData, load_images
from ..problems import Problem
from ..run import sample
from ..theory.point import find_minimum, wor_sigma_standard_error, wor_theory, wr_theory
from ..thermo.trajectory import areal_velocity, chain_mean, entropy_production_steps
from .common import Check, StudyCheckpoints, check_resources, write_config, write_json
from .regression import (
    chain_groups,
    fluctuation_theorems,
    gaussian_draws,
    group_mean,
    relaxation_corrected_moments,
    run_segments,
)

DESCRIPTION = "Softmax classifier on handwritten digits: SGD out of equilibrium (wr vs wor), SGLD vs SGWORLD predictive"

SAMPLERS = ("sgld", "sgworld")
REFERENCE_METHODS = ("mala", "lahmc")  # exact reference samplers (reference_method)


@dataclass(frozen=True)
class Config:
    data: str | None = None        # MNIST: folder with the four IDX files, or .npz; None: packaged digits
                                   # [a path, or none]
    pca_dim: int = 16              # d whitened principal components; p = (d + 1)(C - 1) [1 <= d <= pixels]
    n_train: int | None = None     # first n training images (None: all); truncated to a multiple of b
                                   # [>= 2 b, or none]
    prior_std: float = 1.0         # Gaussian prior on every weight [> 0]
    batch_size: int = 70           # b (digits: N = 1400, M = 20 steps per epoch) [1 <= b <= N/2]
    # part (a): SGD out of equilibrium
    lr: float | None = None        # SGD lr; None: lr_M_hmax / (M h_max) [> 0, or none]
    lr_M_hmax: float = 0.05        # SGD's lr M h_max when lr is None [> 0]
    chains: int = 256              # chains per scheme [>= groups]
    steps: int = 3600              # SGD steps per chain and scheme [>= 2 segments]
    segment: int = 60              # steps per recorded segment [a multiple of M and of every FT window]
    groups: int = 16               # independent groups of chains for standard errors [2 <= groups <= chains]
    ft_windows: tuple[int, ...] = (1, 2, 5, 10)  # windows (steps) of the integral FT
                                   # [each >= 1 and dividing segment]
    ft_steps: int = 3600           # steps (from the start) whose entropy production feeds the FTs [>= 1]
    dft_window: int = 10           # window of the detailed-FT histogram [one of ft_windows]
    dft_bins: int = 20             # histogram bins of the detailed FT [>= 2]
    bootstrap: int = 500           # bootstrap replicates of the FT intervals [>= 1]
    wor_epochs: int = 4000         # permutations behind D_WOR (its Monte Carlo error ~2%) [>= 1]
    # part (b): posterior sampling at T = 1
    sampler_lr_hmax: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)  # lr h_max of the SGLD / SGWORLD runs
                                   # [each > 0 and < 2]
    sampler_chains: int = 128      # chains per run (and of the reference) [even, >= 4]
    sampler_burn_in: int = 600     # burn-in steps of each SGLD / SGWORLD run [>= 0]
    sampler_draws: int = 30        # recorded draws per chain of each run [>= 1]
    sampler_thin: int = 20         # a multiple of M keeps SGWORLD's draws at epoch boundaries [>= 1]
    reference_lr_hmax: float = 0.5  # MALA step [> 0]
    reference_burn_in: int = 600   # burn-in steps of the MALA reference [>= 0]
    reference_draws: int = 40      # recorded draws per chain of the reference [>= 1]
    reference_thin: int = 20       # thinning of the reference [>= 1]
    reference_method: str = "mala"  # reference sampler [mala or lahmc]; LAHMC's leapfrog step is
                                   # eps = sqrt(2 reference_lr_hmax / h_max) (MALA = one leapfrog step of that eps)
    reference_leapfrog_steps: int = 10  # LAHMC: leapfrog steps M per leap [>= 1]
    reference_look_ahead: int = 4  # LAHMC: look-ahead leaps K [>= 1]
    reference_beta: float = 0.1    # LAHMC: partial momentum refresh beta [> 0 and <= 1]
    ece_bins: int = predictive.ECE_BINS  # bins of the expected calibration error [>= 1]
    seed: int = 0                  # random seed of the chains, the WOR theory and the bootstrap [>= 0]


QUICK = {"pca_dim": 8, "chains": 64, "steps": 600, "groups": 8, "ft_steps": 600, "bootstrap": 100,
         "wor_epochs": 300, "sampler_lr_hmax": (0.1, 1.0), "sampler_chains": 32, "sampler_burn_in": 200,
         "sampler_draws": 10, "sampler_thin": 20, "reference_burn_in": 200, "reference_draws": 10,
         "reference_thin": 10}

FIGURES = {
    "digits_sigma_theory_vs_sim.png": "Stationary variances of SGD (wr, wor): relaxation-corrected simulation "
                                      "against the Lyapunov theory, per parameter and per Hessian eigenmode.",
    "digits_entropy_production_dft.png": "Entropy production of SGD (wr) over 10-step windows and the detailed "
                                         "fluctuation theorem ln P(ds)/P(-ds) = ds.",
    "digits_probability_current.png": "Stationary probability current in the plane of largest circulation "
                                      "(whitened coordinates): cloud density and projected velocity, wr and wor.",
    "digits_predictive_vs_lr.png": "SGLD vs SGWORLD over lr: TV distance of the test predictive to the MALA "
                                   "reference, NLL, ECE and accuracy.",
    "digits_reliability.png": "Reliability diagrams of the test predictive: SGLD, SGWORLD and the reference.",
}


# --------------------------------------------------------------------------- data and model


@dataclass(frozen=True, eq=False)
class Features:
    """Whitened PCA features with a bias column: ``x_train`` (N, d + 1), ``x_test`` (n, d + 1)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    explained_variance: float      # fraction of the training pixel variance kept by the d components
    dropped: int                   # training images dropped to make N a multiple of b
    source: str


def make_features(data: ImageData, pca_dim: int, batch_size: int, n_train: int | None = None) -> Features:
    """Centre, project on the top ``pca_dim`` principal components of the training set, whiten, add a bias."""
    x_tr, y_tr = data.x_train.reshape(len(data.x_train), -1), data.y_train
    if n_train is not None:
        if n_train < 1:
            raise ValueError(f"n_train must be >= 1, got {n_train}")
        x_tr, y_tr = x_tr[:n_train], y_tr[:n_train]
    keep = (len(x_tr) // batch_size) * batch_size
    if keep < 2 * batch_size:
        raise ValueError(f"batch_size = {batch_size} needs at least 2 batches of training images, got {len(x_tr)}")
    dropped = len(x_tr) - keep
    x_tr, y_tr = x_tr[:keep], y_tr[:keep]
    if not 1 <= pca_dim <= x_tr.shape[1]:
        raise ValueError(f"pca_dim must be between 1 and the {x_tr.shape[1]} pixels, got {pca_dim}")
    mu = x_tr.mean(0)
    lam, V = np.linalg.eigh(np.cov(x_tr - mu, rowvar=False))
    lam, V = lam[::-1], V[:, ::-1]
    if lam[pca_dim - 1] <= 1e-12 * lam[0]:
        raise ValueError(f"the training images span fewer than pca_dim = {pca_dim} directions; lower pca_dim")
    scale = V[:, :pca_dim] / np.sqrt(lam[:pca_dim])

    def transform(x):
        return np.hstack([(x.reshape(len(x), -1) - mu) @ scale, np.ones((len(x), 1))])

    return Features(transform(x_tr), y_tr, transform(data.x_test), data.y_test, data.num_classes,
                    float(lam[:pca_dim].sum() / lam.sum()), dropped, data.source)


class SoftmaxRegression(Problem):
    r"""Softmax regression with a reference class: ``p(c | x, w) = softmax([0, x W])_c`` (module docstring).

    ``U_i(w) = -N log p(y_i | x_i, w) + |w|^2 / (2 prior_std^2)``, ``w = vec(W)``, W (d + 1, C - 1) with the
    bias row included in ``x``. ``batch_grad`` (the sampler's hot path) is the gradient written out,
    ``N x (p - e_y)^T`` over the non-reference classes plus ``w / prior_std^2``; a test checks it
    against ``torch.func`` on the potential.
    """

    def __init__(self, x, y, num_classes: int, prior_std: float = 1.0, dtype: torch.dtype = torch.float64):
        x = torch.as_tensor(x, dtype=dtype)
        y = check_class_labels(y, int(num_classes), missing="refuse",
                               fix="every class needs training samples for the analysis (an absent class makes "
                                   "S and D singular): drop the class and relabel, or raise n_train")
        if x.ndim != 2 or y.shape != x.shape[:1]:
            raise ValueError(f"x must be (N, features) and y (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
        if not prior_std > 0:
            raise ValueError(f"prior_std must be > 0, got {prior_std!r}")
        self.features, self.num_classes = x.shape[1], int(num_classes)
        self.precision = 1.0 / prior_std**2
        self.scale = float(x.shape[0])  # N
        super().__init__(self._potential, (x, y), self.features * (num_classes - 1), name="softmax_regression")

    def logits(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[0, x W]`` of inputs ``x`` (..., n, d + 1) for parameters ``w`` (..., p): (..., n, C)."""
        W = w.reshape(*w.shape[:-1], self.features, self.num_classes - 1)
        z = x @ W
        return torch.cat([torch.zeros_like(z[..., :1]), z], dim=-1)

    def _potential(self, w, x, y):
        nll = -torch.log_softmax(self.logits(w, x), -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        return self.scale * nll + 0.5 * self.precision * (w * w).sum()

    def batch_grad(self, w, idx=None):
        self.check_params(w)
        k, c = w.shape[0], self.num_classes
        if idx is None:  # full batch (MALA, Newton): two GEMMs over all chains at once, (N, d+1) x (d+1, K (C-1))
            x, y = self.data
            W = w.reshape(k, self.features, c - 1).permute(1, 0, 2).reshape(self.features, -1)
            z = (x @ W).reshape(-1, k, c - 1)                                    # (N, K, C - 1)
            r = torch.softmax(torch.cat([torch.zeros_like(z[..., :1]), z], -1), -1)
            r = r - torch.nn.functional.one_hot(y, c).to(r.dtype).unsqueeze(1)
            g = (x.T @ r[..., 1:].reshape(x.shape[0], -1)).reshape(self.features, k, c - 1).permute(1, 0, 2)
            g = g / x.shape[0]
        else:
            x, y = self.gather(idx)                                             # (K, b, d + 1), (K, b)
            r = torch.softmax(self.logits(w, x), -1) - torch.nn.functional.one_hot(y, c).to(w.dtype)
            g = torch.bmm(x.transpose(1, 2), r[..., 1:]) / x.shape[1]
        return self.scale * g.reshape(k, -1) + self.precision * w

    def class_probabilities(self, w, x, chunk: int = 512) -> np.ndarray:
        """Mean over the draws ``w`` (S, p) of the class probabilities of inputs ``x`` (n, d + 1): (n, C)."""
        w = torch.as_tensor(np.asarray(w).reshape(-1, self.dim), dtype=self.dtype)
        x = torch.as_tensor(x, dtype=self.dtype)
        total = torch.zeros(x.shape[0], self.num_classes, dtype=self.dtype)
        with torch.no_grad():
            for s in range(0, w.shape[0], chunk):
                total += torch.softmax(self.logits(w[s:s + chunk], x), -1).sum(0)
        return (total / w.shape[0]).numpy()


def build_problem(config: Config) -> tuple[SoftmaxRegression, Features]:
    feats = make_features(load_images(config.data), config.pca_dim, config.batch_size, config.n_train)
    return SoftmaxRegression(feats.x_train, feats.y_train, feats.num_classes, config.prior_std), feats


def check_config(config: Config, steps_per_epoch: int) -> None:
    if config.segment % steps_per_epoch or any(config.segment % k for k in config.ft_windows):
        raise ValueError(f"segment = {config.segment} must be a multiple of M = {steps_per_epoch} and of every FT "
                         f"window {config.ft_windows}")
    if config.steps < 2 * config.segment:
        raise ValueError(f"steps = {config.steps} must cover at least two segments of {config.segment}")
    if not 2 <= config.groups <= config.chains:
        raise ValueError(f"groups = {config.groups} must be between 2 and chains = {config.chains}")
    if config.dft_window not in config.ft_windows:
        raise ValueError(f"dft_window = {config.dft_window} must be one of ft_windows {config.ft_windows}")
    if config.sampler_chains < 4 or config.sampler_chains % 2:
        raise ValueError(f"sampler_chains must be even and >= 4 (the TV floor splits them), got {config.sampler_chains}")
    if not config.sampler_lr_hmax or min(config.sampler_lr_hmax) <= 0 or config.reference_lr_hmax <= 0:
        raise ValueError("sampler_lr_hmax and reference_lr_hmax must be positive")
    check_choice("reference_method", config.reference_method, REFERENCE_METHODS)
    check_int_range("reference_leapfrog_steps", config.reference_leapfrog_steps, 1)
    check_int_range("reference_look_ahead", config.reference_look_ahead, 1)
    if not 0 < config.reference_beta <= 1:
        raise ValueError(f"reference_beta = {config.reference_beta} is out of range; allowed: 0 < reference_beta <= 1")
    if max(config.sampler_lr_hmax) >= 2:
        raise ValueError(f"sampler_lr_hmax = {max(config.sampler_lr_hmax)} >= 2: SGLD and SGWORLD at lr * h_max >= 2 "
                         "have no stationary state (their chains diverge); the stability limit is lr < 2 / h_max: "
                         "use values well below 2")


# --------------------------------------------------------------------------- part (a): out of equilibrium


def top_circulation_plane(Q: np.ndarray, Sigma: np.ndarray) -> dict:
    """The invariant plane of largest rotation rate of ``Omega = Sigma^{-1/2} Q Sigma^{-1/2}`` (module docstring).

    Returns ``omega`` (rotation rate, rad per time unit), ``basis`` (p, 2) orthonormal in whitened
    coordinates, oriented so that ``e1^T Omega e2 = -omega`` (the flow ``dz = -Omega z`` turns e1
    towards e2), ``whiten`` (p, p) = ``Sigma^{-1/2}`` and all rates ``omegas`` (descending).
    """
    lam, V = np.linalg.eigh(0.5 * (Sigma + Sigma.T))
    whiten = (V / np.sqrt(lam)) @ V.T
    omega_mat = whiten @ Q @ whiten
    ev, U = np.linalg.eig(0.5 * (omega_mat - omega_mat.T))
    k = int(np.argmax(np.abs(ev.imag)))
    e1, e2 = U[:, k].real, U[:, k].imag
    e1 /= np.linalg.norm(e1)
    e2 -= (e2 @ e1) * e1
    e2 /= np.linalg.norm(e2)
    if e1 @ omega_mat @ e2 > 0:
        e2 = -e2
    rates = np.sort(np.abs(ev.imag))[::-2]  # each rate appears as a +- pair
    return {"omega": float(-(e1 @ omega_mat @ e2)), "basis": np.stack([e1, e2], 1), "whiten": whiten,
            "omegas": rates}


def footprint(config: Config, p: int) -> tuple[float, float]:
    """Lower bounds (bytes) on memory and disk: the snapshots and entropy production of both schemes, one
    segment's path, and the sampler runs' draws (kept in the checkpoints until the study ends)."""
    segments = config.steps // config.segment
    kept = 8.0 * config.chains * (2 * (segments + 1) * p + min(config.ft_steps, config.steps))
    traces = 8.0 * config.sampler_chains * p * (2 * len(config.sampler_lr_hmax) * config.sampler_draws
                                                + config.reference_draws)
    return kept + traces + 2 * 8.0 * config.chains * (config.segment + 1) * p, kept + traces


def simulate(problem, config: Config, scheme: str, state, H: np.ndarray, rng, progress,
             store: StudyCheckpoints | None = None) -> dict:
    """SGD chains of ``scheme`` from ``N(state.mean, state.Sigma)``, recorded per step (wr) or per epoch (wor).

    Returns relaxation-corrected moments, the areal velocity (per group: standard errors), the
    late snapshots for the density figure and, for ``wr``, the per-step entropy production.
    """
    m = problem.n // config.batch_size
    thin = 1 if scheme == "wr" else m
    groups = chain_groups(config.chains, config.groups)
    segments = config.steps // config.segment
    snapshots = np.empty((config.chains, segments + 1, problem.dim))
    snapshots[:, 0] = gaussian_draws(state.mean, state.Sigma, config.chains, rng)
    areal = np.zeros((len(groups), problem.dim, problem.dim))
    ft = min(config.ft_steps, segments * config.segment) if scheme == "wr" else 0
    sigma_ft = np.empty((config.chains, ft))
    ep_sum = np.zeros(config.chains)

    def on_segment(j, path):
        snapshots[:, j + 1] = path[:, -1]
        areal[:] += [areal_velocity(path[g], mean=state.mean).value for g in groups]
        if scheme == "wr":
            sigma = entropy_production_steps(path, state)  # (chains, segment), midpoint rule
            ep_sum[:] += sigma.sum(1)
            start = j * config.segment
            if start < ft:
                sigma_ft[:, start:start + config.segment] = sigma[:, :ft - start]

    run_segments(problem, config, scheme, snapshots[:, 0], thin, on_segment, progress, store,
                 {"snapshots": snapshots, "areal": areal, "sigma_ft": sigma_ft, "ep_sum": ep_sum})
    unit = config.segment // thin                                   # steps (wr) or epochs (wor) per segment
    times = unit * np.arange(segments + 1, dtype=float)
    log_decay = thin * np.log1p(-config.lr * np.linalg.eigvalsh(H))
    out = {"moments": relaxation_corrected_moments(snapshots, times, H, log_decay, state.mean, groups),
           "areal_groups": areal / segments, "cloud": snapshots[:, segments // 2 + 1:].reshape(-1, problem.dim)}
    if scheme == "wr":
        ep = chain_mean((ep_sum / times[-1])[:, None])
        out.update(ep_rate=float(ep.value), ep_rate_se=float(ep.stderr), sigma_ft=sigma_ft)
    return out


def _z(estimate, reference, se):
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.asarray(estimate) - np.asarray(reference)) / np.asarray(se)


def _eig(S: np.ndarray, V: np.ndarray) -> np.ndarray:
    return np.einsum("pi,pq,qi->i", V, S, V)


def _circulation_metrics(state, sim: dict) -> dict:
    plane = top_circulation_plane(state.Q, state.Sigma)
    P = plane["whiten"] @ plane["basis"]                           # w-space -> plane coordinates
    per_group = -np.einsum("i,gij,j->g", P[:, 0], sim["areal_groups"], P[:, 1])
    omega_sim, omega_se = group_mean(per_group)
    return {"omega_theory": plane["omega"], "omega_sim": float(omega_sim), "omega_sim_se": float(omega_se),
            "omega_z": float(_z(omega_sim, plane["omega"], omega_se)), "omegas_theory_top5": plane["omegas"][:5],
            "plane": plane}


def _moment_metrics(sim: dict, Sigma: np.ndarray, V: np.ndarray, sigma_se_theory=None) -> dict:
    mo = sim["moments"]
    th_eig = _eig(Sigma, V)
    se_eig = mo["eig_var_se"] if sigma_se_theory is None else np.hypot(mo["eig_var_se"], sigma_se_theory)
    rel = mo["eig_var"] / th_eig - 1
    tr_sim, tr_th = np.trace(mo["cov"]), np.trace(Sigma)
    tr_se = math.sqrt(np.sum(np.diag(mo["cov_se"]) ** 2))  # groups are shared: an upper-ish bound is not needed,
    return {                                               # diagonal SEs of independent groups add in quadrature
        "sigma_theory_diag": np.diag(Sigma), "sigma_sim_diag": np.diag(mo["cov"]),
        "sigma_sim_diag_se": np.diag(mo["cov_se"]),
        "sigma_theory_eig": th_eig, "sigma_sim_eig": mo["eig_var"], "sigma_sim_eig_se": mo["eig_var_se"],
        "sigma_z_eig": _z(mo["eig_var"], th_eig, se_eig),
        "sigma_relative_error_eig": rel,
        "relaxed_fraction": mo["relaxed_fraction"],
        "sigma_trace_theory": tr_th, "sigma_trace_sim": tr_sim, "sigma_trace_sim_se": tr_se,
        "sigma_trace_relative_error": tr_sim / tr_th - 1,
        "mean_sim": mo["mean"], "mean_sim_se": mo["mean_se"],
    }


def nonequilibrium(problem, config: Config, w_star: np.ndarray, H: np.ndarray, progress,
                   store: StudyCheckpoints | None = None) -> tuple[dict, dict]:
    """Part (a): theory at w* for wr and wor, simulation, FTs. Returns (metrics, figure data)."""
    m = problem.n // config.batch_size
    h = np.linalg.eigvalsh(H)
    lr = config.lr or config.lr_M_hmax / (m * h[-1])
    cfg = dataclasses.replace(config, lr=lr)
    timings = {}
    tic = time.time()
    wr = wr_theory(problem, w_star, lr, config.batch_size)
    wor = wor_theory(problem, w_star, lr, config.batch_size, epochs=config.wor_epochs, seed=config.seed,
                     progress=progress)
    timings["theory_s"] = time.time() - tic
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0]))
    tic = time.time()
    sim_wr = simulate(problem, cfg, "wr", wr.state, wr.H, rng, progress, store)
    timings["wr_simulation_s"] = time.time() - tic
    tic = time.time()
    sim_wor = simulate(problem, cfg, "wor", wor.state, wor.H, rng, progress, store)
    timings["wor_simulation_s"] = time.time() - tic
    tic = time.time()
    ift, dft = fluctuation_theorems(sim_wr["sigma_ft"], cfg)
    timings["fluctuation_theorems_s"] = time.time() - tic

    _, V = np.linalg.eigh(wr.H)
    _, V_eff = np.linalg.eigh(wor.H)
    wor_se = np.diag(wor_sigma_standard_error(wor.H, wor.diffusion.second_order_displacements, lr, m, basis=V_eff))
    circ_wr, circ_wor = _circulation_metrics(wr.state, sim_wr), _circulation_metrics(wor.state, sim_wor)
    mo = sim_wor["moments"]
    wr_metrics = {
        **_moment_metrics(sim_wr, wr.Sigma, V),
        "commutator_ratio": wr.commutator_ratio, "lr_hmax": wr.lr_hmax,
        "ep_rate_theory": wr.ep_rate, "ep_rate_sim": sim_wr["ep_rate"], "ep_rate_sim_se": sim_wr["ep_rate_se"],
        "ep_rate_relative_error": sim_wr["ep_rate"] / wr.ep_rate - 1,
        "ep_rate_z": _z(sim_wr["ep_rate"], wr.ep_rate, sim_wr["ep_rate_se"]),
        "circulation": {k: v for k, v in circ_wr.items() if k != "plane"},
        "ift": {k: r.ratio for k, r in ift.items()}, "ift_ci": {k: list(r.ratio_ci) for k, r in ift.items()},
        "ift_mean_exp": {k: r.mean_exp for k, r in ift.items()},
        "ift_mean_exp_ci": {k: list(r.mean_exp_ci) for k, r in ift.items()},
        "ift_mean_delta_s": {k: r.mean_delta_s for k, r in ift.items()},
        "ift_windows": {k: r.n_windows for k, r in ift.items()},
        "dft_window": config.dft_window, "dft_slope": dft.slope, "dft_slope_ci": list(dft.slope_ci),
        "dft_slope_se": dft.slope_stderr, "ft_steps": int(sim_wr["sigma_ft"].shape[1]),
    }
    wor_metrics = {
        **_moment_metrics(sim_wor, wor.Sigma, V_eff, wor_se),
        "sigma_theory_eig_se": wor_se,
        "w_eff_shift_norm": float(np.linalg.norm(wor.w_eff - w_star)),
        "mean_z": _z(mo["mean"], wor.w_eff, mo["mean_se"]),
        "shift_relative_error": float(np.linalg.norm(mo["mean"] - wor.w_eff) / np.linalg.norm(wor.w_eff - w_star)),
        "D_epoch_relative_difference_eig": _eig(wor.diffusion.D, V_eff) / _eig(wor.diffusion.D_second_order, V_eff) - 1,
        "lr_M_hmax": wor.lr_M_hmax, "steps_per_epoch": m,
        "ep_rate_theory_per_epoch": wor.state.ep_rate,
        "circulation": {k: v for k, v in circ_wor.items() if k != "plane"},
        "variance_ratio_wr_over_wor_eig": _eig(wr.Sigma, V) / _eig(wor.Sigma, V_eff),
    }
    metrics = {"lr": lr, "batch_size": config.batch_size, "steps_per_epoch": m, "wr": wr_metrics, "wor": wor_metrics,
               "simulation": {"chains": config.chains, "steps": config.steps, "groups": config.groups,
                              "init": "predicted stationary Gaussian: N(w*, Sigma_WR) for wr, N(w_eff, Sigma_WOR) for "
                                      "wor (observed at epoch boundaries); relaxation-corrected moments"},
               "timings": timings}
    figures = {"wr": wr, "wor": wor, "sim_wr": sim_wr, "sim_wor": sim_wor, "dft": dft,
               "planes": {"wr": circ_wr["plane"], "wor": circ_wor["plane"]}}
    return metrics, figures


# --------------------------------------------------------------------------- part (b): posterior sampling


def _resumable(store: StudyCheckpoints | None, tag: str) -> dict:
    return store.sample_args(tag) if store is not None else {}


def _predictive_metrics(problem, draws, feats: Features, reference: np.ndarray | None, bins: int) -> tuple[dict, np.ndarray]:
    probs = problem.class_probabilities(draws, feats.x_test)
    out = predictive.summary(probs, feats.y_test, bins)
    if reference is not None:
        out["tv_to_reference"] = predictive.mean_tv(probs, reference)
    return out, probs


def reference_settings(config: Config, h_max: float) -> dict:
    """``sample()`` arguments of the reference: MALA at ``lr = reference_lr_hmax / h_max``, or look-ahead HMC
    with the leapfrog step ``eps = sqrt(2 lr)`` of which MALA is the one-step case."""
    lr = config.reference_lr_hmax / h_max
    if config.reference_method == "mala":
        return {"lr": lr}
    return {"lr": math.sqrt(2.0 * lr), "kernel_options": {
        "leapfrog_steps": config.reference_leapfrog_steps, "look_ahead": config.reference_look_ahead,
        "beta": config.reference_beta}}


def reference_cost(trace, seconds: float) -> dict:
    """What the reference cost and what it bought: gradient evaluations per chain (MALA: one per step), the
    smallest and median ESS over parameters, and seconds per effective draw of the worst parameter (time to
    a given reference accuracy is proportional to it)."""
    ess = diagnostics.ess(trace.draws)
    steps = int(trace.steps[-1])
    grads = float(np.mean(trace.meta["grad_evals_per_chain"])) if "grad_evals_per_chain" in trace.meta else steps
    return {"seconds": seconds, "grad_evals_per_chain": grads, "ess_min": float(np.nanmin(ess)),
            "ess_median": float(np.nanmedian(ess)), "seconds_per_ess_min": seconds / float(np.nanmin(ess)),
            "grad_evals_per_ess_min": grads * trace.num_chains / float(np.nanmin(ess))}


def posterior_sampling(problem, feats: Features, w_star: np.ndarray, H: np.ndarray, config: Config,
                       progress, store: StudyCheckpoints | None = None) -> dict:
    """Part (b): MALA reference, then SGLD and SGWORLD at each lr; test-set predictive metrics."""
    h = np.linalg.eigvalsh(H)
    m = problem.n // config.batch_size
    k = config.sampler_chains
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1]))
    tic = time.time()
    ref = sample(problem, config.reference_method, chains=k, num_draws=config.reference_draws,
                 burn_in=config.reference_burn_in, thin=config.reference_thin,
                 init=gaussian_draws(w_star, np.linalg.inv(H), k, rng), seed=config.seed + 101, progress=progress,
                 **reference_settings(config, h[-1]), **_resumable(store, config.reference_method))
    ref_metrics, ref_probs = _predictive_metrics(problem, ref.draws, feats, None, config.ece_bins)
    half = k // 2
    tv_halves = predictive.mean_tv(problem.class_probabilities(ref.draws[:half], feats.x_test),
                                   problem.class_probabilities(ref.draws[half:], feats.x_test))
    reference = {**ref_metrics, "method": config.reference_method, "lr": ref.meta["lr"],
                 "lr_hmax": config.reference_lr_hmax, "acceptance_rate": float(np.mean(ref.meta["acceptance_rate"])),
                 **reference_cost(ref, time.time() - tic),
                 "burn_in": ref.meta["burn_in"], "thin": ref.meta["thin"], "draws": config.reference_draws,
                 "chains": k, "tv_halves": tv_halves, "tv_floor": tv_halves / math.sqrt(2),
                 "runtime_s": time.time() - tic}
    map_metrics, _ = _predictive_metrics(problem, w_star[None], feats, ref_probs, config.ece_bins)
    init = ref.draws[:, -1]
    runs = []
    for i, factor in enumerate(sorted(config.sampler_lr_hmax)):
        lr = factor / h[-1]
        for j, method in enumerate(SAMPLERS):
            tic = time.time()
            trace = sample(problem, method, lr=lr, temperature=1.0, batch_size=config.batch_size, chains=k,
                           num_draws=config.sampler_draws, burn_in=config.sampler_burn_in, thin=config.sampler_thin,
                           init=init, seed=config.seed + 1000 + 10 * i + j, progress=progress,
                           **_resumable(store, f"{method}-{i}"))
            met, _ = _predictive_metrics(problem, trace.draws, feats, ref_probs, config.ece_bins)
            runs.append({"method": method, "lr": lr, "lr_hmax": factor, "lr_M_hmax": factor * m,
                         "burn_in": trace.meta["burn_in"], "thin": trace.meta["thin"],
                         "relaxed_fraction_softest_burn_in": float(-np.expm1(2 * trace.meta["burn_in"]
                                                                               * np.log1p(-lr * h[0]))),
                         **met, "runtime_s": time.time() - tic})
    by = {(r["method"], r["lr_hmax"]): r for r in runs}
    factors = sorted(config.sampler_lr_hmax)
    comparison = [{"lr_hmax": f, "lr": f / h[-1],
                   "tv_sgld_over_sgworld": by["sgld", f]["tv_to_reference"] / by["sgworld", f]["tv_to_reference"],
                   "sgworld_closer": by["sgworld", f]["tv_to_reference"] < by["sgld", f]["tv_to_reference"],
                   "ece_sgworld_minus_sgld": by["sgworld", f]["ece"] - by["sgld", f]["ece"],
                   "nll_sgworld_minus_sgld": by["sgworld", f]["nll"] - by["sgld", f]["nll"]} for f in factors]
    return {"reference": reference, "map": map_metrics, "runs": runs, "comparison": comparison,
            "temperature": 1.0, "ece_bins": config.ece_bins, "h_min": h[0], "h_max": h[-1],
            "init": "SGLD / SGWORLD chains start at the reference (MALA) chains' last draws"}


# --------------------------------------------------------------------------- the study


def run(config: Config, out_dir, progress=None, checkpoint_every: float | None = 60.0) -> dict:
    """Run both parts (module docstring); returns the metrics written to ``out_dir/metrics.json``.

    The simulations and sampler runs save their progress every ``checkpoint_every`` seconds; rerunning
    with the same settings (``sgworld resume DIR``) continues from there.
    """
    started = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    problem, feats = build_problem(config)
    m = problem.n // config.batch_size
    check_config(config, m)
    check_resources(out_dir, *footprint(config, problem.dim),
                    sizes=f"chains x steps x p = {config.chains} x {config.steps} x {problem.dim}, sampler_chains x "
                          f"draws x p = {config.sampler_chains} x {config.sampler_draws} x {problem.dim}")
    store = StudyCheckpoints(out_dir, checkpoint_every, config=config,
                             data=(feats.x_train, feats.y_train, feats.x_test, feats.y_test))
    write_config(out_dir, config, steps_per_epoch=m, data_source=feats.source)
    tic = time.time()
    w_star, newton = find_minimum(problem)
    H = problem.hessian(torch.as_tensor(w_star)).numpy()
    h = np.linalg.eigvalsh(H)
    minimum_s = time.time() - tic
    neq, fig_data = nonequilibrium(problem, config, w_star, H, progress, store)
    tic = time.time()
    post = posterior_sampling(problem, feats, w_star, H, config, progress, store)
    posterior_s = time.time() - tic
    metrics = {
        "data": {"source": feats.source, "n_train": problem.n, "n_test": len(feats.y_test),
                 "dropped_train": feats.dropped, "classes": feats.num_classes, "pca_dim": config.pca_dim,
                 "explained_variance": feats.explained_variance},
        "model": {"name": "softmax regression, reference class 0, on whitened PCA features + bias",
                  "p": problem.dim, "prior_std": config.prior_std},
        "w_star_norm": float(np.linalg.norm(w_star)),
        "newton": {"iterations": newton.iterations, "grad_norm": newton.grad_norm, "loss": newton.value},
        "hessian_eigenvalues": h, "hessian_condition": h[-1] / h[0],
        "nonequilibrium": neq, "posterior": post,
    }
    from .digits_plots import write_figures
    tic = time.time()
    metrics["figures"] = write_figures(out_dir, metrics, fig_data)
    metrics["timings"] = {"minimum_s": minimum_s, **neq.pop("timings"), "posterior_s": posterior_s,
                          "figures_s": time.time() - tic}
    metrics["runtime_s"] = time.time() - started
    write_json(out_dir / "metrics.json", metrics)
    store.clear()
    return metrics


def checks(metrics: dict) -> list[Check]:
    """Headline numbers with their references and tolerances (for ``sgworld report``)."""
    neq, post = metrics["nonequilibrium"], metrics["posterior"]
    wr, wor = neq["wr"], neq["wor"]
    out = []
    for scheme, m in (("wr", wr), ("wor", wor)):
        z = np.abs(np.asarray(m["sigma_z_eig"], dtype=float))
        out.append(Check(f"{scheme}: Sigma per eigenmode, max |z| over {z.size} modes", float(z.max()), 0.0,
                         "|z| < 5", bool(z.max() < 5), "relaxation-corrected simulation vs Lyapunov theory"))
        out.append(Check(f"{scheme}: tr Sigma, simulation / theory - 1", m["sigma_trace_relative_error"], 0.0,
                         "|.| < 0.05", abs(m["sigma_trace_relative_error"]) < 0.05))
    out.append(Check("wr: entropy production per step, simulation", wr["ep_rate_sim"], wr["ep_rate_theory"],
                     "|z| < 5", abs(wr["ep_rate_z"]) < 5, f"relative error {wr['ep_rate_relative_error']:+.3%}"))
    for k, (lo, hi) in wr["ift_ci"].items():
        out.append(Check(f"wr: IFT (<exp(-ds)> - 1)/<ds>, window {k}", wr["ift"][k], 0.0, "0 in 95% CI",
                         bool(lo <= 0 <= hi), f"CI [{lo:.3g}, {hi:.3g}]"))
    lo, hi = wr["dft_slope_ci"]
    out.append(Check(f"wr: DFT slope, window {wr['dft_window']}", wr["dft_slope"], 1.0, "1 in 95% CI",
                     bool(lo <= 1 <= hi), f"CI [{lo:.3g}, {hi:.3g}]"))
    out.append(Check("wr: rotation rate in the top circulation plane (areal velocity)",
                     wr["circulation"]["omega_sim"], wr["circulation"]["omega_theory"], "|z| < 5",
                     abs(wr["circulation"]["omega_z"]) < 5))
    zmax = float(np.max(np.abs(wor["mean_z"])))
    out.append(Check("wor: stationary mean vs argmin L_eff, max |z|", zmax, 0.0, "|z| < 5", zmax < 5))
    out.append(Check(f"reference: {post['reference'].get('method', 'mala').upper()} acceptance rate",
                     post["reference"]["acceptance_rate"], None, "", None))
    for c in post["comparison"]:
        out.append(Check(f"lr h_max = {c['lr_hmax']:g}: TV(SGLD) / TV(SGWORLD) to the reference",
                         c["tv_sgld_over_sgworld"], 1.0, "> 1", c["tv_sgld_over_sgworld"] > 1))
        out.append(Check(f"lr h_max = {c['lr_hmax']:g}: ECE(SGWORLD) - ECE(SGLD)", c["ece_sgworld_minus_sgld"], 0.0,
                         "<= 0 (information; ECE noise ~0.01)", None))
    return out
