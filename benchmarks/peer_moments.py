"""Peers' SG-MCMC samplers against sgworld's exact discrete-time moments, on one Bayesian linear regression.

Run in the benchmark environment (``make benchmarks/.venv/.installed``; BlackJAX and posteriors are not
dependencies of sgworld)::

    benchmarks/.venv/bin/python benchmarks/peer_moments.py [--quick] [--out benchmarks/results/peer_moments.json]

The problem is the posterior study's (``sgworld.experiments.posterior``: N = 200, d = 2, b = 10). Every
peer runs with the parameters that the conversion tables of docs/concepts.md give for a chosen sgworld
setting, on minibatches of b i.i.d. indices (``iid``, the scheme both peers' examples use), K chains
started from exact posterior draws and run for many relaxation times. Their pooled stationary mean and
covariance, with standard errors from the spread of the chain means (and, for the covariance, of the
per-chain second moments), are compared with the exact stationary moments of the same discrete-time
update, computed by ``sgworld.theory.exact`` with minibatch noise included; the posterior's moments are
shown beside them, so the table says whether the comparison can tell the discrete-time answer from the
continuous one ("resolved") or not.

Peers' updates (read from their sources, versions in benchmarks/requirements.txt):
- SGLD, both:       x' = x + h grad log p_B(x) + sqrt(2 h T) n                       (ours with lr = h)
- SGHMC, both:      x' = x + h m;  m' = (1 - h alpha) m + h grad log p_B(x) + sqrt(h T (2 alpha - h T beta)) n
  (position first, with the old momentum; the gradient at the old position). sgworld's SGHMC is Chen et
  al.'s Algorithm 2 (momentum first, then position with the new momentum); with v = h m, lr = h^2,
  friction alpha_ours = h alpha and beta_hat = h^2 T beta / 2 the two are different discretisations of
  the same dynamics, so each is compared with the exact moments of its OWN update.
- SGNHT: not affine (the thermostat); its sampled moments are compared with sgworld's sgnht sampled
  moments at the converted parameters and with the posterior.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import blackjax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import posteriors  # noqa: E402
import torch  # noqa: E402
from blackjax.sgmcmc.diffusions import overdamped_langevin, sghmc as bj_sghmc, sgnht as bj_sgnht  # noqa: E402
from blackjax.sgmcmc.gradients import grad_estimator  # noqa: E402

from sgworld import BayesianLinearRegression, sample  # noqa: E402
from sgworld.batching import IndexStream  # noqa: E402
from sgworld.experiments.posterior import Config, make_data  # noqa: E402
from sgworld.theory import exact  # noqa: E402

Z = 5.0  # |z| above which a difference counts as resolved (two-sided normal tail 5.7e-7)


# ----------------------------------------------------------------------------- the problem

def problem_and_terms():
    config = Config()
    X, y = make_data(config)
    problem = BayesianLinearRegression(X, y, noise_std=config.noise_std, prior_std=config.prior_std)
    A, g = problem.quadratic_terms()
    return config, problem, X, y, A, g


# ----------------------------------------------------------------------------- moments with errors

def chain_moments(draws: np.ndarray) -> dict:
    """Pooled mean and covariance of (K, draws, d) with standard errors from the spread over the K
    independent chains (each chain's time averages are one observation)."""
    k, _, d = draws.shape
    mean_k = draws.mean(1)
    mean = mean_k.mean(0)
    centred = draws - mean
    second_k = np.einsum("kti,ktj->kij", centred, centred) / draws.shape[1]
    cov = second_k.mean(0)
    return {"mean": mean, "mean_se": mean_k.std(0, ddof=1) / math.sqrt(k),
            "cov": cov, "cov_se": second_k.std(0, ddof=1) / math.sqrt(k)}


def compare(sampled: dict, reference_mean, reference_cov, other: dict | None = None) -> float:
    """Largest |z| of the d means and d (d + 1) / 2 covariance entries against an exact reference, or
    (``other``: another sampled estimate) against that estimate, the two standard errors combined."""
    iu = np.triu_indices(len(reference_mean))
    se_mean, se_cov = sampled["mean_se"], sampled["cov_se"]
    if other is not None:
        se_mean, se_cov = np.hypot(se_mean, other["mean_se"]), np.hypot(se_cov, other["cov_se"])
    z_mean = (sampled["mean"] - reference_mean) / se_mean
    z_cov = ((sampled["cov"] - reference_cov) / se_cov)[iu]
    return float(np.max(np.abs(np.concatenate([z_mean, z_cov]))))


# ----------------------------------------------------------------------------- the peers

def jax_model(X, y, config):
    scale, prec = 1 / config.noise_std ** 2, 1 / config.prior_std ** 2
    data = (jnp.asarray(X), jnp.asarray(y))

    def loglik(w, xy):
        x, t = xy
        return -0.5 * scale * (t - x @ w) ** 2

    return grad_estimator(lambda w: -0.5 * prec * jnp.sum(w * w), loglik, X.shape[0]), data


def blackjax_run(kind: str, params: dict, init: np.ndarray, X, y, config, burn: int, steps: int, thin: int,
                 seed: int) -> np.ndarray:
    """K chains of BlackJAX's diffusion ``kind`` under jit(vmap(scan)); iid minibatch indices inside the scan.

    The integrators are BlackJAX's own (``blackjax.sgmcmc.diffusions``); they are stepped one step per
    scan iteration, so the momentum is never resampled (BlackJAX's ``sghmc`` kernel redraws it at
    each call of ``num_integration_steps``; that refresh is a kernel choice outside the integrator)."""
    estimate, (Xj, yj) = jax_model(X, y, config)
    n, b, h, T = X.shape[0], config.batch_size, params["step_size"], config.temperature
    if kind == "sgld":
        one = overdamped_langevin()
    elif kind == "sghmc":
        one = bj_sghmc(params["alpha"], params["beta"])
    else:
        one = bj_sgnht(params["alpha"], params["beta"])

    def chain(key, x0):
        def body(state, key):
            k_idx, k_noise = jax.random.split(key)
            idx = jax.random.randint(k_idx, (b,), 0, n)
            grad = estimate(state[0], (Xj[idx], yj[idx]))
            if kind == "sgld":
                return (one(k_noise, state[0], grad, h, T),), None
            if kind == "sghmc":
                return one(k_noise, state[0], state[1], grad, h, T), None
            return one(k_noise, state[0], state[1], state[2], grad, h, T), None

        def block(state, key):
            state, _ = jax.lax.scan(body, state, jax.random.split(key, thin))
            return state, state[0]

        state = (x0,) if kind == "sgld" else (x0, jnp.zeros_like(x0)) if kind == "sghmc" else \
            (x0, jnp.zeros_like(x0), jnp.asarray(params["alpha"], x0.dtype))
        k_burn, k_run = jax.random.split(key)
        state, _ = jax.lax.scan(body, state, jax.random.split(k_burn, burn))
        _, draws = jax.lax.scan(block, state, jax.random.split(k_run, steps // thin))
        return draws

    keys = jax.random.split(jax.random.PRNGKey(seed), init.shape[0])
    return np.asarray(jax.jit(jax.vmap(chain))(keys, jnp.asarray(init)))


def posteriors_run(kind: str, params: dict, init: np.ndarray, X, y, config, burn: int, steps: int, thin: int,
                   seed: int) -> np.ndarray:
    """K chains of posteriors' ``kind`` as one (K, d) parameter tensor; iid minibatches from sgworld's
    IndexStream; the log posterior is batched over chains (its gradient holds each chain's own)."""
    torch.manual_seed(seed)  # posteriors draws its noise from torch's global generator
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    n, b, T = X.shape[0], config.batch_size, config.temperature
    scale, prec = n / config.noise_std ** 2, 1 / config.prior_std ** 2

    def log_post(w, idx):
        r = torch.bmm(Xt[idx], w.unsqueeze(-1)).squeeze(-1) - yt[idx]
        return -(0.5 * scale * (r * r).mean(1) + 0.5 * prec * (w * w).sum(1)).sum(), torch.tensor([])

    lr = params["step_size"]
    if kind == "sgld":
        transform = posteriors.sgmcmc.sgld.build(log_post, lr=lr, temperature=T)
    elif kind == "sghmc":
        transform = posteriors.sgmcmc.sghmc.build(log_post, lr=lr, alpha=params["alpha"], beta=params["beta"],
                                                  temperature=T, momenta=0.0)
    else:
        transform = posteriors.sgmcmc.sgnht.build(log_post, lr=lr, alpha=params["alpha"], beta=params["beta"],
                                                  temperature=T, momenta=0.0)
    k = init.shape[0]
    state = transform.init(torch.as_tensor(init).clone())
    stream = IndexStream("iid", n, b, k, torch.Generator().manual_seed(seed))
    out = []
    with torch.no_grad():
        for step in range(1, burn + steps + 1):
            state, _ = transform.update(state, next(stream), inplace=True)
            if step > burn and (step - burn) % thin == 0:
                out.append(state.params.clone().numpy())
    return np.stack(out, axis=1)


def sgworld_run(kind: str, options: dict, lr: float, init, problem, config, burn: int, steps: int, thin: int,
                seed: int) -> np.ndarray:
    trace = sample(problem, kind, lr=lr, temperature=config.temperature, batch_size=config.batch_size,
                   scheme="iid", chains=init.shape[0], num_draws=steps // thin, burn_in=burn, thin=thin,
                   init=init, seed=seed, kernel_options=options or None, progress=False)
    return np.asarray(trace.draws)


# ----------------------------------------------------------------------------- exact moments

def peer_sghmc_step(h: float, T: float, alpha: float, beta: float, d: int):
    """The peers' SGHMC as an affine map on x = (w, m): w' = w + h m, m' = (1 - h alpha) m - h (A_B w - g_B) + eta,
    Var eta = h T (2 alpha - h T beta) I: the random affine step description of sgworld.theory.exact."""
    eye = np.eye(d)

    def coefficients(a, g):
        K = np.zeros(a.shape[:-2] + (2 * d, 2 * d))
        K[..., :d, d:] = h * eye
        K[..., d:, :d] = -h * a
        K[..., d:, d:] = -h * alpha * eye
        return K, np.concatenate([np.zeros_like(g), h * g], axis=-1)

    Q = np.zeros((2 * d, 2 * d))
    Q[d:, d:] = h * T * (2 * alpha - h * T * beta) * eye
    return exact._Step(coefficients, Q)


def exact_iid(A, g, step, lr, batch_size) -> exact.Moments:
    n = A.shape[0]
    return exact._stepwise_moments(A, g, step, exact.batch_noise_factor("iid", n, batch_size), lr)


# ----------------------------------------------------------------------------- the study

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer chains and steps (a smoke run)")
    parser.add_argument("--chains", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", default="sgld,sghmc,sgnht", help="comma-separated subset of sgld, sghmc, sgnht")
    parser.add_argument("--out", default="benchmarks/results/peer_moments.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)

    config, problem, X, y, A, g = problem_and_terms()
    d = X.shape[1]
    target = problem.target(config.temperature)
    h_eig = np.linalg.eigvalsh(A.mean(0))
    chains = args.chains or (256 if args.quick else 1024)
    rng = np.random.default_rng(args.seed)
    init = rng.multivariate_normal(target.mean, target.cov, size=chains)
    b, T = config.batch_size, config.temperature

    lr = 0.015 / h_eig[-1]            # the top of the posterior study's sweep: lr h_max = 0.015
    h = math.sqrt(lr)                 # the peers' SGHMC / SGNHT step for sgworld's lr = h^2
    alpha_ours = 0.3                  # SGHMC's friction per step; the peers' alpha = alpha_ours / h
    a_ours = 0.05                     # SGNHT's diffusion a (its position bias is about a / 2); peers' alpha = a / h
    relax = {"sgld": 1 / (lr * h_eig[0]),
             # SGHMC at friction alpha: the slowest position mode relaxes at about lr h_min / alpha per step
             "sghmc": alpha_ours / (lr * h_eig[0]),
             # SGNHT: its slowest part is the thermostat, whose deviations relax at about lr T / zeta per step
             # (a larger zeta lowers E|v|^2 by a factor ~ zeta'/zeta, and zeta moves by |v|^2 / p - lr T)
             "sgnht": a_ours / (lr * config.temperature)}
    cases = set(args.cases.split(","))
    thin = 10
    rows = []

    def row_of(name, who, m, seconds, burn, steps, exact_peer, exact_ours, ours=None):
        row = {"case": name, "library": who, "chains": chains, "burn_in": burn, "steps": steps, "thin": thin,
               "seconds": round(seconds, 1),
               "z_vs_exact_peer_update": None if exact_peer is None else compare(m, exact_peer.mean, exact_peer.cov),
               "z_vs_exact_sgworld_update": None if exact_ours is None else compare(m, exact_ours.mean, exact_ours.cov),
               "z_vs_sgworld_sampled": None if ours is None else compare(m, ours["mean"], ours["cov"], ours),
               "z_vs_posterior": compare(m, target.mean, target.cov),
               "mean": m["mean"].tolist(), "cov": m["cov"].tolist()}
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("mean", "cov")}), flush=True)

    def run_case(name, kind, peer_params, ours_options, exact_peer, exact_ours, relax_steps, sample_relaxations):
        burn = int(10 * relax_steps)
        steps = thin * max(1, int(sample_relaxations * relax_steps / thin / (5 if args.quick else 1)))
        t0 = time.perf_counter()
        ours = chain_moments(sgworld_run(kind, ours_options, lr, init, problem, config, burn, steps, thin, args.seed))
        row_of(name, "sgworld", ours, time.perf_counter() - t0, burn, steps, None, exact_ours)
        for who, fn in (("BlackJAX", blackjax_run), ("posteriors", posteriors_run)):
            t0 = time.perf_counter()
            m = chain_moments(fn(kind, peer_params, init, X, y, config, burn, steps, thin, args.seed))
            row_of(name, who, m, time.perf_counter() - t0, burn, steps, exact_peer, exact_ours, ours)

    # SGLD: the same discrete-time update in all three libraries (step_size = lr)
    sgld_exact = exact.stepwise_stationary_moments(A, g, lr, T, b, scheme="iid")
    if "sgld" in cases:
        run_case("sgld", "sgld", {"step_size": lr}, {}, sgld_exact, sgld_exact, relax["sgld"], 200)
    # SGHMC: converted parameters; the peers' explicit-Euler update has its own exact moments
    peer_alpha, beta = alpha_ours / h, 0.0
    peer_exact = exact_iid(A, g, peer_sghmc_step(h, T, peer_alpha, beta, d), lr, b).part(slice(0, d))
    ours_exact = exact.sghmc_stationary_moments(A, g, lr, T, b, scheme="iid", alpha=alpha_ours)
    if "sghmc" in cases:
        run_case("sghmc", "sghmc", {"step_size": h, "alpha": peer_alpha, "beta": beta}, {"alpha": alpha_ours},
                 peer_exact, ours_exact, relax["sghmc"], 200)
    # SGNHT: not affine; sampled moments against the posterior (and sgworld's sgnht at the converted a = h alpha)
    if "sgnht" in cases:
        run_case("sgnht", "sgnht", {"step_size": h, "alpha": a_ours / h, "beta": 0.0}, {"a": a_ours},
                 None, None, relax["sgnht"], 4)

    summary = {
        "problem": f"posterior study BLR: N = {X.shape[0]}, d = {d}, b = {b}, T = {T}, scheme iid",
        "lr": lr, "lr_h_max": lr * h_eig[-1], "peer_step_size_momentum_samplers": h, "alpha_ours": alpha_ours,
        "peer_alpha": peer_alpha, "sgnht_a_ours": a_ours, "sgnht_peer_alpha": a_ours / h, "z_resolved": Z,
        "exact": {"posterior": {"mean": target.mean.tolist(), "cov": target.cov.tolist()},
                  "sgld_iid": {"mean": sgld_exact.mean.tolist(), "cov": sgld_exact.cov.tolist()},
                  "sghmc_iid_peer_update": {"mean": peer_exact.mean.tolist(), "cov": peer_exact.cov.tolist()},
                  "sghmc_iid_sgworld_update": {"mean": ours_exact.mean.tolist(), "cov": ours_exact.cov.tolist()}},
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    out.with_suffix(".md").write_text(markdown(summary))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


def markdown(summary: dict) -> str:
    """The rows as a table: largest |z| over the 2 means and 3 covariance entries against each reference."""
    def z(v):
        return "" if v is None else f"{v:.2f}"
    lines = [f"Problem: {summary['problem']}; lr = {summary['lr']:.4g} (lr h_max = {summary['lr_h_max']:.3g}); "
             f"SGHMC: sgworld friction alpha = {summary['alpha_ours']}, peers' step_size = "
             f"{summary['peer_step_size_momentum_samplers']:.4g} and alpha = {summary['peer_alpha']:.4g}, beta = 0; "
             f"SGNHT: sgworld a = {summary['sgnht_a_ours']}, peers' alpha = {summary['sgnht_peer_alpha']:.4g}. "
             f"Entries: the largest |z| over the 2 means and 3 covariance entries; |z| > {summary['z_resolved']:g} "
             "is a resolved difference.", "",
             "| sampler | library | chains x steps | s | vs exact, peer's update | vs exact, sgworld's update "
             "| vs sgworld sampled | vs posterior |", "|---|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        lines.append(f"| {r['case']} | {r['library']} | {r['chains']} x {r['steps']} | {r['seconds']} | "
                     f"{z(r['z_vs_exact_peer_update'])} | {z(r['z_vs_exact_sgworld_update'])} | "
                     f"{z(r['z_vs_sgworld_sampled'])} | {z(r['z_vs_posterior'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
