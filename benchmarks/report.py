"""Write ``benchmarks/RESULTS.md`` from ``benchmarks/results/*.json`` (written by bench.py) and the
K = 1 profile (``results/profile.txt``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import common

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

INTRO = """# Benchmarks: sgworld against BlackJAX and posteriors

Produced by `make bench` (`benchmarks/run_all.py`{quick}); total wall time {total_s} s.
Each workload and dtype runs in its own process; inside it the contenders are timed in turn
(sgworld, posteriors, BlackJAX, sgworld, ...) so that all see the same machine load, and each figure
is the median of {repeats} calls after a warm-up call: calls of about {call_s} s, and sgworld's at least as
long as BlackJAX's compiled scan (so that neither pays a per-call set-up the other does not). A call's
set-up (seeding the chain groups' generators, the first blocks of indices and noise) is paid once by a
long run; at K = 16,384 it is about 0.04 s, so calls last long enough to make it small. JAX's
and sgworld's compile times are listed separately. Unit: chain-steps per second (K chains x steps /
wall time), higher is better. Ratios are sgworld / peer. Load averages (1, 5, 15 min) are from
`/proc/loadavg` next to each row.

**Load control.** No other job was started while the benchmark ran{load_note}, and
the load averages when the first workload started were {first_load} (1, 5, 15 min). Inside a row the benchmark process
itself keeps one core busy (load about 1); the per-row load averages show what else ran.

## Machine

{machine}

Threads: every contender runs with {threads} thread(s): torch intra-op threads (sgworld's
`sample(threads=1)` default; posteriors via `torch.set_num_threads`), XLA with
`--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1` (`BENCH_THREADS` changes both).
No GPU was lent to the session that produced these numbers: part 4 (W1-W3 on a GPU, K up to 1e5)
is not measured here.

## Contenders

- **sgworld**: `sgworld.sample(problem, "sgld" | "sgworld", ...)` exactly as a user calls it, without
  flags, one (K, p) tensor for all chains. The "sgworld" column is the path `sample()` takes by itself
  in a run of at least 1e5 steps: compiled blocks of 16 steps where K p <= 2^20 (`compile=None`, the
  default); "eager" is the same with `compile=False`, one step at a time. Both draw the same
  minibatches and noise. W1 `RegressionProblem` (hand-written batched gradient), W2
  `BayesianLinearRegression`, W3 `from_module(nn.Sequential(Linear(64, 32), Tanh(), Linear(32, 10)),
  likelihood="categorical")` (hand-batched MLP gradient, `problems/mlp.py`). Index streams in blocks
  of steps: Floyd's algorithm for `wr` with b <= 16, rejection of rows with duplicates above; numpy's
  row-wise shuffle for `wor`.
- **BlackJAX** {bj_version}: `blackjax.sgld` with `blackjax.sgmcmc.gradients.grad_estimator`, under
  `jit(vmap(lax.scan(...)))` over chains and steps; index draws inside the compiled scan: `iid`
  randint; `wr` Floyd's algorithm (`fori_loop`, O(b^2)) and top-k of n uniforms (O(n)), both timed,
  the faster is the "BlackJAX" column; `wor` one `random.permutation` per chain and epoch (SGWORLD).
- **posteriors** {post_version}: `posteriors.sgmcmc.sgld.build(...).update(state, batch, inplace=True)`
  once per step on a (K, p) tensor, the log posterior written batched over chains (its gradient is
  one `torch.func` call for all chains), batches from sgworld's `IndexStream`.

All three use the same update `w <- w - lr grad L_B + sqrt(2 lr T) xi` (BlackJAX's and posteriors'
`step_size = lr` on the log posterior `-L`), the same data, lr, T = 1, b and initial point.

Workload data: {data_notes}.
"""

PHYSICS = """## Physical limit

FLOPs and bytes per chain-step (gradient of the batch potential and the update; tanh / exp counted as
one operation; bytes a fused kernel must move: indices, gathered data, parameters, noise), the
achieved rate of the fastest contender in GFLOP/s, against the measured peak of a 1024 x 1024
matmul with the same thread count (same process, same load):

{table}

