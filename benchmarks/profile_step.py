"""Per-step cost of sgworld's hot loop at small K, split into its parts (torch.profiler).

    python benchmarks/profile_step.py [--chains 1] [--dtype float64] [--steps 2000]

Prints the wall time per step of ``sgworld.sample`` and the torch.profiler table of the ops one
step runs (CPU self time per call), so the per-step overhead and its bottleneck can be read off.
"""

from __future__ import annotations

import argparse
import time

import common  # noqa: F401
import torch
from torch.profiler import ProfilerActivity, profile

import sgworld_side
from workloads import WORKLOADS


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="W1", choices=sorted(WORKLOADS))
    ap.add_argument("--chains", type=int, default=1)
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--scheme", default="wr")
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(common.THREADS)
    w = WORKLOADS[args.workload]()
    run = sgworld_side.runner(w, args.dtype, args.chains, args.scheme)
    run(w.steps_per_epoch * 10)
    times = []
    for _ in range(5):
        tic = time.perf_counter()
        run(args.steps)
        times.append((time.perf_counter() - tic) / args.steps)
    times.sort()
    print(f"{args.workload} K={args.chains} {args.dtype} {args.scheme}: {times[2] * 1e6:.1f} us per step (median of 5)")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(args.steps)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
