"""Posterior study: SGLD vs SGWORLD vs ULA (and the wider SG-MCMC family) on a posterior known exactly.

Bayesian linear regression has a Gaussian posterior in closed form, and because every batch
gradient is affine in w, each method's exact discrete-time stationary moments are computable too
(``sgworld.theory.exact``; reference: arXiv 2306.03521). SGLD and SGWORLD apply the one update rule
``w <- w - lr grad L_B(w) + sqrt(2 lr T) xi`` with ``wr`` and ``wor`` batches, ULA with the full batch;
the other methods' updates are in :mod:`.posterior_methods`. The study has two parts.

**Exact.** For a sweep of learning rates (``num_lrs`` over ``decades`` decades up to
``lr * M * h_max = lr_max_factor``) it gives KL(stationary || posterior) of every method from its
exact moments, the log-log slopes against lr (O(lr) moment bias, so about 2) and, for every sampler
run both with replacement (``wr``) and with reshuffling (``wor``), the wr / wor KL ratio.
Methods are ``NAME``, ``NAME:SCHEME`` or ``NAME+pc[:SCHEME]`` (:mod:`.posterior_methods`).

**Sampled.** At every lr of the sweep whose schedule fits ``max_steps``, every method is sampled with
``chains`` chains that start *away* from the posterior, from ``N(mu, start_spread * Sigma)``, run
``burn_in_relaxations`` relaxation times of the slowest mode (the second moments relax twice as fast,
so the start's excess is down by ``exp(-2 burn_in_relaxations)``) and are then recorded over
``sample_relaxations`` more. The chains of all methods at one lr share their seed, start and injected
noise (common random numbers), so the methods' differences are measured chain by chain. Reported
per method and lr: the excess spread ``e`` in posterior standard units with its interval
(:mod:`.posterior_evidence`), against the exact discrete-time value; z-scores of the sampled mean and
covariance against the exact moments; the sampled KL with its Monte Carlo floor
``(d + d(d+1)/2) / (2 ESS)``. Per lr and wr/wor pair: the sampled difference of ``e`` with its
interval, and whether it is resolved (the interval excludes 0). Lrs whose schedule would need more
than ``max_steps`` steps are reported from the exact theory only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import diagnostics
from .._checks import check_int_range, check_positive
from ..batching import noise_factor
from ..problems import BayesianLinearRegression
from ..run import sample
from ..thermo.trajectory import empirical_covariance, empirical_mean
from . import posterior_evidence as evidence
from .common import Check, StudyCheckpoints, check_resources, write_config, write_json
from ..plots import plot_posterior_kl_vs_lr
from .posterior_methods import (exact_moments, family, parse_methods, preconditioner_for, relaxation_steps,
                                sample_options, wr_wor_pairs)

DESCRIPTION = "SGLD vs SGWORLD vs ULA (any SG-MCMC sampler, wr vs wor) against the exact posterior of a Bayesian " \
              "linear regression, over lr"

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
    methods: tuple[str, ...] = METHODS  # samplers compared, e.g. sgld,sgworld,sghmc:wr,sghmc:wor,sgld+pc:wor
                                        # [each NAME or NAME:SCHEME, NAME+pc:SCHEME preconditioned; NAME: sgld,
                                        # sgworld, ula, sgld_cv, sghmc; SCHEME: wr, iid, wor, full]
    sghmc_alpha: float = 0.1     # SGHMC friction alpha [0 < alpha <= 1]
    sghmc_beta_hat: float = 0.0  # SGHMC noise estimate beta_hat [0 <= beta_hat < alpha]
    sample: bool = True          # run the samplers (false: the exact theory only, fast) [true or false]
    chains: int = 2048           # chains per run [>= 2]
    start_spread: float = 2.0    # chains start from N(posterior mean, this x posterior covariance) [> 0]
    burn_in_relaxations: float = 6.0  # burn-in in units of the slowest relaxation time ~1/(lr h_min) [> 0]
    sample_relaxations: float = 12.0  # sampling span in the same units [> 0]
    max_steps: int = 25000       # lrs whose burn-in + sampling need more steps are not sampled [>= 2 draws]
    draws: int = 100             # recorded draws per chain [>= 4]
    wor_permutations: int = 20000  # permutations averaged for the wor schemes' exact moments [>= 2]
    seed: int = 0                # random seed of data, starting points and chains [>= 0]


QUICK = {"n": 100, "chains": 128, "num_lrs": 3, "decades": 1.0, "burn_in_relaxations": 5.0,
         "sample_relaxations": 8.0, "max_steps": 12000, "draws": 30, "wor_permutations": 2000}


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


def schedule(lr: float, config: Config, relax: float) -> dict:
    """Burn-in, thinning and total steps at one lr from the slowest relaxation time ``relax`` (steps) of
    the methods compared; whole epochs, so that every method's draws sit at the same epoch boundaries.
    ``sampled`` is False when the schedule needs more than ``max_steps`` steps (or ``sample`` is off)."""
    epoch = config.n // config.batch_size
    burn_in = epoch * math.ceil(config.burn_in_relaxations * relax / epoch)
    thin = epoch * max(1, math.ceil(config.sample_relaxations * relax / (config.draws * epoch)))
    steps = burn_in + thin * config.draws
    return {"lr": lr, "relaxation_steps": relax, "burn_in": burn_in, "thin": thin, "steps": steps,
            "burn_in_relaxation_times": burn_in / relax, "sample_relaxation_times": thin * config.draws / relax,
            "sampled": config.sample and steps <= config.max_steps}


def fit_slope(lrs, kls) -> float | None:
    lrs, kls = np.asarray(lrs, float), np.asarray([np.nan if v is None else v for v in kls], float)
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
    for name in ("noise_std", "prior_std", "lr_max_factor", "decades", "burn_in_relaxations", "sample_relaxations",
                 "start_spread"):
        check_positive(name, getattr(config, name))
    check_positive("temperature", config.temperature)
    if not -1 < config.feature_corr < 1:
        raise ValueError(f"feature_corr = {config.feature_corr} is out of range; allowed: -1 < feature_corr < 1")
    if not 0 < config.sghmc_alpha <= 1:
        raise ValueError(f"sghmc_alpha = {config.sghmc_alpha} is out of range; allowed: 0 < sghmc_alpha <= 1")
    if not 0 <= config.sghmc_beta_hat < config.sghmc_alpha:
        raise ValueError(f"sghmc_beta_hat = {config.sghmc_beta_hat} is out of range; allowed: "
                         f"0 <= sghmc_beta_hat < sghmc_alpha = {config.sghmc_alpha}")
    for lr in config.lrs or ():
        check_positive("lrs entry", lr)
    parse_methods(config.methods)


def _checkpoint_name(label: str, i: int) -> str:
    return f"{label.replace(':', '-').replace('+', '_')}-lr{i}"


def run(config: Config, out_dir, progress=None, checkpoint_every: float | None = 60.0) -> dict:
    """Run the sweep; every sampler run is resumable (see :class:`StudyCheckpoints`)."""
    check_config(config)
    specs = parse_methods(config.methods)
    runs = len(specs) * (len(config.lrs) if config.lrs else config.num_lrs)
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
    H = A.mean(0)
    h = np.linalg.eigvalsh(H)
    epoch = config.n // config.batch_size
    lrs = learning_rates(config, h[-1])
    theory = {"map_point": target.mean, "preconditioner": preconditioner_for(H), "alpha": config.sghmc_alpha}
    plans = [schedule(lr, config, max(relaxation_steps(s, H, lr, theory["preconditioner"], config.sghmc_alpha)
                                      for s in specs))
             for lr in lrs]
    write_config(out_dir, config, lrs_resolved=lrs, steps_per_epoch=epoch, schedule=plans)
    np.savez(out_dir / "data.npz", X=X, y=y)

    # One start for every method and lr: N(mu, start_spread Sigma), away from every stationary law.
    z0 = np.random.default_rng(config.seed + 1).standard_normal((config.chains, config.d))
    init = torch.tensor(target.mean + math.sqrt(config.start_spread) * z0 @ np.linalg.cholesky(target.cov).T)
    start_excess = evidence.excess_of_moments(target.mean, config.start_spread * target.cov, target.mean, target.cov)
    results, per_chain = [], {}
    for i, plan in enumerate(plans):
        lr = plan["lr"]
        for spec in specs:
            exact = exact_moments(spec, A, g, lr, config.temperature, config.batch_size, **theory,
                                  beta_hat=config.sghmc_beta_hat, permutations=config.wor_permutations,
                                  seed=config.seed)
            r = {"method": spec.label, "scheme": spec.scheme, "lr": lr, "lr_M_hmax": lr * epoch * h[-1],
                 "sampled": plan["sampled"],
                 "exact_discrete": {"mean": exact.mean, "cov": exact.cov},
                 "kl_exact_discrete": diagnostics.gaussian_kl(exact.mean, exact.cov, target.mean, target.cov),
                 "excess_exact": evidence.excess_of_moments(exact.mean, exact.cov, target.mean, target.cov),
                 "excess_exact_se": evidence.excess_se_of_moments(exact.mean, exact.cov, exact.mean_se, exact.cov_se,
                                                                  target.mean, target.cov)}
            if plan["sampled"]:
                # the same seed for every method at this lr: the same injected noise (common random numbers)
                trace = sample(problem, **sample_options(spec, config.batch_size, config.n, **theory,
                                                         beta_hat=config.sghmc_beta_hat),
                               lr=lr, temperature=config.temperature, chains=config.chains,
                               num_draws=config.draws, burn_in=plan["burn_in"], thin=plan["thin"], init=init,
                               seed=config.seed + 1000 * i, progress=progress,
                               **store.sample_args(_checkpoint_name(spec.label, i)))
                draws = np.asarray(trace.draws)
                per_chain[spec.label, i] = evidence.chain_excess(draws, target.mean, target.cov)
                r.update(_sampled(draws, trace, exact, target, per_chain[spec.label, i], r))
                r["kl_mc_floor"] = (config.d + config.d * (config.d + 1) / 2) / (2 * r["ess_min"])
            else:
                r.update(dict.fromkeys(SAMPLED_KEYS))
            results.append(r)
    summary = summarise(results, specs)
    summary["separation"] = separations(results, specs, per_chain, plans)
    summary["separation_resolved_lrs"] = {
        pair: sum(s["resolved"] for s in rows) for pair, rows in summary["separation"].items()}
    metrics = {"exact": {"mean": target.mean, "cov": target.cov}, "hessian_eigenvalues": h,
               "noise_factor_wr": noise_factor("wr", config.n, config.batch_size),
               "start": {"spread": config.start_spread, "excess": start_excess},
               "interval": {"z": evidence.INTERVAL_Z, "level": evidence.INTERVAL_LEVEL},
               "results": results, "summary": summary, "runtime_s": time.time() - started}
    write_json(out_dir / "metrics.json", metrics)
    plot_posterior_kl_vs_lr(results, summary, {s.label: family(s.label) for s in specs}, evidence.INTERVAL_Z,
                            out_dir / "kl_vs_lr.png")
    store.clear()
    return metrics


SAMPLED_KEYS = ("mean", "cov", "kl", "kl_mc_floor", "mean_error", "cov_error", "ess_min", "excess", "excess_se",
                "excess_ci", "z_excess", "z_mean_max", "z_cov_max", "steps", "burn_in")  # None where not sampled


def _sampled(draws, trace, exact, target, chains_excess, r) -> dict:
    """The sampled numbers of one run: moments, KL, the excess spread with its interval, z-scores."""
    mean, cov = trace.mean(), trace.cov()
    # standard errors from the spread of the independent chains, plus the exact moments' own
    # (permutation-sampling) standard errors where they have them
    mean_se = np.hypot(empirical_mean(draws).stderr, 0.0 if exact.mean_se is None else exact.mean_se)
    cov_se = np.hypot(empirical_covariance(draws, mean).stderr, 0.0 if exact.cov_se is None else exact.cov_se)
    excess = evidence.summary(chains_excess)
    return {
        "mean": mean, "cov": cov,
        "kl": diagnostics.gaussian_kl(mean, cov, target.mean, target.cov),
        "mean_error": diagnostics.mean_error(mean, target.mean, target.cov),
        "cov_error": diagnostics.cov_error(cov, target.cov),
        "ess_min": float(np.nanmin(diagnostics.ess(draws))),
        "excess": excess["value"], "excess_se": excess["se"], "excess_ci": excess["ci"],
        "z_excess": (excess["value"] - r["excess_exact"]) / math.hypot(excess["se"], r["excess_exact_se"]),
        "z_mean_max": float(np.max(np.abs(mean - exact.mean) / mean_se)),
        "z_cov_max": float(np.max(np.abs(cov - exact.cov) / cov_se)),
        "steps": int(trace.steps[-1]), "burn_in": int(trace.meta["burn_in"]),
    }


def separations(results, specs, per_chain, plans) -> dict:
    """Per wr/wor pair ("sgld/sgworld") and sampled lr: the paired difference of the excess spread."""
    out = {}
    exact = {(r["method"], r["lr"]): r for r in results}
    for a, b in wr_wor_pairs(specs):
        rows = []
        for i, plan in enumerate(plans):
            if not plan["sampled"]:
                continue
            ra, rb = exact[a, plan["lr"]], exact[b, plan["lr"]]
            s = evidence.separation(per_chain[a, i], per_chain[b, i], ra["excess_exact"], rb["excess_exact"],
                                    math.hypot(ra["excess_exact_se"], rb["excess_exact_se"]))
            rows.append({"lr": plan["lr"], "lr_M_hmax": ra["lr_M_hmax"], **s})
        out[f"{a}/{b}"] = rows
    return out


def summarise(results, specs) -> dict:
    """Slopes of log KL vs log lr, wr/wor and SGLD/SGWORLD KL ratios per lr, and the lr ratio at equal KL."""
    methods = [s.label for s in specs]
    by = {m: sorted((r for r in results if r["method"] == m), key=lambda r: r["lr"]) for m in methods}
    out = {"slope": {}, "slope_exact_discrete": {}}  # "slope": sampled KLs above twice their floor
    for m, rs in by.items():
        # Sampled KLs within a factor 2 of the Monte Carlo floor say nothing about the slope.
        resolved = [r for r in rs if r["sampled"] and r["kl"] > 2 * r["kl_mc_floor"]]
        out["slope"][m] = fit_slope([r["lr"] for r in resolved], [r["kl"] for r in resolved])
        out["slope_exact_discrete"][m] = fit_slope([r["lr"] for r in rs], [r["kl_exact_discrete"] for r in rs])
    out["lrs"] = sorted({r["lr"] for r in results})
    out["kl_ratio_wr_over_wor"] = {
        f"{a}/{b}": [x["kl_exact_discrete"] / y["kl_exact_discrete"] for x, y in zip(by[a], by[b])]
        for a, b in wr_wor_pairs(specs)}
    if "sgld" in by and "sgworld" in by:
        out["kl_ratio_sgld_over_sgworld"] = [a["kl"] / b["kl"] if a["sampled"] else None
                                             for a, b in zip(by["sgld"], by["sgworld"])]
        out["kl_ratio_exact_discrete"] = [a["kl_exact_discrete"] / b["kl_exact_discrete"]
                                          for a, b in zip(by["sgld"], by["sgworld"])]
        # lr ratio at equal KL: with KL_sgworld ~ c lr^s, SGWORLD reaches SGLD's KL at lr at an lr
        # (KL_sgld / KL_sgworld)^(1/s) times larger (evaluated at every lr of the sweep).
        s = out["slope_exact_discrete"]["sgworld"]
        if s:
            out["lr_ratio_at_equal_kl"] = [float(q ** (1.0 / s)) for q in out["kl_ratio_exact_discrete"]]
    return out


# --------------------------------------------------------------------------- report (sgworld report)


FIGURES = {
    "kl_vs_lr.png": "Left: KL(stationary || posterior) against lr for each method; lines the exact discrete-time KL "
                    "(solid wr, dashed wor, dotted full batch), circles the sampled KL, grey its Monte Carlo floor. "
                    "Middle: the sampled excess spread in posterior standard units (intervals +-3 SE) against the "
                    "exact values (lines). Right: the paired wr - wor differences of the excess spread; resolved "
                    "where the interval excludes 0",
}

Z_CHECK = 5.0  # as in the tests: two-sided normal tail 5.7e-7 per compared number
SLOPE_BAND_WOR = (1.8, 2.3)  # exact-KL slopes the tests accept for sgworld; (1.8, 2.2) for sgld and ula


def checks(metrics: dict) -> list[Check]:
    """The study's headline numbers against theory, with the tolerances of its tests."""
    results, summary = metrics["results"], metrics["summary"]
    d = len(metrics["exact"]["mean"])
    methods = list(dict.fromkeys(r["method"] for r in results))
    by = {m: sorted((r for r in results if r["method"] == m), key=lambda r: r["lr"]) for m in methods}
    out = []
    for m, rs in by.items():
        sampled = [r for r in rs if r["sampled"]]
        if not sampled:
            continue
        # z of the sampled moments and excess against the method's exact discrete-time ones (None: NaN in the JSON)
        zs = [None if None in (r["z_mean_max"], r["z_cov_max"], r["z_excess"]) else
              max(r["z_mean_max"], r["z_cov_max"], abs(r["z_excess"])) for r in sampled]
        compared = f"{len(sampled)} lrs x {d + d * (d + 1) // 2 + 1} numbers"
        if None in zs:
            out.append(Check(f"{m}: sampled vs exact discrete-time moments, max |z|", None, 0.0, f"|z| < {Z_CHECK:g}",
                             False, f"non-finite z-score over {compared} (no spread between chains?)"))
        else:
            worst = sampled[int(np.argmax(zs))]
            out.append(Check(f"{m}: sampled vs exact discrete-time moments, max |z|", max(zs), 0.0,
                             f"|z| < {Z_CHECK:g}", max(zs) < Z_CHECK,
                             f"over {compared} (mean, covariance, excess spread); largest at lr M h_max = "
                             f"{worst['lr_M_hmax']:.3g}"))
    for m in methods:
        s = summary["slope_exact_discrete"].get(m)
        if m in METHODS:
            lo, hi = SLOPE_BAND_WOR if by[m][0]["scheme"] == "wor" else (1.8, 2.2)
            out.append(Check(f"{m}: slope of exact discrete-time KL vs lr (log-log)", s, 2.0,
                             f"{lo:g} < slope < {hi:g}", None if s is None else lo < s < hi,
                             "O(lr) moment bias gives KL ~ lr^2"))
        else:  # O(lr) terms of different signs can cancel inside the sweep: no band, the slope as found
            out.append(Check(f"{m}: slope of exact discrete-time KL vs lr (log-log)", s, 2.0,
                             note="information: KL ~ lr^2 only where one O(lr) term dominates"))
    if "kl_ratio_exact_discrete" in summary:
        ratios = summary["kl_ratio_exact_discrete"]
        out.append(Check("KL ratio SGLD / SGWORLD at equal lr (exact discrete time), smallest", min(ratios), None,
                         "> 10", min(ratios) > 10, f"from {min(ratios):.3g} to {max(ratios):.3g} over the sweep"))
    for pair, ratios in summary.get("kl_ratio_wr_over_wor", {}).items():
        if pair != "sgld/sgworld":
            out.append(Check(f"KL ratio {pair} at equal lr (exact discrete time), smallest", min(ratios),
                             note=f"from {min(ratios):.3g} to {max(ratios):.3g} over the sweep"))
    for pair, rows in summary.get("separation", {}).items():
        if not rows:
            continue
        z = max(abs(s["z_vs_exact"]) for s in rows)
        out.append(Check(f"{pair}: sampled difference of the excess spread vs exact, max |z|", z, 0.0,
                         f"|z| < {Z_CHECK:g}", z < Z_CHECK, f"paired chains, over {len(rows)} sampled lrs"))
        k = sum(s["resolved"] for s in rows)
        lrs = ", ".join(f"{s['lr_M_hmax']:.3g}" for s in rows if s["resolved"]) or "none"
        note = (f"interval +-{metrics['interval']['z']:g} SE excludes 0 at lr M h_max = {lrs}"
                f" (of {len(rows)} sampled lrs)")
        out.append(Check(f"{pair}: sampled lrs where the separation is resolved", k, len(rows), note=note))
        for s in rows:
            out.append(Check(f"{pair}: sampled difference of the excess spread at lr M h_max = {s['lr_M_hmax']:.3g} "
                             "(ref: exact)", s["value"], s["exact"],
                             note=f"interval [{s['ci'][0]:.3g}, {s['ci'][1]:.3g}]: "
                                  + ("resolved" if s["resolved"] else "not resolved")))
    # Information only: sampled numbers, whose Monte Carlo floor sets what they can resolve.
    for m, rs in by.items():
        sampled = [r for r in rs if r["sampled"]]
        if not sampled:
            continue
        top = sampled[-1]
        out.append(Check(f"{m}: sampled KL at the largest lr (ref: exact discrete-time KL)", top["kl"],
                         top["kl_exact_discrete"], note=f"Monte Carlo floor {top['kl_mc_floor']:.2g}"))
        s = summary["slope"].get(m)
        out.append(Check(f"{m}: slope of sampled KL vs lr (ref: exact)", s, summary["slope_exact_discrete"].get(m),
                         note="fitted to sampled KLs above twice their floor" if s is not None else
                         "not resolved: fewer than two sampled KLs above twice their Monte Carlo floor"))
    if "kl_ratio_sgld_over_sgworld" in summary:
        pairs = [(q, e) for q, e in zip(summary["kl_ratio_sgld_over_sgworld"], summary["kl_ratio_exact_discrete"])
                 if q is not None]
        if pairs:
            out.append(Check("KL ratio SGLD / SGWORLD at the largest sampled lr, sampled (ref: exact)", *pairs[-1]))
    if summary.get("lr_ratio_at_equal_kl"):
        q = summary["lr_ratio_at_equal_kl"]
        out.append(Check("lr ratio SGWORLD / SGLD at equal KL, smallest", min(q),
                         note=f"from {min(q):.3g} to {max(q):.3g} over the sweep"))
    return out
