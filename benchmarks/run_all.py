"""``make bench``: W1-W3 in float32 and float64, one process per workload and dtype, then the
long run end to end (``long_run.py``), the K = 1 profile, then ``benchmarks/RESULTS.md``.

    python benchmarks/run_all.py [--quick] [--only W1 ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smoke run (short timings, small K)")
    ap.add_argument("--only", nargs="*", default=["W1", "W2", "W3"])
    args = ap.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    started = time.time()
    for workload in args.only:
        for dtype in ("float32", "float64"):
            out = RESULTS / f"{workload}-{dtype}.json"
            cmd = [sys.executable, str(HERE / "bench.py"), workload, dtype, "--out", str(out)]
            print("$", " ".join(cmd[1:]) + (" --quick" if args.quick else ""), flush=True)
            subprocess.run(cmd + (["--quick"] if args.quick else []), check=True, cwd=HERE)
    if not args.quick:
        subprocess.run([sys.executable, str(HERE / "long_run.py")], check=True, cwd=HERE)
    with open(RESULTS / "profile.txt", "w") as f:
        for dtype in ("float64", "float32"):
            subprocess.run([sys.executable, str(HERE / "profile_step.py"), "--chains", "1", "--dtype", dtype,
                            "--steps", "300" if args.quick else "2000"], check=True, cwd=HERE, stdout=f,
                           stderr=subprocess.DEVNULL)
    subprocess.run([sys.executable, str(HERE / "report.py"), "--total-s", f"{time.time() - started:.0f}"]
                   + (["--quick"] if args.quick else []), check=True, cwd=HERE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