All three workloads are far from the arithmetic peak: W1 does 30 flops per sample on 7 parameters,
so its cost is per-op dispatch (eager torch) or per-iteration loop overhead (XLA), not arithmetic;
W2 is a gather of b x d floats per chain-step plus two matrix-vector products (memory-bound);
W3 runs batched 32 x 64 x 32 matrix products, too small to reach GEMM speed.
"""


def fmt(x):
    return "-" if x is None else f"{x:.3g}"


def load(quick):
    records = {}
    for path in sorted(RESULTS.glob("W*-float*.json")):
        recs = json.loads(path.read_text())
        records[path.stem] = recs
    return records


def best_blackjax(rate):
    cands = {k: v for k, v in rate.items() if k.startswith("blackjax")}
    name = max(cands, key=cands.get)
    return cands[name], name


def tables(records):
    out, phys = [], []
    for key, recs in records.items():
        head = recs[0]
        out.append(f"### {head['workload']}, {head['dtype']}: {head['title']}\n")
        out.append("| K | scheme | sgworld | sgworld eager | BlackJAX | posteriors | sgworld / BlackJAX "
                   "| sgworld / posteriors | compile s: sgworld, BlackJAX | load |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        best_rate = 0.0
        for r in recs[1:]:
            rate = r["rate"]
            bj, bj_name = best_blackjax(rate)
            tag = bj_name.replace("blackjax", "") if r["scheme"] == "wr" else ""
            comp = max(v for k, v in r["compile_s"].items() if k.startswith("blackjax"))
            ours, eager = rate["sgworld"], rate.get("sgworld[eager]")
            out.append(f"| {r['chains']} | {r['scheme']} | {fmt(ours)} | {fmt(eager)} "
                       f"| {fmt(bj)}{tag} | {fmt(rate['posteriors'])} | {ours / bj:.2f} | {ours / rate['posteriors']:.1f} "
                       f"| {r['compile_s']['sgworld']:.1f}, {comp:.1f} | {r['load']} |")
            best_rate = max(best_rate, ours, bj)
        out.append("")
        achieved = best_rate * head["flops"] / 1e9
        phys.append(f"| {head['workload']} | {head['dtype']} | {head['flops']} | {head['bytes']} | "
                    f"{fmt(best_rate)} | {achieved:.3g} | {head['peak_gflops']:.1f} | {100 * achieved / head['peak_gflops']:.2g}% |")
    phys_table = "\n".join(["| workload | dtype | FLOPs / chain-step | bytes / chain-step | best chain-steps/s "
                            "| achieved GFLOP/s | matmul peak GFLOP/s | fraction |",
                            "|---|---|---|---|---|---|---|---|"] + phys)
    return "\n".join(out), phys_table


def long_run_table(record: dict) -> str:
    """The end-to-end runs of ``long_run.py``: runs of ``steps`` steps per scheme, compilation included."""
    k, steps = record["chains"], record["steps"]
    lines = [f"## One long run, end to end\n",
             f"{record['workload']} ({record['dtype']}), K = {k}, {steps:,} steps, each run in a fresh process "
             "(`benchmarks/long_run.py`), three per contender and scheme in alternation; the median, with all three "
             "in brackets; seconds of the call, compilation included. sgworld: `sample()` without "
             "flags, which compiles a run this long by itself, with torch's on-disk compilation cache as the "
             "benchmark left it, and with an empty one (a first run); BlackJAX: `jit` and the scan.\n",
             "| scheme | sgworld s | sgworld s, empty cache | BlackJAX s (of which compile) | BlackJAX / sgworld |",
             "|---|---|---|---|---|"]

    def runs(r, contender):
        every = r.get("seconds_all", {}).get(contender)
        return f" [{', '.join(f'{t:.1f}' for t in every)}]" if every else ""

    for r in record["rows"]:
        ours, cold, bj = r["sgworld"]["seconds"], r["sgworld_empty_cache"]["seconds"], r["blackjax"]
        lines.append(f"| {r['scheme']} | {ours:.1f}{runs(r, 'sgworld')} | {cold:.1f} | {bj['seconds']:.1f} "
                     f"({bj['compile_s']:.1f}){runs(r, 'blackjax')} | {bj['seconds'] / ours:.2f} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--total-s", default="?")
    ap.add_argument("--load-note", default="", help="what else ran, as a clause after 'No other job was started while the benchmark ran'")
    args = ap.parse_args()
    records = load(args.quick)
    try:
        from importlib.metadata import version
        bj_version, post_version = version("blackjax"), version("posteriors")
        bj_version += f" (jax {version('jax')})"
    except Exception:
        bj_version = post_version = ""
    m = common.machine()
    machine = "\n".join(f"- {k}: {v}" for k, v in m.items()) + f"\n- sgworld revision: {common.git_revision()}"
    notes = "; ".join(sorted({f"{recs[0]['workload']}: {recs[0]['data']}" for recs in records.values()}))
    text = INTRO.format(quick=" --quick" if args.quick else "", total_s=args.total_s, repeats=common.QUICK_REPEATS if args.quick else common.REPEATS,
                        call_s=common.QUICK_CALL_S if args.quick else common.CALL_S,
                        machine=machine, threads=common.THREADS, bj_version=bj_version, post_version=post_version,
                        data_notes=notes, first_load=next(iter(records.values()))[0].get("load_before", "?"),
                        load_note=f", {args.load_note}" if args.load_note else "")
    results, phys = tables(records)
    text += "\n## Results\n\nBlackJAX's `wr` column names the faster of its two distinct-index draws.\n\n" + results
    text += "\n" + PHYSICS.format(table=phys)
    long_run = RESULTS / "long_run.json"
    if long_run.exists():
        text += "\n" + long_run_table(json.loads(long_run.read_text()))
    extra = HERE / "PROFILE.md"
    if extra.exists():
        text += "\n" + extra.read_text()
    prof = RESULTS / "profile.txt"
    if prof.exists():
        text += "\n### Raw profile (benchmarks/profile_step.py, K = 1)\n\n```\n" + prof.read_text().strip() + "\n```\n"
    (HERE / "RESULTS.md").write_text(text)
    print("wrote", HERE / "RESULTS.md")


if __name__ == "__main__":
    main()
