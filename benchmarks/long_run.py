"""One long run end to end, as a user starts it: W1 (float32), K = 64, 1e5 steps per scheme.

Each (contender, scheme) runs in a fresh process, three times in alternation (the median is reported);
the time is that of the call, compilation included:
sgworld's ``sample()`` without flags (which compiles runs this long; torch's on-disk compilation cache
as found, and once with an empty cache), BlackJAX's ``jit(vmap(lax.scan))`` of the same steps. Writes
``results/long_run.json``.

    python benchmarks/long_run.py [--steps 100000] [--chains 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCHEMES = ("wr", "iid", "wor")
REPEATS = 3  # fresh processes per contender and scheme; the table gives the median


def median_run(runs: list[dict]) -> dict:
    """The run with the median time."""
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]


def one(contender: str, scheme: str, steps: int, chains: int) -> dict:
    """Time one run in this process (called in a fresh process by ``main``)."""
    import common  # noqa: F401  (threads)
    from workloads import w1
    workload = w1()
    if contender == "sgworld":
        import torch
        torch.set_num_threads(common.THREADS)
        import sgworld_side
        run = sgworld_side.runner(workload, "float32", chains, scheme, compile=None)
        started = time.perf_counter()
        run(steps)  # compile=None: a run this long compiles by itself
        return {"seconds": time.perf_counter() - started}
    import jax  # noqa: F401
    import blackjax_side
    started = time.perf_counter()
    m = workload.steps_per_epoch
    run = blackjax_side.runner(workload, "float32", chains, scheme if scheme != "wr" else "wr-floyd",
                               m * (2000 // m))
    run(steps)
    return {"seconds": time.perf_counter() - started, "compile_s": run.compile_s}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--chains", type=int, default=64)
    ap.add_argument("--one", nargs=2, metavar=("CONTENDER", "SCHEME"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(*args.one, args.steps, args.chains)))
        return 0

    def fresh(contender, scheme, env=None):
        out = subprocess.run([sys.executable, __file__, "--one", contender, scheme, "--steps", str(args.steps),
                              "--chains", str(args.chains)], check=True, cwd=HERE, capture_output=True, text=True,
                             env={**os.environ, **(env or {})})
        return json.loads(out.stdout.strip().splitlines()[-1])

    rows = []
    for scheme in SCHEMES:
        runs = {"sgworld": [], "blackjax": []}
        for _ in range(REPEATS):  # in alternation, so that both see the same load
            for contender in runs:
                runs[contender].append(fresh(contender, scheme))
        row = {"scheme": scheme, **{c: median_run(r) for c, r in runs.items()},
               "seconds_all": {c: [r["seconds"] for r in rs] for c, rs in runs.items()}}
        with tempfile.TemporaryDirectory() as empty:  # torch's compilation cache empty: the first run's cost
            row["sgworld_empty_cache"] = fresh("sgworld", scheme, {"TORCHINDUCTOR_CACHE_DIR": empty})
        rows.append(row)
        print(json.dumps(row), flush=True)
    record = {"workload": "W1", "dtype": "float32", "chains": args.chains, "steps": args.steps, "rows": rows}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "long_run.json").write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
