"""One workload in one process: every contender on the same data, dtype, chains and scheme,
timed in alternation; prints one JSON record per (chains, scheme) and writes them to --out.

    python benchmarks/bench.py W1 float32 [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import warnings

import common  # noqa: F401  (sets the thread environment before torch / jax load)

warnings.filterwarnings("ignore", category=FutureWarning)
from common import alternate, calibrate, load_average, matmul_peak, median
from workloads import WORKLOADS, cost

SCHEMES = ("wr", "iid", "wor")
TOPK_MAX_N = 2000


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=sorted(WORKLOADS))
    ap.add_argument("dtype", choices=("float32", "float64"))
    ap.add_argument("--quick", action="store_true", help="smoke run: short calls, two repeats, small K")
    ap.add_argument("--chains", type=int, nargs="*", help="override the workload's chain counts")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    import jax
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import torch
    torch.set_num_threads(common.THREADS)
    import blackjax_side
    import posteriors_side
    import sgworld_side

    workload = WORKLOADS[args.workload]()
    chains = args.chains or (workload.chains[:2] if args.quick else workload.chains)
    target_s, repeats = (common.QUICK_CALL_S, common.QUICK_REPEATS) if args.quick else (common.CALL_S, common.REPEATS)
    m = workload.steps_per_epoch
    itemsize = 4 if args.dtype == "float32" else 8
    c = cost(workload, itemsize)
    records = [{"kind": "machine", "workload": workload.name, "dtype": args.dtype,
                "peak_gflops": matmul_peak(args.dtype), "load_before": load_average(),
                "data": workload.data_note, "title": workload.title, "flops": c["flops"], "bytes": c["bytes"]}]
    print(json.dumps(records[0]), flush=True)
    for k in chains:
        block = m * max(1, round(min(2000, max(m, 2e5 / k)) / m))
        for scheme in SCHEMES:
            contenders, compile_s = {}, {}
            # the path sample() takes without flags in a long run, and (where that path compiles) uncompiled steps
            contenders["sgworld"] = sgworld_side.runner(workload, args.dtype, k, scheme)
            if contenders["sgworld"].compiled:
                contenders["sgworld[eager]"] = sgworld_side.runner(workload, args.dtype, k, scheme, compile=False)
            contenders["posteriors"] = posteriors_side.runner(workload, args.dtype, k, scheme)
            # top-k of n uniforms is O(n) per chain-step: a contender only where n is small
            wr_variants = ("wr-floyd", "wr-topk") if workload.n <= TOPK_MAX_N else ("wr-floyd",)
            variants = wr_variants if scheme == "wr" else (scheme,)
            for v in variants:
                run = blackjax_side.runner(workload, args.dtype, k, v, block)
                name = "blackjax" if v == scheme else f"blackjax[{v.split('-')[1]}]"
                contenders[name] = run
                compile_s[name] = run.compile_s
            steps = {}
            for name, run in contenders.items():
                tic = time.perf_counter()
                run(getattr(run, "unit", m))                      # warm-up
                warm = time.perf_counter() - tic
                compile_s.setdefault(name, warm)
                steps[name] = calibrate(run, getattr(run, "unit", m), target_s)
                if name.startswith("sgworld"):
                    # calls as long as BlackJAX's compiled scans, so that neither pays a per-call set-up the
                    # other does not (a long run pays it once)
                    steps[name] = max(steps[name], block)
            times = alternate(contenders, steps, repeats)
            rates = {name: k * steps[name] / median(t) for name, t in times.items()}
            spread = {name: [k * steps[name] / max(t) , k * steps[name] / min(t)] for name, t in times.items()}
            rec = {"kind": "result", "workload": workload.name, "dtype": args.dtype, "chains": k, "scheme": scheme,
                   "rate": rates, "range": spread, "steps": steps, "compile_s": compile_s, "load": load_average()}
            records.append(rec)
            short = {n: f"{r:.3g}" for n, r in rates.items()}
            print(json.dumps({"chains": k, "scheme": scheme, "rate": short, "load": rec["load"]}), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(records, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
