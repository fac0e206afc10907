"""Digits study: SGD out of equilibrium and SGLD / SGWORLD posterior sampling of a classifier on handwritten digits.

A configuration of the library's two pipelines (arXiv 2306.03521): :func:`sgworld.nonequilibrium.analyze`
for SGD out of equilibrium and :func:`sgworld.comparison.compare_samplers` for the samplers in equilibrium.

Data. The packaged 8 x 8 digits (:func:`sgworld.datasets.load_digits`: 1,400 train / 397 test
images) or MNIST from disk (``data``: the four IDX files or an ``.npz``, :func:`sgworld.datasets.load_mnist`).
Pixels are centred with the training mean and projected on the top ``pca_dim = d`` principal
components of the training images, each scaled to unit training variance (whitened), so constant
pixels (several of the 64 are always 0) drop out and the raw intensity scale does not matter.

Models (``model``), both with class 0 as the reference class (its logit fixed at 0). Adding one function
to every class's logit leaves the likelihood unchanged, so with all C logits free the per-sample
gradients miss those directions and S, D are singular (D^{-1}, hence the entropy production, would be
undefined); the reference class fixes that gauge. ``U_i(w) = -N log p(y_i | x_i, w) + |w|^2 / (2 prior_std^2)``.

* ``softmax``: ``p(c | x, w) = softmax([0, x~ W])_c``, ``x~ = (x, 1)``, W of shape (d + 1, C - 1),
  ``p = (d + 1)(C - 1)`` (d = 16, C = 10: p = 153); convex, ``w*`` by Newton's method from 0.
* ``mlp``: ``p(c | x, w) = softmax([0, f(x; w)])_c`` with ``f`` a tanh network of widths
  ``(d, *hidden, C - 1)`` (:class:`sgworld.problems.mlp.ReferenceClassMLP`; d = 16, hidden = 8:
  p = 217). The dense theory needs D, hence S, of full rank: S averages N per-sample gradients, so its
  rank is at most N - 1 and p must stay below N (1,400 for the packaged digits; ``train_shifts = 1`` joins
  their copies shifted by one pixel in each direction, 9 x 1,400 = 12,600 images; MNIST allows far more),
  and D_WOR is estimated from ``wor_epochs`` permutations, which must exceed p. ``w*`` by L-BFGS
  (gradients only) from a seeded random start, then Newton's method on the dense Hessian where
  p <= ``dense_max_p``. Above ``dense_max_p`` (e.g. ``pca_dim = 32, hidden = 512``: p = 21,513) the
  analysis takes the top-k Hessian eigenspace (``topk``) by itself and says so in metrics.json
  (``nonequilibrium.analysis``) and the report; entropy production and currents then refer to that
  subspace.

Part (a), out of equilibrium: ``lr = lr_M_hmax / (M h_max)`` (``lr M h_max = 0.05``, M = N/b) so that the
WOR expansion holds; the pipeline's theory at ``w*`` for ``wr`` and ``wor``, many SGD chains per scheme
from the predicted stationary Gaussian, relaxation-corrected moments, the areal velocity and the rotation
rate in the plane of largest circulation, the entropy production with both fluctuation theorems.

Part (b), in equilibrium: SGLD (``wr``) and SGWORLD (``wor``) at T = 1 for several learning rates
``lr = sampler_lr_hmax / h_max``, chains started from the reference's draws; the posterior predictive on
the test set (accuracy, NLL, ECE, reliability) and its mean total-variation distance to the reference
(MALA, or look-ahead HMC with ``reference_method = "lahmc"``, started from the Laplace approximation),
with the reference's cost and the Monte Carlo floor of the distance.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import comparison, nonequilibrium as neq, predictive
from .._checks import check_choice, check_class_labels, check_int_range
from ..checks import Check
from ..datasets import ImageData, load_images, shifted_copies
from ..plots import NONEQUILIBRIUM_FIGURES, nonequilibrium_figures
from ..problems import Problem
from ..problems.mlp import ReferenceClassMLP
from ..theory import NewtonResult
from .common import StudyCheckpoints, check_resources, write_config, write_json

DESCRIPTION = "Classifier on handwritten digits (softmax or MLP): SGD out of equilibrium (wr vs wor), SGLD vs SGWORLD"

SAMPLERS = ("sgld", "sgworld")
REFERENCE_METHODS = ("mala", "lahmc")  # exact reference samplers (reference_method)
MODELS = ("softmax", "mlp")


@dataclass(frozen=True)
class Config:
    data: str | None = None        # MNIST: folder with the four IDX files, or .npz; None: packaged digits
                                   # [a path, or none]
    pca_dim: int = 16              # d whitened principal components [1 <= d <= pixels]
    n_train: int | None = None     # first n training images (None: all); truncated to a multiple of b
                                   # [>= 2 b, or none]
    model: str = "softmax"         # classifier [softmax or mlp]
    hidden: tuple[int, ...] = (8,)  # mlp: widths of the tanh hidden layers (d = 16, 8: p = 217; the dense
                                   # theory needs p < N, since S has rank <= N - 1) [each >= 1]
    train_shifts: int = 0          # training images also shifted by up to this many pixels ((2s + 1)^2 copies:
                                   # 1 gives 12,600 digits, for p in the thousands) [>= 0]
    prior_std: float = 1.0         # Gaussian prior on every weight [> 0]
    batch_size: int = 70           # b (digits: N = 1400, M = 20 steps per epoch) [1 <= b <= N/2]
    # part (a): SGD out of equilibrium
    lr: float | None = None        # SGD lr; None: lr_M_hmax / (M h_max) [> 0, or none]
    lr_M_hmax: float = 0.05        # SGD's lr M h_max when lr is None [> 0]
    chains: int = 256              # chains per scheme [>= groups]
    steps: int = 3600              # SGD steps per chain and scheme [a multiple of segment, >= 2 segments]
    segment: int = 60              # steps between the snapshots of the relaxation-corrected moments
                                   # [a multiple of M, of every FT window and of model_free_thin]
    groups: int = 16               # independent groups of chains for standard errors [2 <= groups <= chains]
    ft_windows: tuple[int, ...] = (1, 2, 5, 10)  # windows (steps) of the integral FT
                                   # [each >= 1 and dividing segment]
    ft_steps: int = 3600           # steps (from the start) whose entropy production feeds the FTs [>= 1]
    dft_window: int = 10           # window of the detailed-FT histogram [one of ft_windows]
    dft_bins: int = 20             # histogram bins of the detailed FT [>= 2]
    bootstrap: int = 500           # bootstrap replicates of the FT intervals [>= 1]
    model_free_chains: int = 256   # chains whose thinned path feeds the model-free drift fit [>= 1]
    model_free_thin: int = 5       # thinning of that path [>= 1 and dividing segment]
    wor_epochs: int = 4000         # permutations behind D_WOR (its Monte Carlo error ~2%) [>= 1]
    dense_max_p: int = 4096        # dense p x p theory up to this p; above, the top-k path [>= 1]
    topk: int = 20                 # dimension of the top-k Hessian eigenspace above dense_max_p [>= 1]
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
    seed: int = 0                  # random seed of the chains, the MLP's start, the WOR theory, the bootstrap [>= 0]


QUICK = {"pca_dim": 8, "chains": 64, "steps": 600, "groups": 8, "ft_steps": 600, "bootstrap": 100,
         "model_free_chains": 64, "wor_epochs": 300, "sampler_lr_hmax": (0.1, 1.0), "sampler_chains": 32,
         "sampler_burn_in": 200, "sampler_draws": 10, "sampler_thin": 20, "reference_burn_in": 200,
         "reference_draws": 10, "reference_thin": 10}

PREFIX = "digits_"
FIGURES = {PREFIX + name: caption for name, caption in {**NONEQUILIBRIUM_FIGURES, **comparison.FIGURES}.items()}

#: Config fields that are settings of :func:`sgworld.nonequilibrium.analyze`.
PIPELINE_FIELDS = ("chains", "steps", "segment", "groups", "ft_windows", "ft_steps", "dft_window", "dft_bins",
                   "bootstrap", "model_free_chains", "model_free_thin", "wor_epochs", "seed", "dense_max_p", "topk")


# --------------------------------------------------------------------------- data and models


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


def make_features(data: ImageData, pca_dim: int, batch_size: int, n_train: int | None = None,
                  train_shifts: int = 0) -> Features:
    """Centre, project on the top ``pca_dim`` principal components of the training set, whiten, add a bias;
    the first ``n_train`` training images, with their shifted copies (:func:`sgworld.datasets.shifted_copies`)."""
    if n_train is not None:
        if n_train < 1:
            raise ValueError(f"n_train must be >= 1, got {n_train}")
        data = ImageData(data.x_train[:n_train], data.y_train[:n_train], data.x_test, data.y_test,
                         data.num_classes, data.source)
    data = shifted_copies(data, train_shifts)
    x_tr, y_tr = data.x_train.reshape(len(data.x_train), -1), data.y_train
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


def build_problem(config: Config) -> tuple[Problem, Features]:
    """The model of ``config.model`` on the digits' features."""
    check_choice("model", config.model, MODELS)
    feats = make_features(load_images(config.data), config.pca_dim, config.batch_size, config.n_train,
                          check_int_range("train_shifts", config.train_shifts, 0))
    if config.model == "softmax":
        return SoftmaxRegression(feats.x_train, feats.y_train, feats.num_classes, config.prior_std), feats
    # the MLP's first layer has its own biases: the features' constant column would duplicate them
    return ReferenceClassMLP(feats.x_train[:, :-1], feats.y_train, feats.num_classes, config.hidden,
                             config.prior_std, seed=config.seed), feats


