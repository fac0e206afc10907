"""Samplers study: which stochastic-gradient sampler reaches the posterior of the user's own model.

``sgworld run samplers --model FILE.py[:FACTORY]`` loads the model (:mod:`sgworld.user_model`: a Problem,
or a dict with an ``nn.Module``, a Gaussian or categorical likelihood and the data, or the data from
``--data``) and runs :func:`sgworld.comparison.compare_samplers`: an exact MALA (or HMC-family) reference
from the Laplace approximation at the minimum, then each method at ``lr = lr_hmax / h_max`` for every value
in ``lr_hmax``, started at the reference's last draws; for each run the distance of its posterior predictive
to the reference's (held-out data when the factory gives ``X_test``, ``y_test``; else the training inputs),
accuracy / NLL / calibration (classifiers) or RMSE / NLL (regression), the posterior mean and spread
against the reference in reference standard deviations, ESS and R-hat.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import comparison, predictive
from .._checks import check_choice, check_int_range
from ..theory import find_minimum
from ..user_model import load_model
from .common import ConfigError, StudyCheckpoints, check_resources, write_config, write_json

USER_MODEL = True  # 'sgworld run samplers --model FILE.py[:FACTORY]' sets Config.model

DESCRIPTION = "Your model (--model FILE.py[:FACTORY]): SGLD, SGWORLD and others against an exact MALA reference"


@dataclass(frozen=True)
class Config:
    model: str | None = None       # FILE.py[:FACTORY]: the factory (default make) returns a Problem or a dict
                                   # (module, likelihood, X, y, ...) [a Python file, required]
    data: str | None = None        # .npz (X, y[, X_test, y_test]) or .csv (y last) when the factory returns no data
                                   # [a path, or none]
    methods: tuple[str, ...] = ("sgld", "sgworld")  # samplers compared [NAME or NAME:SCHEME, e.g. sgd:wor]
    batch_size: int | None = None  # b; None: N / 20 (20 steps per epoch) [1 <= b <= N/2, or none]
    lr_hmax: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)  # lr h_max of the methods' runs [each > 0 and < 2]
    temperature: float = 1.0       # T of the target exp(-L/T) [> 0]
    chains: int = 128              # chains per run (and of the reference) [even, >= 4]
    burn_in: int = 600             # burn-in steps of each run [>= 0]
    draws: int = 30                # recorded draws per chain of each run [>= 4]
    thin: int = 20                 # steps between draws [>= 1]
    reference: str = "mala"        # exact reference sampler [mala, hmc, lahmc or mjhmc]
    reference_lr_hmax: float = 0.5  # the reference's step lr h_max (Hamiltonian samplers: leapfrog eps h_max)
                                   # [> 0]
    reference_burn_in: int = 600   # burn-in steps of the reference [>= 0]
    reference_draws: int = 40      # recorded draws per chain of the reference [>= 4]
    reference_thin: int = 20       # thinning of the reference [>= 1]
    ece_bins: int = predictive.ECE_BINS  # bins of the expected calibration error [>= 1]
    seed: int = 0                  # random seed of the chains [>= 0]


QUICK = {"lr_hmax": (0.1, 1.0), "chains": 32, "burn_in": 200, "draws": 10, "thin": 20, "reference_burn_in": 200,
         "reference_draws": 10, "reference_thin": 10}

FIGURES = comparison.FIGURES


def check_config(config: Config, n: int | None = None) -> int | None:
    """Validate the settings (before the model is loaded); with the data size ``n``, return the batch size."""
    if not config.model:
        raise ConfigError("the samplers study needs a model: pass --model FILE.py[:FACTORY] (see "
                          "examples/ for a model file)")
    if not config.lr_hmax or min(config.lr_hmax) <= 0 or max(config.lr_hmax) >= 2:
        raise ValueError(f"lr_hmax = {config.lr_hmax}: each value must be > 0 and < 2 (lr < 2 / h_max is the "
                         "stability limit of the Langevin samplers); use values well below 2")
    if config.reference_lr_hmax <= 0:
        raise ValueError(f"reference_lr_hmax = {config.reference_lr_hmax} must be > 0, e.g. 0.5")
    if config.temperature <= 0:
        raise ValueError(f"temperature = {config.temperature} must be > 0 (1 is the posterior)")
    check_int_range("draws", config.draws, 4)
    check_int_range("reference_draws", config.reference_draws, 4)
    check_choice("reference", config.reference, comparison.REFERENCE_METHODS)
    for name in config.methods:
        comparison.parse_method(name)
    if n is None:
        return None
    b = config.batch_size if config.batch_size is not None else max(n // 20, 1)
    return check_int_range("batch_size", b, 1, max(n // 2, 1))


def run(config: Config, out_dir, progress=None, checkpoint_every: float | None = 60.0) -> dict:
    """Load the model, compare the samplers (module docstring); returns the metrics of ``out_dir/metrics.json``."""
    started = time.time()
    out_dir = Path(out_dir)
    check_config(config)
    user = load_model(config.model, config.data)
    problem = user.problem
    b = check_config(config, problem.n)
    draws = config.chains * problem.dim * 8.0 * (len(config.methods) * len(config.lr_hmax) * config.draws
                                                 + config.reference_draws)
    check_resources(out_dir, draws, draws, sizes=f"chains x draws x p = {config.chains} x {config.draws} x "
                                                 f"{problem.dim} per run")
    out_dir.mkdir(parents=True, exist_ok=True)
    model_file = user.path.read_bytes()
    store = StudyCheckpoints(out_dir, checkpoint_every, config=config,
                             data=(*problem.data, np.frombuffer(model_file, dtype=np.uint8)))
    write_config(out_dir, config, batch_size_resolved=b, model_source=user.source)
    tic = time.time()
    w_star, newton = find_minimum(problem)
    minimum_s = time.time() - tic
    result = comparison.compare_samplers(
        problem, config.methods, (), reference=config.reference, test=user.test_set(), batch_size=b,
        chains=config.chains, burn_in=config.burn_in, draws=config.draws, thin=config.thin,
        temperature=config.temperature, reference_lr_hmax=config.reference_lr_hmax,
        reference_burn_in=config.reference_burn_in, reference_draws=config.reference_draws,
        reference_thin=config.reference_thin, w_star=w_star, lr_hmax=config.lr_hmax,
        ece_bins=config.ece_bins, seed=config.seed, progress=progress, sample_args=store.sample_args)
    metrics = {
        "model": {"source": user.source, "p": problem.dim, "n": problem.n, "likelihood": user.likelihood,
                  "test": "held-out X_test, y_test" if user.X_test is not None else "training inputs"},
        "batch_size": b, "steps_per_epoch": problem.n // b,
        "w_star_norm": float(np.linalg.norm(w_star)),
        "newton": {"iterations": newton.iterations, "grad_norm": newton.grad_norm, "loss": newton.value},
        **result.to_json(),
    }
    tic = time.time()
    metrics["figures"] = result.figures(out_dir)
    metrics["timings"] = {"minimum_s": minimum_s, "figures_s": time.time() - tic}
    metrics["runtime_s"] = time.time() - started
    write_json(out_dir / "metrics.json", metrics)
    store.clear()
    return metrics


def checks(metrics: dict) -> list:
    """The comparison's checks (:func:`sgworld.comparison.checks`)."""
    return comparison.checks(metrics)
