"""Nonequilibrium study of the user's own model: SGD out of equilibrium (wr vs wor) on any network.

``sgworld run nonequilibrium --model FILE.py[:FACTORY]`` loads the model (:mod:`sgworld.user_model`: a
Problem, or a dict with an ``nn.Module``, a Gaussian or categorical likelihood and the data, or the data
from ``--data``) and runs :func:`sgworld.nonequilibrium.analyze` on it: the minimum ``w*`` (Newton's
method from the model's initial parameters; its steps use ``|H|`` where H is not positive definite), the
Fokker–Planck theory for ``wr`` and ``wor`` (dense up to ``dense_max_p`` parameters, else the top-k
Hessian eigenspace), the simulation from the predicted stationary state, the measured covariances,
currents, entropy production and both fluctuation theorems. ``lr`` and ``batch_size`` default to
``lr = lr_M_hmax / (M h_max)`` at ``w*`` (so that the WOR expansion parameter ``lr M h_max`` takes that
value) and ``b`` = the largest divisor of N up to N / 20; config.json records the resolved values.
metrics.json has the regression study's keys (:meth:`sgworld.nonequilibrium.NonequilibriumResult.metrics`).
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
from ..theory import hessian_operator, top_eigenpairs
from ..user_model import load_model
from .common import Check, ConfigError, StudyCheckpoints, check_resources, write_config

USER_MODEL = True  # 'sgworld run nonequilibrium --model FILE.py[:FACTORY]' sets Config.model

DESCRIPTION = "Your model (--model FILE.py[:FACTORY]): SGD out of equilibrium, wr vs wor, theory against simulation"


@dataclass(frozen=True)
class Config:
    model: str | None = None       # FILE.py[:FACTORY]: the factory (default make) returns a Problem or a dict
                                   # (module, likelihood, X, y, ...) [a Python file, required]
    data: str | None = None        # .npz (X, y) or .csv (y last) when the factory returns no data [a path, or none]
    lr: float | None = None        # SGD learning rate; None: lr_M_hmax / (M h_max) at w* [> 0, or none]
    lr_M_hmax: float = 0.05        # lr M h_max when lr is None (the WOR theory's expansion parameter) [> 0 and
                                   # < wor_validity_max]
    batch_size: int | None = None  # b; None: the largest divisor of N up to N / 20 [1 <= b < N, or none]
    schemes: tuple[str, ...] = ("wr", "wor")  # minibatch schemes analysed [wr, wor]
    chains: int = 2048             # chains per scheme [>= groups]
    steps: int = 12000             # SGD steps per chain and scheme [a multiple of segment, >= 2 segments]
    segment: int | None = None     # steps between snapshots; None: the smallest multiple of M, the FT windows
                                   # and model_free_thin of at least 100 [such a multiple, or none]
    groups: int = 32               # independent groups of chains for standard errors [2 <= groups <= chains]
    ft_windows: tuple[int, ...] = (1, 2, 3, 10)  # windows (steps) of the integral FT [each >= 1]
    ft_steps: int = 3000           # steps (from the start, all chains) whose entropy production feeds the FTs [>= 1]
    dft_window: int = 10           # window of the detailed-FT histogram [one of ft_windows]
    dft_bins: int = 20             # histogram bins of the detailed FT [>= 2]
    bootstrap: int = 1000          # bootstrap replicates of the FT intervals [>= 1]
    model_free_chains: int = 1024  # chains whose thinned path feeds the model-free drift fit [>= 1]
    model_free_thin: int = 5       # thinning of that path [>= 1]
    wor_epochs: int = 20000        # permutations behind D_WOR [>= 1]
    dense_max_p: int = 4096        # largest p for the dense p x p theory [>= 1]
    topk: int | None = 20          # k of the top-k path above dense_max_p; None: refuse such p [>= 1, or none]
    wor_validity_max: float = 0.2  # largest lr M h_max accepted for the WOR theory [> 0]
    seed: int = 0                  # random seed of the chains, the WOR theory and the bootstraps [>= 0]


QUICK = {"chains": 256, "steps": 1200, "groups": 16, "ft_steps": 1200, "bootstrap": 200, "model_free_chains": 256,
         "wor_epochs": 2000}

#: Config fields that are settings of :func:`sgworld.nonequilibrium.analyze`.
PIPELINE_FIELDS = ("schemes", "chains", "steps", "segment", "groups", "ft_windows", "ft_steps", "dft_window",
                   "dft_bins", "bootstrap", "model_free_chains", "model_free_thin", "wor_epochs",
                   "dense_max_p", "topk", "wor_validity_max", "seed")

FIGURES = NONEQUILIBRIUM_FIGURES


def default_batch_size(n: int) -> int:
    """The largest divisor of N up to N / 20 (about 20 steps per epoch, and whole epochs for ``wor``)."""
    top = max(n // 20, 1)
    return next(b for b in range(top, 0, -1) if n % b == 0)


def _h_max(problem, w: np.ndarray, dense: bool, seed: int) -> float:
    if dense:
        return float(np.linalg.eigvalsh(problem.hessian(torch.as_tensor(w, dtype=problem.dtype)).double().numpy())[-1])
    return float(top_eigenpairs(hessian_operator(problem, w), 1, seed=seed)[0][0])


def resolve(config: Config, problem, progress=None) -> tuple[Config, neq.Minimum]:
    """The minimum, and the config with ``lr`` and ``batch_size`` resolved (module docstring)."""
    if config.lr is not None and not config.lr > 0:
        raise ValueError(f"lr = {config.lr!r} is invalid; pass a step size > 0, or none for lr_M_hmax / (M h_max)")
    if not 0 < config.lr_M_hmax < config.wor_validity_max:
        raise ValueError(f"lr_M_hmax = {config.lr_M_hmax!r} must be > 0 and below wor_validity_max = "
                         f"{config.wor_validity_max:g}, e.g. 0.05")
    b = config.batch_size if config.batch_size is not None else default_batch_size(problem.n)
    if not (isinstance(b, int) and 1 <= b < problem.n):
        raise ValueError(f"batch_size = {b!r} must be between 1 and N - 1 = {problem.n - 1} (SGD needs minibatch "
                         "noise: b < N)")
    dense = problem.dim <= config.dense_max_p
    minimum = neq.find_w_star(problem, config.lr or 1.0, b, start=problem.initial_params().double().numpy(),
                              dense=dense)
    minimum = dataclasses.replace(minimum, start="the model's initial parameters")
    lr = config.lr or config.lr_M_hmax / ((problem.n // b) * _h_max(problem, minimum.w, dense, config.seed))
    return dataclasses.replace(config, lr=float(lr), batch_size=b), minimum


def run(config: Config, out_dir, progress=None, checkpoint_every: float | None = 60.0) -> dict:
    """Run the study (module docstring); returns the metrics written to ``out_dir/metrics.json``."""
    started = time.time()
    if not config.model:
        raise ConfigError("the nonequilibrium study needs a model: pass --model FILE.py[:FACTORY] (see examples/ for "
                          "a model file)")
    user = load_model(config.model, config.data)
    problem = user.problem
    if problem.dtype != torch.float64:
        raise ValueError(f"the model's problem is {problem.dtype}; the analysis needs float64 (the WOR covariance is "
                         "~lr^3): build it with dtype=torch.float64")
    neq.check_path(neq.Settings(lr=1.0, batch_size=1, dense_max_p=config.dense_max_p, topk=config.topk), problem.dim)
    out_dir = Path(out_dir)
    tic = time.time()
    config, minimum = resolve(config, problem, progress)
    minimum_s = time.time() - tic
    s = neq.Settings(lr=config.lr, batch_size=config.batch_size, **{k: getattr(config, k) for k in PIPELINE_FIELDS})
    neq.check_settings(s, problem.n)
    check_resources(out_dir, *neq.footprint(s, problem.n, problem.dim),
                    sizes=f"chains x steps x p = {config.chains} x {config.steps} x {problem.dim}")
    theory = neq.compute_theory(problem, s, minimum, progress)  # its refusals come before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    store = StudyCheckpoints(out_dir, checkpoint_every, config=config, data=tuple(d.numpy() for d in problem.data))
    write_config(out_dir, config, steps_per_epoch=problem.n // config.batch_size, model_source=user.source,
                 p=problem.dim, n=problem.n)
    result = neq.run_analysis(problem, s, minimum=minimum, theory=theory, out=store.root,
                              checkpoint_every=store.every, progress=progress)
    result.timings["minimum_s"] = minimum_s
    metrics = result.save(out_dir, started, data={"source": user.source, "n": problem.n, "newton_start": minimum.start})
    store.clear()
    return metrics


def checks(metrics: dict) -> list[Check]:
    """The pipeline's checks (:func:`sgworld.nonequilibrium.checks`)."""
    return neq.checks(metrics)