def model_inputs(problem: Problem, feats: Features) -> np.ndarray:
    """The test images as the model's inputs (the MLP takes the features without the constant column)."""
    return feats.x_test if isinstance(problem, SoftmaxRegression) else feats.x_test[:, :-1]


def check_config(config: Config, steps_per_epoch: int) -> None:
    check_choice("model", config.model, MODELS)
    if not config.hidden or min(config.hidden) < 1:
        raise ValueError(f"hidden = {config.hidden} must list one or more layer widths >= 1, e.g. hidden=24")
    if config.sampler_chains < 4 or config.sampler_chains % 2:
        raise ValueError(f"sampler_chains must be even and >= 4 (the TV floor splits them), got "
                         f"{config.sampler_chains}")
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


def check_model_size(config: Config, n: int, p: int) -> None:
    """On the dense path, the noise must reach every direction: p < N (S has rank <= N - 1) and
    wor_epochs > p (D_WOR is a covariance of wor_epochs epoch displacements)."""
    if p > config.dense_max_p:
        return
    if p >= n:
        raise ValueError(f"p = {p} parameters >= N = {n} training images: the gradient noise S has rank <= N - 1 "
                         "and D is singular on the dense path; use a smaller model (hidden, pca_dim), more data "
                         f"(train_shifts, or MNIST via data), or the top-k path (dense_max_p < {p})")
    if config.wor_epochs <= p:
        raise ValueError(f"wor_epochs = {config.wor_epochs} <= p = {p}: D_WOR, a covariance of wor_epochs epoch "
                         f"displacements, would be singular; raise wor_epochs (e.g. {4 * p}) or use a smaller model")


