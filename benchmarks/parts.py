"""Where a compiled block's time goes: the parts of ``sample()``'s default path for long runs, per step.

    python benchmarks/parts.py [--workload W1] [--dtype float32] [--chains 64 16384] [--scheme wr iid wor]

For each (K, scheme): the index stream (``IndexStream.take`` of 16 steps), the noise
(``ChainRandom.normal_steps``), the compiled block of 16 steps (gradient and update, indices and noise
given) and, for comparison, the same block uncompiled; milliseconds per step, median of repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time

import common  # noqa: F401  (sets the thread environment before torch loads)
import torch

import sgworld_side
from sgworld.batching import IndexStream
from sgworld.rng import INDEX_STREAM, NOISE_STREAM, ChainRandom
from sgworld.run import FUSED_STEPS, compile_block
from sgworld.samplers import sgld, sgworld
from workloads import WORKLOADS


def per_step_ms(fn, target_s: float = 0.3) -> float:
    """Median over 5 rounds of calls of ``fn`` for ``target_s`` each (calls differ: some refill a block)."""
    fn()
    times = []
    for _ in range(5):
        calls, tic = 0, time.perf_counter()
        while time.perf_counter() - tic < target_s:
            fn()
            calls += 1
        times.append((time.perf_counter() - tic) / calls)
    return statistics.median(times) / FUSED_STEPS * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="W1", choices=sorted(WORKLOADS))
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--chains", type=int, nargs="+", default=[64, 16384])
    ap.add_argument("--scheme", nargs="+", default=["wr", "iid", "wor"])
    args = ap.parse_args()
    torch.set_num_threads(common.THREADS)
    workload = WORKLOADS[args.workload]()
    problem = sgworld_side.problem(workload, args.dtype)
    print(f"{workload.name} {args.dtype}, p = {problem.dim}: milliseconds per step")
    print("| K | scheme | index stream | noise | compiled block | uncompiled block |")
    print("|---|---|---|---|---|---|")
    for k in args.chains:
        for scheme in args.scheme:
            kernel = (sgworld if scheme == "wor" else sgld)(problem, workload.lr)
            stream = IndexStream(scheme, problem.n, workload.b, k, ChainRandom.from_seed(0, INDEX_STREAM, k))
            noise = ChainRandom.from_seed(0, NOISE_STREAM, k)
            position = torch.as_tensor(workload.init, dtype=problem.dtype).expand(k, -1).clone()
            indices, xi = stream.take(FUSED_STEPS), noise.normal_steps(position, FUSED_STEPS)
            compiled = compile_block(kernel, problem.compile_options)
            parts = [per_step_ms(lambda: stream.take(FUSED_STEPS)),
                     per_step_ms(lambda: noise.normal_steps(position, FUSED_STEPS)),
                     per_step_ms(lambda: compiled(position, indices, xi)),
                     per_step_ms(lambda: kernel.block(position, indices, xi))]
            print(f"| {k} | {scheme} | " + " | ".join(f"{t:.3g}" for t in parts) + " |", flush=True)


if __name__ == "__main__":
    main()
