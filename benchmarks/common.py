"""Shared pieces of the benchmarks: thread settings, machine description, timing, matmul peak."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time

THREADS = int(os.environ.get("BENCH_THREADS", "1"))
# seconds per timed call and calls per contender; --quick: a smoke run
CALL_S, REPEATS = 0.5, 5
QUICK_CALL_S, QUICK_REPEATS = 0.03, 2

# Every contender runs with the same number of threads: torch's intra-op pool and XLA's CPU pools.
os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={THREADS}")
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("MKL_NUM_THREADS", str(THREADS))


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1]
        mem = f"{int(mem) / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        mem = "unknown"
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "memory": mem, "python": platform.python_version(),
            "kernel": platform.release(), "threads": THREADS}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(contenders: dict, steps: dict, repeats: int) -> dict:
    """Time ``contenders[name](steps[name])`` ``repeats`` times each, in turn (a b c a b c ...), so
    that all see the same machine load; returns per contender the list of seconds per call."""
    out = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            out[name].append(timed(lambda: run(steps[name])))
    return out


def calibrate(run, unit: int, target_s: float, max_steps: int = 10**7) -> int:
    """A step count (multiple of ``unit``) for which one call of ``run`` lasts about ``target_s``."""
    steps = unit
    while True:
        dt = timed(lambda: run(steps))
        if dt >= target_s / 4 or steps >= max_steps:
            break
        steps *= 4
    want = int(steps * target_s / max(dt, 1e-9))
    return max(unit, min(max_steps, unit * max(1, round(want / unit))))


def median(values) -> float:
    return float(statistics.median(values))


def matmul_peak(dtype_name: str, size: int = 1024, repeats: int = 5) -> float:
    """Measured GFLOP/s of an n x n matmul in torch with the benchmark's thread count (the machine's
    practical peak for dense arithmetic on these cores)."""
    import torch

    torch.set_num_threads(THREADS)
    dtype = getattr(torch, dtype_name)
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    a @ b
    best = min(timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