def settings(config: Config, lr: float, n: int) -> neq.Settings:
    """The pipeline's settings (``lr`` resolved), checked against the N training images."""
    s = neq.Settings(lr=lr, batch_size=config.batch_size, **{k: getattr(config, k) for k in PIPELINE_FIELDS})
    neq.check_settings(s, n)
    return s


def footprint(config: Config, n: int, p: int) -> tuple[float, float]:
    """Lower bounds (bytes) on memory and disk: the pipeline's, plus the sampler runs' draws (kept in the
    checkpoints until the study ends)."""
    memory, disk = neq.footprint(settings(config, 1.0, n), n, p)
    traces = 8.0 * config.sampler_chains * p * (2 * len(config.sampler_lr_hmax) * config.sampler_draws
                                                + config.reference_draws)
    return memory + traces, disk + traces


# --------------------------------------------------------------------------- the minimum


def find_w_star(problem: Problem, config: Config) -> neq.Minimum:
    """``w*``: Newton's method from 0 (softmax, convex); for the MLP L-BFGS (:func:`matrix_free_minimum`) from
    the seeded start, polished by dense Newton where p <= dense_max_p."""
    if isinstance(problem, SoftmaxRegression):
        return neq.find_w_star(problem, 1.0, config.batch_size, start=problem.initial_params().numpy())
    w, result = matrix_free_minimum(problem, problem.initial_params().numpy())
    start = f"L-BFGS ({result['iterations']} iterations) from the seeded start"
    if problem.dim <= config.dense_max_p:
        mn = neq.find_w_star(problem, 1.0, config.batch_size, w_star=w)
        return neq.Minimum(w=mn.w, newton=mn.newton, start=start + ", then Newton",
                           hessian_eigenvalues=mn.hessian_eigenvalues)
    newton = NewtonResult(w=w, iterations=result["iterations"], grad_norm=result["grad_norm"], step_norm=math.nan,
                          value=result["value"], regularised_steps=0)
    return neq.Minimum(w=w, newton=newton, start=start, hessian_eigenvalues=np.empty(0))


