"""Regression study: the nonequilibrium stationary state of SGD on the paper's tanh network (arXiv 2306.03521).

The example of the paper (docs/regression.md): N = 200 points on the grid -3.0 : 0.03 : 2.97,
``y = exp(-x^2) + 0.1 noise``, ``f(x; w) = w5 tanh(w1 x + w3) + w6 tanh(w2 x + w4) + w7`` and
``U_i = N (y_i - f_i)^2 / (2 sigma^2) + (N lambda / (2 sigma^2)) |w|^2`` (sigma = 0.1, lambda = 1e-3),
SGD with b = 10 and lr = 1e-7 in float64. This module is a configuration of the pipeline
:func:`sgworld.nonequilibrium.analyze` (the minimum by Newton's method from the authors' ``wmin.txt``
when ``data_dir`` is given, the ``wr`` and ``wor`` theory, the simulation from the predicted
stationary state, the measured counterparts and the fluctuation theorems; see that module for the
method and for the keys of ``metrics.json``): the data, the network, the defaults and one extra check
(the WR / WOR variance ratio of the paper).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import nonequilibrium as neq
from ..plots import NONEQUILIBRIUM_FIGURES
from ..problems import Problem
from ..problems.mlp import tanh
from .common import Check, StudyCheckpoints, check_resources, write_config

DESCRIPTION = "Nonequilibrium stationary state of SGD (wr vs wor) on the paper's tanh regression network"

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
    steps: int = 24000             # SGD steps per chain and scheme [a multiple of segment, >= 2 segments]
    segment: int = 120             # steps between the snapshots of the relaxation-corrected moments
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

#: Config fields that are settings of :func:`sgworld.nonequilibrium.analyze`.
PIPELINE_FIELDS = ("chains", "steps", "segment", "groups", "ft_windows", "ft_steps", "dft_window", "dft_bins",
                   "bootstrap", "model_free_chains", "model_free_thin", "wor_epochs", "seed")


# --------------------------------------------------------------------------- data and problem


class RegressionProblem(Problem):
    r"""The paper's network ``f(x; w) = w5 tanh(w1 x + w3) + w6 tanh(w2 x + w4) + w7`` (1-based).

    ``U_i(w) = N (y_i - f(x_i; w))^2 / (2 sigma^2) + (N lambda / (2 sigma^2)) |w|^2``. The potential is a
    plain torch function (Hessians, per-sample gradients and ``L_eff`` use ``torch.func`` on it);
    ``batch_grad``, the sampler's hot path, is the same gradient written out by hand (about twice as
    fast as ``vmap(grad)``; a test checks that they agree). It evaluates ``tanh z`` as ``2 sigmoid(2z) - 1``
    (:func:`sgworld.problems.mlp.tanh`), which torch.compile turns into one ``exp``; in float64 the compiled
    blocks are scalar C++ (``compile_options``), because inductor's float64 vector code, vectorised along
    the batch of a few samples, ran 1.7x slower (benchmarks/PROFILE.md).
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

    @property
    def compile_options(self) -> dict | None:
        return {"cpp.simdlen": 1} if self.dtype == torch.float64 else None

    @staticmethod
    def network(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``f(x; w)`` for one parameter vector w (7,) and inputs x of any shape."""
        return w[4] * torch.tanh(w[0] * x + w[2]) + w[5] * torch.tanh(w[1] * x + w[3]) + w[6]

    def _potential(self, w, x, y):
        r = y - self.network(w, x)
        return 0.5 * self.scale * r * r + 0.5 * self.prior * (w * w).sum()

    def batch_grad(self, w, idx=None):
        # Each parameter a (K, 1) column against the (K, b) batch: a few dozen elementwise ops and sums over
        # the batch that vectorise along it eager, and that inductor fuses into one loop over the chains.
        self.check_params(w)
        if idx is None:
            x, y = (d.unsqueeze(0) for d in self.data)                              # (1, N)
        else:
            x, y = (d[idx] for d in self.data)                                       # (K, b)
        w1, w2, w3, w4, w5, w6, w7 = w.unsqueeze(2).unbind(1)                        # (K, 1) each
        t1, t2 = tanh(w1 * x + w3), tanh(w2 * x + w4)
        r = w5 * t1 + w6 * t2 + (w7 - y)                                             # f - y
        a1, a2 = r * w5 * (1 - t1 * t1), r * w6 * (1 - t2 * t2)                     # r df/d(w1 x + w3), ...
        g = torch.stack([(a1 * x).sum(1), (a2 * x).sum(1), a1.sum(1), a2.sum(1), (t1 * r).sum(1),
                         (t2 * r).sum(1), r.sum(1)], 1)
        return g * (self.scale / x.shape[1]) + self.prior * w


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


# --------------------------------------------------------------------------- the study


def settings(config: Config) -> neq.Settings:
    return neq.Settings(lr=config.lr, batch_size=config.batch_size,
                        **{k: getattr(config, k) for k in PIPELINE_FIELDS})


def find_w_star(problem, data: RegressionData, config: Config) -> neq.Minimum:
    """Newton from the authors' ``wmin.txt`` when given, else from ``w_init``."""
    if data.w_min is not None:
        minimum = neq.find_w_star(problem, config.lr, config.batch_size, data.w_min)
        return dataclasses.replace(minimum, start="wmin.txt")
    start = np.asarray(config.w_init, dtype=float)
    if start.shape != (P,):
        raise ValueError(f"w_init must hold {P} numbers (w1..w7), got {start.size}")
    return dataclasses.replace(neq.find_w_star(problem, config.lr, config.batch_size, start=start), start="w_init")


def run(config: Config, out_dir, progress=None, checkpoint_every: float | None = 60.0) -> dict:
    """Run the study (module docstring); returns the metrics written to ``out_dir/metrics.json``.

    The per-step tensors are small (chains x b elements); run it with one torch thread
    (``sgworld run`` does by default, see ``--threads``). The simulations stream to
    ``out_dir/checkpoints`` with :func:`sgworld.sample`'s checkpoints every ``checkpoint_every``
    seconds; rerunning with the same settings continues from there.
    """
    started = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    problem, data = build_problem(config)
    s = settings(config)
    neq.check_settings(s, problem.n)
    check_resources(out_dir, *neq.footprint(s, problem.n, P),
                    sizes=f"chains x steps x p = {config.chains} x {config.steps} x {P}")
    tic = time.time()
    minimum = find_w_star(problem, data, config)
    minimum_s = time.time() - tic
    theory = neq.compute_theory(problem, s, minimum, progress)
    store = StudyCheckpoints(out_dir, checkpoint_every, config=config, data=(data.x, data.y, data.w_min))
    write_config(out_dir, config, steps_per_epoch=problem.n // config.batch_size, data_source=data.source)
    result = neq.run_analysis(problem, s, minimum=minimum, theory=theory, out=store.root,
                              checkpoint_every=store.every, progress=progress)
    result.timings["minimum_s"] = minimum_s
    metrics = result.save(out_dir, started, data={"source": data.source, "n": problem.n, "newton_start": minimum.start})
    store.clear()
    return metrics


# --------------------------------------------------------------------------- report (sgworld report)


FIGURES = NONEQUILIBRIUM_FIGURES


def checks(metrics: dict) -> list[Check]:
    """The pipeline's checks (:func:`sgworld.nonequilibrium.checks`) and the paper's WR / WOR variance ratio."""
    out = neq.checks(metrics)
    ratio = np.asarray(metrics["wor"]["variance_ratio_wr_over_wor_eig"], dtype=float)
    out.insert(-1, Check("WR / WOR stationary variance per eigenmode (theory), smallest", float(ratio.min()), None,
                         "> 1e3", bool(ratio.min() > 1e3), f"from {ratio.min():.3g} to {ratio.max():.3g}"))
    return out
