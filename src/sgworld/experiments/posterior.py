"""Posterior study: SGLD vs SGWORLD vs ULA on a posterior known exactly (arXiv 2306.03521).

Bayesian linear regression has a Gaussian posterior in closed form, and because every batch
gradient is affine in w, each method's exact discrete-time stationary moments are computable too
(``sgworld.theory.exact``). For a sweep of learning rates up to ``lr * M * h_max ~ 0.3`` the study

1. samples every method with many chains started from exact posterior draws, and measures the
   stationary mean and covariance pooled over chains after burn-in;
2. compares them with the method's exact discrete-time moments (z-scores from the spread of the
   independent chains), which validates the sampler with minibatch noise switched on; and
3. reports KL(N(mean, cov) || posterior) of the sampled moments and of the exact moments.

Sampled KLs carry a Monte Carlo floor of about ``(d + d(d+1)/2) / (2 ESS)``; below it the exact
discrete-time KL is the meaningful number, and the simulation's agreement with it is what the
z-scores show.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import diagnostics
from .._checks import check_choice, check_int_range, check_positive
from ..batching import noise_factor
from ..problems import BayesianLinearRegression
from ..run import sample
from ..thermo.trajectory import empirical_covariance, empirical_mean
from ..theory.exact import epoch_stationary_moments, stepwise_stationary_moments
from .common import Check, StudyCheckpoints, check_resources, write_config, write_json

DESCRIPTION = "SGLD vs SGWORLD vs ULA against the exact posterior of a Bayesian linear regression, over lr"

METHODS = ("sgld", "sgworld", "ula")


@dataclass(frozen=True)
class Config:
    n: int = 200                 # data points N [>= 2]
    d: int = 2                   # features [>= 1]
    batch_size: int = 10         # b (N/b = 20 batches per epoch) [1 <= b <= n]
    noise_std: float = 0.5       # likelihood sigma [> 0]
    prior_std: float = 1.0       # prior tau [> 0]
    feature_corr: float = 0.3    # correlation of the two leading features [-1 < feature_corr < 1]
    temperature: float = 1.0     # T of the target exp(-L/T) [> 0]
    lr_max_factor: float = 0.3   # largest lr: lr * M * h_max = this [> 0]
    decades: float = 2.0         # lrs span this many decades below the largest [> 0]
    num_lrs: int = 5             # lrs in the sweep [>= 2]
    lrs: tuple[float, ...] | None = None  # explicit lrs (overrides the three settings above) [each > 0, or none]
    methods: tuple[str, ...] = METHODS  # samplers compared [any of sgld, sgworld, ula]
    chains: int = 2048           # chains per run [>= 2]
    burn_in_relaxations: float = 6.0  # burn-in in units of the slowest relaxation time 1/(lr h_min) [> 0]
    sample_relaxations: float = 20.0  # sampling span in the same units [> 0]
    max_steps: int = 6000        # cap on burn-in + sampling steps per run (the study budget) [>= 2 draws]
    draws: int = 100             # recorded draws per chain [>= 4]
    wor_permutations: int = 20000  # permutations averaged for SGWORLD's exact moments [>= 2]
    seed: int = 0                # random seed of data, starting points and chains [>= 0]


QUICK = {"n": 100, "chains": 128, "num_lrs": 3, "max_steps": 1500, "draws": 30, "wor_permutations": 2000}


def make_data(config: Config):
    """Features with correlation ``feature_corr``, responses from a fixed weight vector plus noise."""
    rng = np.random.default_rng(config.seed)
    cov = np.eye(config.d)
    if config.d > 1:
        cov[0, 1] = cov[1, 0] = config.feature_corr
    X = rng.multivariate_normal(np.zeros(config.d), cov, size=config.n)
    w_true = np.linspace(1.0, -1.0, config.d)
    y = X @ w_true + config.noise_std * rng.normal(size=config.n)
    return X, y


def learning_rates(config: Config, h_max: float) -> list[float]:
    if config.lrs:
        return sorted(float(v) for v in config.lrs)
    steps_per_epoch = config.n // config.batch_size
    lr_top = config.lr_max_factor / (steps_per_epoch * h_max)
    return list(np.geomspace(lr_top * 10.0 ** (-config.decades), lr_top, config.num_lrs))


def exact_moments(method: str, A, g, lr: float, config: Config):
    if method == "sgld":
        return stepwise_stationary_moments(A, g, lr, config.temperature, config.batch_size, scheme="wr")
    if method == "ula":
        return stepwise_stationary_moments(A, g, lr, config.temperature, config.n, scheme="full")
    return epoch_stationary_moments(A, g, lr, config.temperature, config.batch_size,
                                    permutations=config.wor_permutations, seed=config.seed)


def schedule(lr: float, config: Config, h_min: float) -> dict:
    """Burn-in, thinning and total steps at one lr, in units of the relaxation time 1/(lr h_min)."""
    relax = 1.0 / (lr * h_min)
    burn_in = int(min(config.burn_in_relaxations * relax, config.max_steps / 2))
    span = int(min(config.sample_relaxations * relax, config.max_steps - burn_in))
    thin = max(1, span // config.draws)
    return {"lr": lr, "burn_in": burn_in, "thin": thin, "steps": burn_in + thin * config.draws,
            "burn_in_relaxation_times": burn_in / relax}


def run_one(problem, method, plan: dict, config: Config, init, seed: int, progress, resumable: dict):
    return sample(problem, method, lr=plan["lr"], temperature=config.temperature, batch_size=config.batch_size,
                  chains=config.chains, num_draws=config.draws, burn_in=plan["burn_in"], thin=plan["thin"],
                  init=init, seed=seed, progress=progress, **resumable)


def fit_slope(lrs, kls) -> float | None:
    lrs, kls = np.asarray(lrs, float), np.asarray(kls, float)
    ok = np.isfinite(kls) & (kls > 0)
    if ok.sum() < 2:
        return None
    return float(np.polyfit(np.log(lrs[ok]), np.log(kls[ok]), 1)[0])


def check_config(config: Config) -> None:
    """Reject bad settings before any work, with the value and the allowed range."""
    check_int_range("n", config.n, 2)
    check_int_range("d", config.d, 1)
    check_int_range("batch_size", config.batch_size, 1, config.n)
    check_int_range("chains", config.chains, 2)
    check_int_range("draws", config.draws, 4)
    check_int_range("num_lrs", config.num_lrs, 2)
    check_int_range("max_steps", config.max_steps, 2 * config.draws)
    check_int_range("wor_permutations", config.wor_permutations, 2)
    for name in ("noise_std", "prior_std", "lr_max_factor", "decades", "burn_in_relaxations", "sample_relaxations"):
        check_positive(name, getattr(config, name))
    check_positive("temperature", config.temperature)
    if not -1 < config.feature_corr < 1:
        raise ValueError(f"feature_corr = {config.feature_corr} is out of range; allowed: -1 < feature_corr < 1")
    for lr in config.lrs or ():
        check_positive("lrs entry", lr)
    for m in config.methods:
        check_choice("method", m, METHODS)


def run(config: Config, out_dir, progress=None, checkpoint_every: float | None = 60.0) -> dict:
    """Run the sweep; every sampler run is resumable (see :class:`StudyCheckpoints`)."""
    check_config(config)
    runs = len(config.methods) * (len(config.lrs) if config.lrs else config.num_lrs)
    trace = 8.0 * config.chains * config.draws * config.d  # one run's draws (float64)
    check_resources(out_dir, memory=2 * trace + 8.0 * config.chains * (config.batch_size + 4 * config.d),
                    disk=runs * trace, sizes=f"{runs} runs of chains x draws x d = {config.chains} x {config.draws} "
                                            f"x {config.d} float64")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    X, y = make_data(config)
    store = StudyCheckpoints(out_dir, checkpoint_every, config=config, data=(X, y))
    problem = BayesianLinearRegression(torch.tensor(X), torch.tensor(y), config.noise_std, config.prior_std)
    target = problem.target(config.temperature)
    A, g = problem.quadratic_terms()
    h = np.linalg.eigvalsh(A.mean(0))
    lrs = learning_rates(config, h[-1])
    plans = [schedule(lr, config, h[0]) for lr in lrs]
    write_config(out_dir, config, lrs_resolved=lrs, steps_per_epoch=config.n // config.batch_size,
                 schedule=plans)
    np.savez(out_dir / "data.npz", X=X, y=y)

    init_rng = np.random.default_rng(config.seed + 1)
    init = torch.tensor(init_rng.multivariate_normal(target.mean, target.cov, size=config.chains))
    results = []
    for i, plan in enumerate(plans):
        lr = plan["lr"]
        for j, method in enumerate(config.methods):
            trace = run_one(problem, method, plan, config, init, config.seed + 1000 * i + j, progress,
                            store.sample_args(f"{method}-lr{i}"))
            mean, cov = trace.mean(), trace.cov()
            exact = exact_moments(method, A, g, lr, config)
            # standard errors from the spread of the independent chains
            mean_se = empirical_mean(trace.draws).stderr
            cov_se = empirical_covariance(trace.draws, mean).stderr
            results.append({
                "method": method, "lr": lr, "lr_M_hmax": lr * (config.n // config.batch_size) * h[-1],
                "mean": mean, "cov": cov,
                "kl": diagnostics.gaussian_kl(mean, cov, target.mean, target.cov),
                "mean_error": diagnostics.mean_error(mean, target.mean, target.cov),
                "cov_error": diagnostics.cov_error(cov, target.cov),
                "ess_min": float(np.nanmin(diagnostics.ess(trace.draws))),
                "exact_discrete": {"mean": exact.mean, "cov": exact.cov},
                "kl_exact_discrete": diagnostics.gaussian_kl(exact.mean, exact.cov, target.mean, target.cov),
                "z_mean_max": float(np.max(np.abs(mean - exact.mean) / mean_se)),
                "z_cov_max": float(np.max(np.abs(cov - exact.cov) / cov_se)),
                "steps": int(trace.steps[-1]), "burn_in": int(trace.meta["burn_in"]),
                "burn_in_relaxation_times": plan["burn_in_relaxation_times"],
            })
    d = config.d
    for r in results:
        r["kl_mc_floor"] = (d + d * (d + 1) / 2) / (2 * r["ess_min"])
    summary = summarise(results, config.methods)
    metrics = {"exact": {"mean": target.mean, "cov": target.cov}, "hessian_eigenvalues": h,
               "noise_factor_wr": noise_factor("wr", config.n, config.batch_size),
               "results": results, "summary": summary, "runtime_s": time.time() - started}
    write_json(out_dir / "metrics.json", metrics)
    from .posterior_plots import plot_kl_vs_lr
    plot_kl_vs_lr(results, summary, out_dir / "kl_vs_lr.png")
    store.clear()
    return metrics


def summarise(results, methods) -> dict:
    """Slopes of log KL vs log lr, SGLD/SGWORLD KL ratios per lr, and the lr ratio at equal KL."""
    by = {m: sorted((r for r in results if r["method"] == m), key=lambda r: r["lr"]) for m in methods}
    out = {"slope": {}, "slope_exact_discrete": {}}  # "slope": sampled KLs above twice their floor
    for m, rs in by.items():
        # Sampled KLs within a factor 2 of the Monte Carlo floor say nothing about the slope.
        resolved = [r for r in rs if r["kl"] > 2 * r["kl_mc_floor"]]
        out["slope"][m] = fit_slope([r["lr"] for r in resolved], [r["kl"] for r in resolved])
        out["slope_exact_discrete"][m] = fit_slope([r["lr"] for r in rs], [r["kl_exact_discrete"] for r in rs])
    if "sgld" in by and "sgworld" in by:
        lrs = [r["lr"] for r in by["sgld"]]
        out["kl_ratio_sgld_over_sgworld"] = [a["kl"] / b["kl"] for a, b in zip(by["sgld"], by["sgworld"])]
        out["kl_ratio_exact_discrete"] = [a["kl_exact_discrete"] / b["kl_exact_discrete"]
                                          for a, b in zip(by["sgld"], by["sgworld"])]
        out["lrs"] = lrs
        # lr ratio at equal KL: with KL_sgworld ~ c lr^s, SGWORLD reaches SGLD's KL at lr at an lr
        # (KL_sgld / KL_sgworld)^(1/s) times larger (evaluated at every lr of the sweep).
        s = out["slope_exact_discrete"]["sgworld"]
        if s:
            out["lr_ratio_at_equal_kl"] = [float(q ** (1.0 / s)) for q in out["kl_ratio_exact_discrete"]]
    return out


# --------------------------------------------------------------------------- report (sgworld report)


FIGURES = {
    "kl_vs_lr.png": "KL(N(mean, cov) || posterior) against lr for each method: lines the exact discrete-time KL, "
                    "circles the sampled KL, grey the Monte Carlo floor",
}

Z_CHECK = 5.0  # as in the tests: two-sided normal tail 5.7e-7 per compared number
SLOPE_BANDS = {"sgworld": (1.8, 2.3)}  # exact-KL slopes the tests accept; (1.8, 2.2) for the other methods


def checks(metrics: dict) -> list[Check]:
    """The study's headline numbers against theory, with the tolerances of its tests."""
    results, summary = metrics["results"], metrics["summary"]
    d = len(metrics["exact"]["mean"])
    methods = list(dict.fromkeys(r["method"] for r in results))
    by = {m: sorted((r for r in results if r["method"] == m), key=lambda r: r["lr"]) for m in methods}
    out = []
    for m, rs in by.items():
        # z of the sampled moments against the method's exact discrete-time moments (None: NaN in the JSON)
        zs = [max(r["z_mean_max"], r["z_cov_max"]) if None not in (r["z_mean_max"], r["z_cov_max"]) else None
              for r in rs]
        compared = f"{len(rs)} lrs x {d + d * (d + 1) // 2} moments"
        if None in zs:
            out.append(Check(f"{m}: sampled vs exact discrete-time moments, max |z|", None, 0.0, f"|z| < {Z_CHECK:g}",
                             False, f"non-finite z-score over {compared} (no spread between chains?)"))
        else:
            worst = rs[int(np.argmax(zs))]
            out.append(Check(f"{m}: sampled vs exact discrete-time moments, max |z|", max(zs), 0.0,
                             f"|z| < {Z_CHECK:g}", max(zs) < Z_CHECK,
                             f"over {compared}; largest at lr M h_max = {worst['lr_M_hmax']:.3g}"))
    for m in methods:
        lo, hi = SLOPE_BANDS.get(m, (1.8, 2.2))
        s = summary["slope_exact_discrete"].get(m)
        out.append(Check(f"{m}: slope of exact discrete-time KL vs lr (log-log)", s, 2.0, f"{lo:g} < slope < {hi:g}",
                         None if s is None else lo < s < hi, "O(lr) moment bias gives KL ~ lr^2"))
    if "kl_ratio_exact_discrete" in summary:
        ratios = summary["kl_ratio_exact_discrete"]
        out.append(Check("KL ratio SGLD / SGWORLD at equal lr (exact discrete time), smallest", min(ratios), None,
                         "> 10", min(ratios) > 10, f"from {min(ratios):.3g} to {max(ratios):.3g} over the sweep"))
    # Information only: sampled numbers, whose Monte Carlo floor sets what they can resolve.
    for m, rs in by.items():
        top = rs[-1]
        out.append(Check(f"{m}: sampled KL at the largest lr (ref: exact discrete-time KL)", top["kl"],
                         top["kl_exact_discrete"], note=f"Monte Carlo floor {top['kl_mc_floor']:.2g}"))
        s = summary["slope"].get(m)
        out.append(Check(f"{m}: slope of sampled KL vs lr (ref: exact)", s, summary["slope_exact_discrete"].get(m),
                         note="fitted to sampled KLs above twice their floor" if s is not None else
                         "not resolved: fewer than two sampled KLs above twice their Monte Carlo floor"))
    if "kl_ratio_sgld_over_sgworld" in summary:
        out.append(Check("KL ratio SGLD / SGWORLD at the largest lr, sampled (ref: exact)",
                         summary["kl_ratio_sgld_over_sgworld"][-1], summary["kl_ratio_exact_discrete"][-1]))
    if summary.get("lr_ratio_at_equal_kl"):
        q = summary["lr_ratio_at_equal_kl"]
        out.append(Check("lr ratio SGWORLD / SGLD at equal KL, smallest", min(q),
                         note=f"from {min(q):.3g} to {max(q):.3g} over the sweep"))
    return out