def matrix_free_minimum(problem: Problem, w0: np.ndarray, gtol: float = 1e-9, max_iter: int = 50000):
    """Minimum of ``L`` by L-BFGS (SciPy, gradients only: no p x p matrix) from ``w0``, until the largest
    gradient component is below ``gtol (1 + |L|)``. Returns ``(w, {"iterations", "grad_norm", "value"})``;
    ValueError when it stops short of that (``w*`` must be a minimum for the theory)."""
    from scipy.optimize import minimize

    def fun(w):
        t = torch.as_tensor(w, dtype=problem.dtype)[None]
        with torch.no_grad():
            return float(problem.loss(t)[0]), problem.grad(t)[0].numpy()

    tol = gtol * (1.0 + abs(fun(w0)[0]))
    res = minimize(fun, np.asarray(w0, dtype=np.float64), jac=True, method="L-BFGS-B",
                   options={"gtol": tol, "ftol": 0.0, "maxiter": max_iter, "maxfun": 2 * max_iter, "maxcor": 30})
    value, g = fun(res.x)
    if not np.max(np.abs(g)) < 10 * tol:
        raise ValueError(f"the minimum of L was not reached: largest gradient component {np.max(np.abs(g)):.3g} after "
                         f"{res.nit} L-BFGS iterations ({res.message}); change seed (the MLP's start) or hidden")
    return res.x, {"iterations": int(res.nit), "grad_norm": float(np.linalg.norm(g)), "value": value}


# --------------------------------------------------------------------------- part (a): out of equilibrium


def _compact(m: dict, p: int) -> dict:
    """A scheme's metrics without the p x p matrices (and other arrays longer than p): metrics.json stays small."""
    return {k: v for k, v in m.items() if not (isinstance(v, np.ndarray) and v.size > p)}


def _trace_metrics(m: dict) -> dict:
    """tr Sigma of simulation and theory, with the SE of the simulated trace (independent groups: the
    diagonal SEs add in quadrature), and the relative error per eigenmode."""
    tr_sim, tr_th = float(np.sum(m["sigma_sim_diag"])), float(np.sum(m["sigma_theory_diag"]))
    return {"sigma_trace_theory": tr_th, "sigma_trace_sim": tr_sim,
            "sigma_trace_sim_se": float(math.sqrt(np.sum(np.asarray(m["sigma_sim_diag_se"]) ** 2))),
            "sigma_trace_relative_error": tr_sim / tr_th - 1,
            "sigma_relative_error_eig": np.asarray(m["sigma_sim_eig"]) / np.asarray(m["sigma_theory_eig"]) - 1}


def nonequilibrium(problem, config: Config, minimum: neq.Minimum, progress,
                   store: StudyCheckpoints | None = None):
    """Part (a) through :func:`sgworld.nonequilibrium.run_analysis`. Returns (metrics, result)."""
    m = problem.n // config.batch_size
    h_max = _h_max(problem, minimum, config.seed)
    lr = config.lr or config.lr_M_hmax / (m * h_max)
    result = neq.run_analysis(problem, settings(config, lr, problem.n), minimum=minimum,
                              out=None if store is None else store.root,
                              checkpoint_every=None if store is None else store.every, progress=progress)
    full = result.metrics()
    p = problem.dim
    out = {"lr": lr, "batch_size": config.batch_size, "steps_per_epoch": m, "analysis": full["analysis"]}
    if "wr" in full:
        wr = full["wr"]
        out["wr"] = {**_compact(wr, p), **_trace_metrics(wr),
                     "ep_rate_relative_error": wr["ep_rate_sim"] / wr["ep_rate_theory"] - 1}
    if "wor" in full and full["wor"].get("theory", True) is not None:
        wor = full["wor"]
        out["wor"] = {**_compact(wor, p), **_trace_metrics(wor),
                      "w_eff_shift_norm": float(np.linalg.norm(np.asarray(wor["shift_theory"])))}
    elif "wor" in full:
        out["wor"] = _compact(full["wor"], p)
    out["simulation"] = full["simulation"]
    return out, result, full


