"""HMC study: HMC vs look-ahead HMC vs Markov-jump HMC on the test problems of Sohl-Dickstein,
Mudigonda & DeWeese (ICML 2014, "Hamiltonian Monte Carlo Without Detailed Balance").

Targets (their section 5): 2-D and 100-D Gaussians with covariance eigenvalues log-spaced from 1 to
1e6, and the 2-D rough well ``E = sum x_i^2 / (2 100^2) + cos(pi x_i / 2)``; eps = 1, M = 10 leapfrog
steps, K = 4 look-ahead leaps. The study

1. reproduces their Table 1, the fractions of transitions of each kind (F, L, L^2, L^3, L^4) for HMC
   and LAHMC at beta = 1 and 0.1, against the published values (check: within +-0.01). Gaussian chains
   start on exact draws (as in the paper); rough-well chains start at 100 n and are burned in first,
   in a separate call, so the counts are stationary. Standard errors come from the spread of the
   chains' own fractions (independent chains);
2. measures the autocorrelation against gradient evaluations for the three samplers at beta =
   ``ac_beta`` (MJHMC sampled at uniform times, one unit of process time per step, its resample rate
   matching beta) with two estimators on the recorded draws x (chains, t, d):
   ``mean-subtracted``: ``rho(s) = sum_d C_d(s) / sum_d C_d(0)``, ``C_d`` the autocovariance about
   the pooled mean (averaged over chains and the n - s pairs at lag s), and the papers' ``no mean
   subtraction``: the same with raw second moments ``<x_t x_{t+s}>``; both weight each direction by
   its variance, so the slowest, widest directions dominate. The lag is converted to gradients per
   chain with the measured mean gradients per step; the table gives the gradients needed to reach
   autocorrelation 0.5 (linear interpolation between recorded lags) and the factors HMC / LAHMC and
   HMC / MJHMC;
3. compares spectral gaps ``1 - |lambda_2|`` of HMC and of MJHMC's jump chain (no resample, as in the
   MJHMC paper's figure) and of LAHMC on random ring energy ladders (:mod:`sgworld.theory.ladder`),
   energies i.i.d. normal with standard deviation ``ladder_energy_scale``. On rings of even size HMC and
   the jump chain are periodic (every transition flips ``(-1)^i s``), so their gap is 0; the fractions
   and median ratios are over the ladders where HMC's gap is resolved (> 1e-9).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._checks import check_int_range, check_positive
from ..problems import ill_conditioned_gaussian, rough_well
from ..run import sample
from ..theory.ladder import lahmc_matrix, mjhmc_jump_chain, spectral_gap
from .common import Check, StudyCheckpoints, check_resources, write_config, write_json

DESCRIPTION = "HMC vs look-ahead HMC vs Markov-jump HMC: Table 1 of Sohl-Dickstein et al. 2014, mixing per gradient"

DISTRIBUTIONS = ("gaussian2d", "gaussian100d", "rough_well")
SAMPLERS = ("hmc", "lahmc", "mjhmc")

# Table 1 of arXiv 1409.5191: fractions of transitions per step, by beta (F, L for HMC; F, L, L^2, L^3, L^4)
PUBLISHED = {
    ("gaussian2d", 1.0): {"hmc": [0.079, 0.921], "lahmc": [0.000, 0.921, 0.035, 0.044, 0.000]},
    ("gaussian2d", 0.1): {"hmc": [0.080, 0.920], "lahmc": [0.000, 0.921, 0.035, 0.044, 0.000]},
    ("gaussian100d", 1.0): {"hmc": [0.147, 0.853], "lahmc": [0.047, 0.852, 0.059, 0.035, 0.006]},
    ("gaussian100d", 0.1): {"hmc": [0.147, 0.853], "lahmc": [0.047, 0.852, 0.059, 0.035, 0.006]},
    ("rough_well", 1.0): {"hmc": [0.446, 0.554], "lahmc": [0.292, 0.554, 0.099, 0.036, 0.019]},
    ("rough_well", 0.1): {"hmc": [0.446, 0.554], "lahmc": [0.292, 0.554, 0.100, 0.036, 0.019]},
}
TABLE_TOLERANCE = 0.01
ESTIMATORS = ("mean_subtracted", "no_mean_subtraction")


@dataclass(frozen=True)
class Config:
    step_size: float = 1.0          # leapfrog step eps [> 0]
    leapfrog_steps: int = 10        # leapfrog steps M per leap [>= 1]
    look_ahead: int = 4             # look-ahead leaps K of LAHMC [>= 1]
    betas: tuple[float, ...] = (1.0, 0.1)  # momentum refresh beta of the Table 1 runs [each > 0 and <= 1]
    table_chains: int = 1000        # chains per Table 1 run [>= 2]
    table_steps: int = 200          # steps counted per chain (after the rough well's burn-in) [>= 1]
    burn_in: int = 300              # rough-well burn-in steps, Table 1 and autocorrelation runs [>= 0]
    ac_beta: float = 0.1            # beta of the autocorrelation runs (MJHMC: rate -log(1 - beta)/2) [> 0 and < 1]
    ac_chains: int = 100            # chains per autocorrelation run on the 2-D targets [>= 2]
    ac_chains_100d: int = 40        # chains per autocorrelation run on the 100-D Gaussian [>= 2]
    ac_steps_gaussian: int = 4000   # steps per autocorrelation run on the Gaussians [>= 8 ac_thin]
    ac_steps_rough_well: int = 2000  # steps per autocorrelation run on the rough well [>= 8 ac_thin]
    ac_thin: int = 5                # record every ac_thin steps: the lag resolution [>= 1]
    ac_threshold: float = 0.5       # autocorrelation whose gradient cost is tabulated [> 0 and < 1]
    ladders: int = 400              # random ring energy ladders for the spectral gaps [>= 1]
    ladder_min: int = 4             # smallest ring size n (drawn uniformly up to ladder_max) [>= 3]
    ladder_max: int = 24            # largest ring size n [>= ladder_min]
    ladder_energy_scale: float = 1.0  # standard deviation of the ladder energies [> 0]
    seed: int = 0                   # random seed of the starts, the chains and the ladders [>= 0]


QUICK = {"table_chains": 250, "table_steps": 100, "burn_in": 100, "ac_chains": 48, "ac_chains_100d": 16,
         "ac_steps_gaussian": 2500, "ac_steps_rough_well": 600, "ladders": 100}


def make_problem(name: str):
    return {"gaussian2d": lambda: ill_conditioned_gaussian(2), "gaussian100d": lambda: ill_conditioned_gaussian(100),
            "rough_well": rough_well}[name]()


def start(problem, name: str, chains: int, seed: int) -> torch.Tensor:
    """The paper's starts: exact draws for the Gaussians, ``100 n`` for the rough well."""
    n = torch.randn(chains, problem.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return n / problem.precision.sqrt() if name != "rough_well" else 100.0 * n


def kernel_options(method: str, config: Config, beta: float) -> dict:
    out = {"leapfrog_steps": config.leapfrog_steps, "beta": beta}
    if method == "lahmc":
        out["look_ahead"] = config.look_ahead
    return out


def autocorrelation(draws: np.ndarray, mean_subtracted: bool) -> np.ndarray:
    """Variance-weighted autocorrelation ``rho(s)``, s = 0..n-1, of ``draws`` (chains, n, d): the sum over
    directions of the lag-s autocovariance (mean-subtracted, about the pooled mean) or raw second
    moment (the papers' estimator), averaged over chains and the n - s pairs, over its value at s = 0."""
    x = np.asarray(draws, dtype=float)
    if mean_subtracted:
        x = x - x.mean(axis=(0, 1))
    n = x.shape[1]
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(x, n=size, axis=1)
    c = np.fft.irfft((f * np.conj(f)).sum(2), n=size, axis=1)[:, :n].mean(0) / (n - np.arange(n))
    return c / c[0]


def crossing(rho: np.ndarray, lags: np.ndarray, threshold: float) -> float | None:
    """The first lag where ``rho`` falls to ``threshold``, linearly interpolated; None if it never does."""
    below = np.nonzero(rho <= threshold)[0]
    if below.size == 0:
        return None
    i = int(below[0])
    if i == 0:
        return float(lags[0])
    r0, r1 = rho[i - 1], rho[i]
    return float(lags[i - 1] + (lags[i] - lags[i - 1]) * (r0 - threshold) / (r0 - r1))


def check_config(config: Config) -> None:
    check_positive("step_size", config.step_size)
    check_int_range("leapfrog_steps", config.leapfrog_steps, 1)
    check_int_range("look_ahead", config.look_ahead, 1)
    for beta in (*config.betas, config.ac_beta):
        if not 0 < beta <= 1:
            raise ValueError(f"beta = {beta} is out of range; allowed: 0 < beta <= 1")
    if not config.ac_beta < 1:
        raise ValueError(f"ac_beta = {config.ac_beta} is out of range for MJHMC; allowed: 0 < ac_beta < 1")
    for name in ("table_chains", "ac_chains", "ac_chains_100d"):
        check_int_range(name, getattr(config, name), 2)
    check_int_range("table_steps", config.table_steps, 1)
    check_int_range("burn_in", config.burn_in, 0)
    check_int_range("ac_thin", config.ac_thin, 1)
    for name in ("ac_steps_gaussian", "ac_steps_rough_well"):
        check_int_range(name, getattr(config, name), 8 * config.ac_thin)
    if not 0 < config.ac_threshold < 1:
        raise ValueError(f"ac_threshold = {config.ac_threshold} is out of range; allowed: 0 < ac_threshold < 1")
    check_int_range("ladders", config.ladders, 1)
    check_int_range("ladder_min", config.ladder_min, 3)
    check_int_range("ladder_max", config.ladder_max, config.ladder_min)
    check_positive("ladder_energy_scale", config.ladder_energy_scale)


def burned_in(problem, name, x0, config, method, beta, seed, progress, store, tag):
    """Rough-well chains after ``burn_in`` steps (a separate call); the Gaussians start on the target."""
    if name != "rough_well" or config.burn_in == 0:
        return x0
    trace = sample(problem, method, lr=config.step_size, chains=x0.shape[0], num_draws=1, thin=config.burn_in,
                   init=x0, seed=seed, progress=progress, kernel_options=kernel_options(method, config, beta),
                   **store.sample_args(tag))
    return torch.from_numpy(np.array(trace.draws[:, -1]))


def table1(config: Config, progress, store: StudyCheckpoints) -> list[dict]:
    rows = []
    for i, name in enumerate(DISTRIBUTIONS):
        problem = make_problem(name)
        for j, beta in enumerate(config.betas):
            for k, method in enumerate(("hmc", "lahmc")):
                seed = config.seed + 100 * i + 10 * j + k
                x0 = start(problem, name, config.table_chains, seed)
                x0 = burned_in(problem, name, x0, config, method, beta, seed + 5000, progress, store,
                               f"table-burn-{name}-{beta}-{method}")
                trace = sample(problem, method, lr=config.step_size, chains=config.table_chains, num_draws=1,
                               thin=config.table_steps, init=x0, seed=seed + 7000, progress=progress,
                               kernel_options=kernel_options(method, config, beta),
                               **store.sample_args(f"table-{name}-{beta}-{method}"))
                counts = np.asarray(trace.meta["transition_counts"], dtype=float)     # (chains, kinds)
                per_chain = counts / counts.sum(1, keepdims=True)
                fractions = counts.sum(0) / counts.sum()
                se = per_chain.std(0, ddof=1) / np.sqrt(per_chain.shape[0])
                paper = (config.step_size, config.leapfrog_steps, config.look_ahead) == (1.0, 10, 4)
                published = PUBLISHED.get((name, beta), {}).get(method) if paper else None
                row = {"distribution": name, "beta": beta, "method": method,
                       "kinds": trace.meta["transition_names"], "fractions": fractions, "se": se,
                       "binomial_se": np.sqrt(fractions * (1 - fractions) / counts.sum()),
                       "grad_evals_per_step": trace.meta["grad_evals_per_step"], "published": published,
                       "transitions": int(counts.sum())}
                if published is not None:
                    diff = fractions - np.asarray(published)
                    row["max_abs_diff"] = float(np.abs(diff).max())
                    row["band_in_se"] = float(TABLE_TOLERANCE / se.max())   # how many SE the +-0.01 band is
                rows.append(row)
    return rows


def mixing(config: Config, progress, store: StudyCheckpoints) -> dict:
    """Autocorrelation against gradients for the three samplers on the three targets."""
    out = {}
    for i, name in enumerate(DISTRIBUTIONS):
        problem = make_problem(name)
        chains = config.ac_chains_100d if name == "gaussian100d" else config.ac_chains
        steps = config.ac_steps_rough_well if name == "rough_well" else config.ac_steps_gaussian
        draws = steps // config.ac_thin
        out[name] = {}
        for k, method in enumerate(SAMPLERS):
            seed = config.seed + 1000 + 100 * i + k
            x0 = start(problem, name, chains, config.seed + 1000 + 100 * i)   # the same start for every sampler
            x0 = burned_in(problem, name, x0, config, "hmc", config.ac_beta, seed + 50, progress, store,
                           f"ac-burn-{name}-{method}")
            began = time.perf_counter()
            trace = sample(problem, method, lr=config.step_size, chains=chains, num_draws=draws, thin=config.ac_thin,
                           init=x0, seed=seed, progress=progress,
                           kernel_options=kernel_options(method, config, config.ac_beta),
                           **store.sample_args(f"ac-{name}-{method}"))
            seconds = time.perf_counter() - began
            per_step = trace.meta["grad_evals_per_step"]
            lags = np.arange(draws) * config.ac_thin
            result = {"grad_evals_per_step": per_step, "steps": steps, "chains": chains, "seconds": seconds,
                      "transition_names": trace.meta["transition_names"],
                      "transition_fractions": trace.meta["transition_fractions"], "lags": lags,
                      "gradients": lags * per_step}
            for estimator in ESTIMATORS:
                rho = autocorrelation(trace.draws, estimator == "mean_subtracted")
                lag = crossing(rho, lags, config.ac_threshold)
                result[estimator] = {"rho": rho, "lag_to_threshold": lag,
                                     "gradients_to_threshold": None if lag is None else lag * per_step}
            out[name][method] = result
    return out


def factors(mix: dict) -> dict:
    """Gradients to the threshold of HMC over those of LAHMC and of MJHMC (> 1: faster than HMC). Where
    HMC does not reach the threshold within its run and the other sampler does, ``..._at_least`` is the
    lower bound (HMC's gradients over the whole run over the other's)."""
    out = {}
    for name, by in mix.items():
        out[name] = {}
        for estimator in ESTIMATORS:
            g = {m: by[m][estimator]["gradients_to_threshold"] for m in by}
            entry = {}
            for m in ("lahmc", "mjhmc"):
                entry[f"hmc_over_{m}"] = g["hmc"] / g[m] if g["hmc"] and g[m] else None
                entry[f"hmc_over_{m}_at_least"] = (by["hmc"]["gradients"][-1] / g[m]
                                                   if g["hmc"] is None and g[m] else None)
            out[name][estimator] = entry
    return out


def spectral_gaps(config: Config) -> dict:
    rng = np.random.default_rng(config.seed + 77)
    rows = []
    for _ in range(config.ladders):
        n = int(rng.integers(config.ladder_min, config.ladder_max + 1))
        energies = config.ladder_energy_scale * rng.normal(size=n)
        rows.append((n, spectral_gap(lahmc_matrix(energies, 1)), spectral_gap(mjhmc_jump_chain(energies)),
                     spectral_gap(lahmc_matrix(energies, config.look_ahead))))
    n, hmc_gap, mj_gap, la_gap = (np.array(c) for c in zip(*rows))
    # On a ring of even n every L and F flips (-1)^i s, so HMC and the jump chain are periodic (gap 0):
    # the comparison uses the ladders where HMC's gap is resolved.
    resolved = hmc_gap > 1e-9
    return {"n": n, "hmc": hmc_gap, "mjhmc": mj_gap, "lahmc": la_gap,
            "fraction_mjhmc_at_least_hmc": float(np.mean(mj_gap[resolved] >= hmc_gap[resolved] - 1e-12)),
            "fraction_lahmc_at_least_hmc": float(np.mean(la_gap[resolved] >= hmc_gap[resolved] - 1e-12)),
            "median_ratio_mjhmc_over_hmc": float(np.median(mj_gap[resolved] / hmc_gap[resolved])),
            "median_ratio_lahmc_over_hmc": float(np.median(la_gap[resolved] / hmc_gap[resolved])),
            "ladders_with_resolved_hmc_gap": int(resolved.sum())}


def run(config: Config, out_dir, progress=None, checkpoint_every: float | None = 60.0) -> dict:
    check_config(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The largest arrays: the autocorrelation traces (chains, draws, p) in float64, kept in memory and
    # streamed to the checkpoint folder.
    draws = config.ac_chains_100d * 100 * (config.ac_steps_gaussian // config.ac_thin) * 8.0
    check_resources(out_dir, memory=2 * draws, disk=draws,
                    sizes=f"{config.ac_chains_100d} chains x {config.ac_steps_gaussian // config.ac_thin} draws x p = 100")
    store = StudyCheckpoints(out_dir, checkpoint_every, config=config, data=())
    write_config(out_dir, config)
    began = time.time()
    table = table1(config, progress, store)
    mix = mixing(config, progress, store)
    gaps = spectral_gaps(config)
    metrics = {"table1": table, "mixing": mix, "factors": factors(mix), "spectral_gap": gaps,
               "estimators": {"mean_subtracted": "sum_d C_d(s) / sum_d C_d(0), autocovariance about the pooled mean",
                              "no_mean_subtraction": "sum_d <x_t,d x_t+s,d> / sum_d <x_t,d^2> (the papers')"},
               "runtime_s": time.time() - began}
    write_json(out_dir / "metrics.json", metrics)
    from ..plots import plot_autocorrelation, plot_spectral_gaps
    plot_autocorrelation(mix, config.ac_threshold, out_dir / "hmc_autocorrelation.png")
    plot_spectral_gaps(gaps, out_dir / "hmc_spectral_gap.png")
    store.clear()
    return metrics


# --------------------------------------------------------------------------- report (sgworld report)


FIGURES = {
    "hmc_autocorrelation.png": "Autocorrelation against gradient evaluations per chain for HMC, LAHMC and MJHMC "
                               "(rows: mean-subtracted and the papers' estimator; columns: the three targets).",
    "hmc_spectral_gap.png": "Spectral gaps on random ring energy ladders: MJHMC's jump chain and LAHMC against HMC.",
}


def checks(metrics: dict) -> list[Check]:
    """Table 1 against the published fractions (+-0.01), then the mixing factors and spectral gaps."""
    out = []
    for row in metrics["table1"]:
        if row.get("published") is None:
            continue
        for kind, value, ref, se in zip(row["kinds"], row["fractions"], row["published"], row["se"]):
            ok = abs(value - ref) <= TABLE_TOLERANCE
            out.append(Check(f"Table 1, {row['distribution']}, beta = {row['beta']:g}, {row['method'].upper()}: "
                             f"fraction {kind}", value, ref, f"|diff| <= {TABLE_TOLERANCE:g}", ok,
                             f"SE {se:.4f} ({row['transitions']} transitions)"))
    for name, by in metrics["factors"].items():
        for estimator, f in by.items():
            la, bound = f.get("hmc_over_lahmc"), f.get("hmc_over_lahmc_at_least")
            note = f"HMC did not reach 0.5 within its run: factor >= {bound:.3g}" if bound else ""
            value = la if la is not None else bound
            out.append(Check(f"{name}: gradients to autocorrelation 0.5, HMC / LAHMC ({estimator.replace('_', ' ')})",
                             value, 2.0, "> 1 (paper: often > 2)", None if value is None else value > 1.0, note))
            out.append(Check(f"{name}: gradients to autocorrelation 0.5, HMC / MJHMC ({estimator.replace('_', ' ')})",
                             f.get("hmc_over_mjhmc"), None, "", None, "measured; no published factor"))
    gaps = metrics["spectral_gap"]
    out.append(Check("spectral gap: fraction of ladders with MJHMC jump chain >= HMC",
                     gaps["fraction_mjhmc_at_least_hmc"], note=f"median ratio {gaps['median_ratio_mjhmc_over_hmc']:.3g}"))
    out.append(Check("spectral gap: fraction of ladders with LAHMC >= HMC", gaps["fraction_lahmc_at_least_hmc"],
                     note=f"median ratio {gaps['median_ratio_lahmc_over_hmc']:.3g}"))
    return out
