"""Analysis at scale: time and peak memory of the Fokker–Planck analysis of a network with p parameters.

Three parts; every measurement runs in its own subprocess, so its peak resident memory
(``ru_maxrss``) is its own, under an address-space cap (``--memory-cap``) so that a path that
would exhaust the machine fails with an allocation error instead:

* ``dense``  — :func:`sgworld.theory.wr.wr_theory` (Hessian, per-sample gradient covariance S,
  Lyapunov, circulation, entropy production and its checks) on an MLP with p = 1,000 / 5,000 /
  10,000 parameters, with the time and peak RSS of every function it calls, and a cProfile of
  where the time goes (``--hessian-only`` times ``problem.hessian`` alone; ``--hessian hvp`` takes
  the Hessian from :func:`sgworld.theory.topk.dense_matrix` instead, for comparison);
* ``topk``   — :func:`sgworld.theory.topk.topk_theory` and the top-k eigenpairs of S at p = 10,000
  and 100,000 (k = 20..50), counting Hessian- and covariance-vector products;
* ``stream`` — :class:`sgworld.thermo.streaming.EntropyProductionStream` over 10^8 steps of a 2-D
  linear-Gaussian chain (:func:`sgworld.thermo.streaming.simulate_linear_gaussian_chunks`): EP
  rate against its exact value, integral and detailed FT.

The network: digits-like inputs (16 x 16 pixels, 17 grey levels, 10 classes from noisy templates,
10% of the labels flipped), ``256 -> h -> 9`` with tanh and a fixed zero logit for the tenth class
(a free tenth logit makes S exactly singular: per-sample softmax gradients sum to zero over the
classes), categorical likelihood, Gaussian prior (std 0.3), float64. Wide inputs and a narrow hidden
layer (h = 4, 19, 38 at p = 1,000, 5,000, 10,000) keep every hidden unit in use: with 8 x 8 inputs
and h = 67, weight decay switched units off, and the per-sample gradients of a dead unit all vanish,
so S was exactly singular. The weights ``w0`` are trained by full-batch L-BFGS (1,000 iterations),
which stops near, not at, a minimum (|grad L| = 5.7 at p = 5,000; in an earlier configuration the
Hessian there still had an eigenvalue of -0.09, a unit slowly leaving a saddle). So every per-sample
potential gets the same tilt and anchor, ``U_i(w) - g0 . w + |w - w0|^2 / 2`` with
``g0 = grad L(w0)``: ``w0`` is then an exact stationary point, the Hessian is ``H + I`` (h_max is
~10^4) and S is unchanged (the added terms are the same for every sample). ``lr = 0.1 / h_max``,
``b = 32``.

    python benchmarks/analysis_scale.py [--parts dense,topk,stream] [--threads 1] [--quick]
    python benchmarks/analysis_scale.py --child dense --p 5000 --n 6000      (one measurement)

``--src DIR`` runs the children against another source tree (e.g. a copy with proposed patches).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import common  # shared machine description (benchmarks/common.py; the script's folder is on sys.path)

GIB = 1 << 30


# --------------------------------------------------------------------------- measurement helpers


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # ru_maxrss is in KiB on Linux


class Stages:
    """Wall time, calls and peak RSS (after the call) per named function, by wrapping module attributes."""

    def __init__(self):
        self.rows: dict[str, dict] = {}

    def wrap(self, owner, attr: str, name: str | None = None):
        fn = getattr(owner, attr)
        name = name or attr
        row = self.rows.setdefault(name, {"seconds": 0.0, "calls": 0, "peak_rss_gib": 0.0})

        def timed(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            row["seconds"] += time.perf_counter() - start
            row["calls"] += 1
            row["peak_rss_gib"] = peak_rss_gib()
            print(f"  {name}: {row['seconds']:.1f} s, peak RSS {row['peak_rss_gib']:.2f} GiB", file=sys.stderr,
                  flush=True)  # progress of long runs
            return out

        setattr(owner, attr, timed)
        return fn


def profile_top(profiler, n: int = 12) -> list[str]:
    """The ``n`` functions with the most own (not cumulative) time, as 'seconds  calls  where'."""
    import pstats

    stats = pstats.Stats(profiler).stats
    rows = sorted(((tt, nc, f"{Path(f).name}:{line}({fn})") for (f, line, fn), (_, nc, tt, _, _) in stats.items()),
                  reverse=True)[:n]
    return [f"{tt:8.2f} s {nc:6d}  {where}" for tt, nc, where in rows]


# --------------------------------------------------------------------------- the network


SIDE = 16  # input images are SIDE x SIDE pixels


def hidden_for(p: int) -> int:
    """Hidden width h of the d-h-9 network (d = SIDE^2 inputs) with p = (d + 10) h + 9 closest to ``p``."""
    return max(1, round((p - 9) / (SIDE * SIDE + 10)))


def digits_like(n: int, seed: int):
    """``n`` SIDE x SIDE 'digits': 10 smooth random templates plus pixel noise, 17 grey levels, 10% labels flipped."""
    import numpy as np

    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(np.arange(SIDE), np.arange(SIDE), indexing="ij"), -1).reshape(-1, 2)
    centres = rng.uniform(0, SIDE - 1, size=(10, 4, 2))  # four blobs per class
    width = (SIDE / 8) ** 2 * 2.0
    templates = np.exp(-((grid[None, None] - centres[:, :, None]) ** 2).sum(-1) / width).sum(1)
    templates = 16 * templates / templates.max(1, keepdims=True)
    y = rng.integers(0, 10, size=n)
    X = np.clip(np.rint(templates[y] + rng.normal(scale=3.0, size=(n, SIDE * SIDE))), 0, 16) / 16
    flip = rng.random(n) < 0.1
    y[flip] = rng.integers(0, 10, size=flip.sum())
    return X, y


def trained_problem(p: int, n: int, seed: int = 0, iterations: int = 1000, prior_std: float = 0.3,
                    anchor: float = 1.0):
    """(tilted Problem, trained weights w0 as a tensor, setup info); see the module docstring."""
    import torch
    from torch import nn

    from sgworld import Problem
    from sgworld.problems import from_module

    class ZeroLogit(nn.Module):
        def forward(self, z):
            return torch.cat([torch.zeros_like(z[..., :1]), z], dim=-1)

    torch.manual_seed(seed)
    h = hidden_for(p)
    X, y = digits_like(n, seed)
    base = from_module(nn.Sequential(nn.Linear(SIDE * SIDE, h), nn.Tanh(), nn.Linear(h, 9), ZeroLogit()), X, y,
                       likelihood="categorical", prior_std=prior_std)
    w = base.initial_params().requires_grad_(True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=iterations, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-12, tolerance_change=0.0)

    def closure():
        opt.zero_grad()
        loss = base.potential_fn(w, *base.data).mean() / n  # per-sample scale for L-BFGS's tolerances
        loss.backward()
        return loss

    start = time.perf_counter()
    opt.step(closure)
    train_s = time.perf_counter() - start
    w0 = w.detach()
    with torch.no_grad():
        g0 = base.grad(w0[None])[0]

    def tilted(w_, X_, y_):
        d = w_ - w0
        return base.potential_fn(w_, X_, y_) - g0 @ w_ + 0.5 * anchor * (d * d).sum()

    problem = Problem(tilted, base.data, base.dim, name=f"mlp-{SIDE * SIDE}-{h}-9/tilted")
    info = {"p": base.dim, "n": n, "hidden": h, "prior_std": prior_std, "anchor": anchor, "train_s": round(train_s, 1),
            "grad_norm_before_tilt": float(g0.norm()), "loss": float(base.loss(w0[None])[0])}
    return problem, w0, info


def step_size(problem, w, info: dict) -> float:
    """``lr = 0.1 / h_max`` (h_max by Lanczos, 6 digits), recorded in ``info``."""
    from sgworld.theory.topk import hessian_operator, top_eigenpairs

    start = time.perf_counter()
    h_max = float(top_eigenpairs(hessian_operator(problem, w), 1, tol=1e-6)[0][0])
    info.update(h_max=h_max, h_max_s=round(time.perf_counter() - start, 1))
    return 0.1 / h_max


# --------------------------------------------------------------------------- children


def child_dense(args) -> dict:
    """wr_theory with a per-function breakdown; ``--hessian-only`` times just ``problem.hessian``."""
    import cProfile

    import numpy as np
    import torch

    import sgworld.theory.stationary as stationary
    import sgworld.theory.wr as wr
    from sgworld.theory.topk import dense_matrix, hessian_operator

    problem, w, info = trained_problem(args.p, args.n, args.seed, args.train_iterations, args.prior_std, args.anchor)
    out = {"part": "dense", **info, "hessian": args.hessian, "setup_peak_rss_gib": round(peak_rss_gib(), 2)}
    if args.hessian == "hvp":  # the proposed Hessian: blocks of Hessian-vector products
        problem.hessian = lambda w_, chunk_size=4096: torch.as_tensor(
            dense_matrix(hessian_operator(problem, w_), block=args.block))
    stages = Stages()
    stages.wrap(problem, "hessian")
    if args.hessian_only:
        start = time.perf_counter()
        try:
            with torch.no_grad():
                problem.hessian(w)
            out["status"] = "ok"
        except (RuntimeError, MemoryError) as exc:
            out["status"] = f"failed after {time.perf_counter() - start:.1f} s: {str(exc).splitlines()[0][:160]}"
        out["stages"] = stages.rows
        out["peak_rss_gib"] = round(peak_rss_gib(), 2)
        return out
    lr = step_size(problem, w, out)
    for owner, attr in ((wr, "gradient_covariance"), (wr, "check_minimum"), (wr, "check_gradient_noise"),
                        (wr, "diffusion"), (stationary, "solve_lyapunov"), (stationary, "circulation"),
                        (stationary, "entropy_production_rate"), (stationary, "commutator_ratio"),
                        (wr, "check_at_minimum")):
        stages.wrap(owner, attr)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    theory = wr.wr_theory(problem, w.numpy(), lr, 32)
    state = theory.state
    state.commutator_ratio, state.lr_hmax  # evaluated inside the timing: part of the theory's cost
    profiler.disable()
    total = time.perf_counter() - start
    out.update(status="ok", lr=lr, total_s=round(total, 1), peak_rss_gib=round(peak_rss_gib(), 2),
               stages=stages.rows, other_s=round(total - sum(r["seconds"] for r in stages.rows.values()), 1),
               ep_rate=state.ep_rate, lr_hmax=state.lr_hmax, commutator_ratio=state.commutator_ratio,
               top_hessian_eigenvalues=np.linalg.eigvalsh(state.H)[::-1][:5].tolist(),
               S_condition=float(np.divide(*np.linalg.eigvalsh(theory.S)[[-1, 0]])),
               profile=profile_top(profiler))
    return out


def child_topk(args) -> dict:
    """topk_theory and the top-k eigenpairs of S, with product counts."""
    import sgworld.theory.topk as topk

    problem, w, info = trained_problem(args.p, args.n, args.seed, args.train_iterations, args.prior_std, args.anchor)
    out = {"part": "topk", **info, "k": args.k, "setup_peak_rss_gib": round(peak_rss_gib(), 2)}
    lr = step_size(problem, w, out)
    stages = Stages()
    operators = {}
    make = topk._as_operator

    def counted(dim, apply, dtype):  # count the vectors each operator is applied to
        name = "hessian_products" if not operators else "covariance_products"
        operators[name] = 0

        def apply_counted(T):
            operators[name] += T.shape[0]
            return apply(T)

        return make(dim, apply_counted, dtype)

    topk._as_operator = counted
    top_eigenpairs = stages.wrap(topk, "top_eigenpairs", "hessian_eigenpairs")
    stages.wrap(topk, "subspace_gradient_covariance")
    stages.wrap(topk, "stationary_state", "lyapunov_circulation")
    start = time.perf_counter()
    theory = topk.topk_theory(problem, w.numpy(), lr, 32, args.k, cache_bytes=args.cache_gib * GIB)
    total = time.perf_counter() - start
    topk.top_eigenpairs = top_eigenpairs  # the S eigenpairs below are timed on their own
    out.update(lr=lr, topk_theory_s=round(total, 1), ep_rate=theory.state.ep_rate, lr_hmax=theory.state.lr_hmax,
               commutator_ratio=theory.state.commutator_ratio,
               top_hessian_eigenvalues=theory.hessian_eigenvalues[:5].tolist(),
               peak_rss_after_theory_gib=round(peak_rss_gib(), 2))
    start = time.perf_counter()
    op = topk.covariance_operator(problem, w, cache_bytes=args.cache_gib * GIB)
    out["covariance_setup_s"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    lam_S, _ = topk.top_eigenpairs(op, args.k)
    out.update(S_eigenpairs_s=round(time.perf_counter() - start, 1), top_S_eigenvalues=lam_S[:5].tolist(),
               S_cached=args.n * args.p * 8 <= args.cache_gib * GIB, products=operators, stages=stages.rows,
               peak_rss_gib=round(peak_rss_gib(), 2))
    return out


def child_stream(args) -> dict:
    """10^8 steps of a 2-D linear-Gaussian chain through EntropyProductionStream."""
    import numpy as np

    from sgworld.theory.stationary import stationary_state
    from sgworld.thermo.streaming import EntropyProductionStream, simulate_linear_gaussian_chunks
    from sgworld.thermo.trajectory import exact_linear_gaussian_entropy_production

    F = 0.5 * np.array([[np.cos(0.05), -np.sin(0.05)], [np.sin(0.05), np.cos(0.05)]])
    noise = np.diag([1.0, 0.1])
    state = stationary_state(np.eye(2) - F, noise / 2, 1.0, np.zeros(2), symmetric=False, discrete=True)
    windows = (30, 99)
    block = max(10_000, args.steps // 1000)
    midpoint = EntropyProductionStream.from_state(state, windows, block_steps=block)
    exact = EntropyProductionStream(lambda x: exact_linear_gaussian_entropy_production(F, noise, x), windows,
                                    block_steps=block)
    times = {"simulate": 0.0, "midpoint": 0.0, "exact": 0.0}
    chunks = simulate_linear_gaussian_chunks(F, noise, args.steps, chunk_steps=args.chunk, seed=args.seed)
    while True:
        start = time.perf_counter()
        chunk = next(chunks, None)
        times["simulate"] += time.perf_counter() - start
        if chunk is None:
            break
        for name, stream in (("midpoint", midpoint), ("exact", exact)):
            start = time.perf_counter()
            stream.update(chunk)
            times[name] += time.perf_counter() - start
    out = {"part": "stream", "steps": args.steps, "chunk": args.chunk, "block_steps": block,
           "seconds": {k: round(v, 1) for k, v in times.items()}, "exact_midpoint_rate": state.ep_rate}
    for name, stream in (("midpoint", midpoint), ("exact", exact)):
        rate = stream.rate(resample="blocks")
        res = {"rate": float(rate.value), "rate_se": float(rate.stderr)}
        for k in windows:
            ift = stream.integral_ft(k, resample="blocks", seed=k)
            dft = stream.detailed_ft(k, resample="blocks", seed=k)
            res[f"k{k}"] = {"mean_delta_s": ift.mean_delta_s, "ift": ift.mean_exp, "ift_se": ift.mean_exp_stderr,
                            "dft_slope": dft.slope, "dft_se": dft.slope_stderr}
        out[name] = res
    out["peak_rss_gib"] = round(peak_rss_gib(), 2)
    return out


# --------------------------------------------------------------------------- parent


def run_child(argv: list[str], args) -> dict:
    env = dict(os.environ, BENCH_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
    if args.src:
        env["PYTHONPATH"] = str(Path(args.src).resolve()) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--threads", str(args.threads),
           "--memory-cap", str(args.memory_cap), *argv]
    print("$", " ".join(cmd[1:]), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)  # progress and errors: our stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        return {"argv": argv, "status": f"exit {proc.returncode} (traceback above)"}
    return json.loads(lines[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="dense,topk,stream")
    ap.add_argument("--threads", type=int, default=1, help="torch / MKL / OpenBLAS threads in every child")
    ap.add_argument("--memory-cap", type=float, default=12.0, help="address-space cap per child, GiB")
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--src", default=None, help="source tree (src/ of a checkout) for the children")
    ap.add_argument("--json", default=None, help="append every record to this JSON-lines file")
    ap.add_argument("--dense-sizes", default="1000:2000,5000:6000,10000:12000", help="p:N,... for the dense part")
    ap.add_argument("--topk-sizes", default="10000:12000:20,10000:12000:50,100000:5000:20", help="p:N:k,...")
    ap.add_argument("--child", choices=("dense", "topk", "stream"), help=argparse.SUPPRESS)
    ap.add_argument("--p", type=int, default=1000)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hessian", choices=("existing", "hvp"), default="existing")
    ap.add_argument("--hessian-only", action="store_true")
    ap.add_argument("--block", type=int, default=16, help="Hessian columns per block (--hessian hvp)")
    ap.add_argument("--train-iterations", type=int, default=1000, help="L-BFGS iterations for the weights")
    ap.add_argument("--prior-std", type=float, default=0.3, help="Gaussian prior std of the weights")
    ap.add_argument("--anchor", type=float, default=1.0, help="precision of the |w - w0|^2 / 2 anchor")
    ap.add_argument("--cache-gib", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=10**8)
    ap.add_argument("--chunk", type=int, default=10**6)
    args = ap.parse_args(argv)

    if args.child:
        cap = int(args.memory_cap * GIB)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # before numpy / torch load
            os.environ[var] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
        record = {"dense": child_dense, "topk": child_topk, "stream": child_stream}[args.child](args)
        record.update(threads=args.threads, load_average=common.load_average())
        print(json.dumps(record))
        return

    parts = args.parts.split(",")
    jobs = []
    if "dense" in parts:
        for size in ("1000:2000" if args.quick else args.dense_sizes).split(","):
            p, n = size.split(":")
            jobs.append(["--child", "dense", "--p", p, "--n", n])
    if "topk" in parts:
        for size in ("1000:2000:10" if args.quick else args.topk_sizes).split(","):
            p, n, k = size.split(":")
            iterations = "1000" if int(p) <= 20_000 else "300"  # L-BFGS evaluations cost N p
            jobs.append(["--child", "topk", "--p", p, "--n", n, "--k", k, "--train-iterations", iterations])
    if "stream" in parts:
        jobs.append(["--child", "stream", "--steps", str(10**6 if args.quick else args.steps)])
    print(json.dumps({"machine": common.machine(), "revision": common.git_revision(),
                      "load_average": common.load_average()}))
    for job in jobs:
        record = run_child(job, args)
        print(json.dumps(record), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