def _h_max(problem, minimum: neq.Minimum, seed: int) -> float:
    if minimum.hessian_eigenvalues.size:
        return float(minimum.hessian_eigenvalues[-1])
    from ..theory import hessian_operator, top_eigenpairs

    return float(top_eigenpairs(hessian_operator(problem, minimum.w), 1, seed=seed)[0][0])


# --------------------------------------------------------------------------- part (b): posterior sampling


def reference_settings(config: Config, h_max: float) -> dict:
    """``sample()`` arguments of the reference: MALA at ``lr = reference_lr_hmax / h_max``, or look-ahead HMC
    with the leapfrog step ``eps = sqrt(2 lr)`` of which MALA is the one-step case."""
    lr = config.reference_lr_hmax / h_max
    if config.reference_method == "mala":
        return {"lr": lr}
    return {"lr": math.sqrt(2.0 * lr), "kernel_options": {
        "leapfrog_steps": config.reference_leapfrog_steps, "look_ahead": config.reference_look_ahead,
        "beta": config.reference_beta}}


def posterior_sampling(problem, feats: Features, w_star: np.ndarray, H: np.ndarray | None, config: Config,
                       progress, store: StudyCheckpoints | None = None, h_max: float | None = None) -> dict:
    """Part (b) through :func:`sgworld.comparison.compare_samplers`: a :class:`sgworld.comparison.Comparison`."""
    if h_max is None:
        h_max = float(np.linalg.eigvalsh(H)[-1])
    ref = reference_settings(config, h_max)
    test = comparison.TestSet(model_inputs(problem, feats), feats.y_test, problem.logits, "categorical")
    return comparison.compare_samplers(
        problem, SAMPLERS, lr_hmax=config.sampler_lr_hmax, reference=config.reference_method, test=test,
        batch_size=config.batch_size, chains=config.sampler_chains, burn_in=config.sampler_burn_in,
        draws=config.sampler_draws, thin=config.sampler_thin, reference_lr=ref["lr"],
        reference_options=ref.get("kernel_options"), reference_burn_in=config.reference_burn_in,
        reference_draws=config.reference_draws, reference_thin=config.reference_thin, w_star=w_star, hessian=H,
        h_max=h_max, ece_bins=config.ece_bins, seed=config.seed, progress=progress,
        sample_args=None if store is None else store.sample_args)


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
    check_model_size(config, problem.n, problem.dim)
    check_resources(out_dir, *footprint(config, problem.n, problem.dim),
                    sizes=f"chains x steps x p = {config.chains} x {config.steps} x {problem.dim}, sampler_chains x "
                          f"draws x p = {config.sampler_chains} x {config.sampler_draws} x {problem.dim}")
    store = StudyCheckpoints(out_dir, checkpoint_every, config=config,
                             data=(feats.x_train, feats.y_train, feats.x_test, feats.y_test))
    write_config(out_dir, config, steps_per_epoch=m, data_source=feats.source)
    tic = time.time()
    minimum = find_w_star(problem, config)
    minimum_s = time.time() - tic
    neq_metrics, result, full = nonequilibrium(problem, config, minimum, progress, store)
    tic = time.time()
    H = result.wr_theory.state.H if result.path == "dense" else None
    post = posterior_sampling(problem, feats, minimum.w, H, config, progress, store,
                              h_max=_h_max(problem, minimum, config.seed))
    posterior_s = time.time() - tic
    h = full["hessian_eigenvalues"]
    metrics = {
        "data": {"source": feats.source, "n_train": problem.n, "n_test": len(feats.y_test),
                 "dropped_train": feats.dropped, "classes": feats.num_classes, "pca_dim": config.pca_dim,
                 "explained_variance": feats.explained_variance},
        "model": {"name": MODEL_NAMES[config.model], "kind": config.model,
                  "hidden": list(config.hidden) if config.model == "mlp" else None,
                  "p": problem.dim, "prior_std": config.prior_std},
        "w_star_norm": float(np.linalg.norm(minimum.w)),
        "newton": {"iterations": minimum.newton.iterations, "grad_norm": minimum.newton.grad_norm,
                   "loss": minimum.newton.value, "start": minimum.start},
        "hessian_eigenvalues": h, "hessian_condition": h[-1] / h[0] if result.path == "dense" else None,
        "nonequilibrium": neq_metrics, "posterior": post.to_json(),
    }
    tic = time.time()
    metrics["figures"] = nonequilibrium_figures(result, out_dir, full, prefix=PREFIX) + post.figures(out_dir, PREFIX)
    metrics["timings"] = {**result.timings, "minimum_s": minimum_s, "posterior_s": posterior_s,
                          "figures_s": time.time() - tic}
    metrics["runtime_s"] = time.time() - started
    write_json(out_dir / "metrics.json", metrics)
    store.clear()
    return metrics


MODEL_NAMES = {"softmax": "softmax regression, reference class 0, on whitened PCA features + bias",
               "mlp": "tanh MLP, reference class 0, on whitened PCA features"}


def checks(metrics: dict) -> list[Check]:
    """Headline numbers with their references and tolerances (for ``sgworld report``): the pipeline's
    (:func:`sgworld.nonequilibrium.checks` on the per-eigenmode and trace numbers kept in metrics.json)
    and the comparison's (:func:`sgworld.comparison.checks`)."""
    neq_m = metrics["nonequilibrium"]
    out = []
    tol = neq.group_z_tolerance(neq_m.get("simulation", {}).get("groups"))  # standard errors over chain groups
    if neq_m.get("analysis", {}).get("path") == "topk":
        out.append(Check("Theory path: top-k Hessian eigenspace", neq_m["analysis"].get("k"),
                         note="; ".join(neq_m["analysis"].get("notes", []))))
    for scheme in ("wr", "wor"):
        m = neq_m.get(scheme)
        if m is None or "sigma_z_eig" not in m:
            continue
        z = np.abs(np.asarray(m["sigma_z_eig"], dtype=float))
        out.append(Check(f"{scheme}: Sigma per eigenmode, max |z| over {z.size} modes", float(np.nanmax(z)), 0.0,
                         f"|z| < {tol:.3g}", bool(np.nanmax(z) < tol),
                         "relaxation-corrected simulation vs Lyapunov theory"))
        out.append(Check(f"{scheme}: tr Sigma, simulation / theory - 1", m["sigma_trace_relative_error"], 0.0,
                         "|.| < 0.05", abs(m["sigma_trace_relative_error"]) < 0.05))
        out.append(neq.relaxed_modes_check(scheme, m, tol))
    wr, wor = neq_m.get("wr"), neq_m.get("wor")
    if wr is not None:
        out.append(Check("wr: entropy production per step, simulation", wr["ep_rate_sim"], wr["ep_rate_theory"],
                         f"|z| < {tol:.3g}", abs(wr["ep_rate_z"]) < tol,
                         f"relative error {wr['ep_rate_relative_error']:+.3%}"))
        for k, (lo, hi) in wr["ift_ci"].items():
            out.append(Check(f"wr: IFT (<exp(-ds)> - 1)/<ds>, window {k}", wr["ift"][k], 0.0, "0 in 95% CI",
                             bool(lo <= 0 <= hi), f"CI [{lo:.3g}, {hi:.3g}]"))
        lo, hi = wr["dft_slope_ci"]
        out.append(Check(f"wr: DFT slope, window {wr['dft_window']}", wr["dft_slope"], 1.0, "1 in 95% CI",
                         None if None in (lo, hi) else bool(lo <= 1 <= hi),
                         f"CI [{lo:.3g}, {hi:.3g}]" if None not in (lo, hi) else wr.get("dft_error", "")))
        c = wr["circulation"]
        out.append(Check("wr: rotation rate in the top circulation plane (areal velocity)", c["omega_sim"],
                         c["omega_theory"], f"|z| < {tol:.3g}", abs(c["omega_z"]) < tol))
    if wor is not None and "mean_z" in wor:
        zmax = float(np.max(np.abs(wor["mean_z"])))
        out.append(Check("wor: stationary mean vs argmin L_eff, max |z|", zmax, 0.0, f"|z| < {tol:.3g}",
                         zmax < tol))
    return out + comparison.checks(metrics["posterior"])
