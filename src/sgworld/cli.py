"""Command-line interface: ``sgworld run STUDY``, ``sgworld list``.

Settings resolve in one place with precedence defaults < ``--config FILE.toml`` < ``--set key=value``
< explicit flags (``--seed``); ``--quick`` applies the study's small preset before the config file.
Exit codes: 0 success, 2 bad usage or bad input, 1 failure at run time.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from . import __version__
from .errors import DivergenceError
from .experiments.common import ConfigError, load_toml, parse_sets, resolve_config
from .run import torch_threads

STUDIES = {
    "posterior": "sgworld.experiments.posterior",
    "regression": "sgworld.experiments.regression",
    "digits": "sgworld.experiments.digits",
}


def load_study(name: str):
    if name not in STUDIES:
        raise ConfigError(f"unknown study {name!r}; available: {', '.join(STUDIES)} (see 'sgworld list')")
    return importlib.import_module(STUDIES[name])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sgworld",
        description="Stochastic-gradient posterior sampling (SGD, SGLD, SGWORLD) and nonequilibrium "
                    "analysis of neural-network training (arXiv 2306.03521).")
    parser.add_argument("--version", action="version", version=f"sgworld {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("list", help="list the studies with a one-line description")
    run = sub.add_parser("run", help="run a study and write its results to --out",
                         description="Run a study; results, figures and config.json go to --out.")
    run.add_argument("study", help="study name (see 'sgworld list')")
    run.add_argument("--out", default=None, help="output directory (default: runs/STUDY)")
    run.add_argument("--config", help="TOML file of settings")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override one setting (repeatable), e.g. --set chains=256")
    run.add_argument("--seed", type=int, help="random seed (overrides config and --set)")
    run.add_argument("--quick", action="store_true", help="small preset for a fast smoke run")
    run.add_argument("--data-dir", help="regression study: folder with x_train.txt, y_train.txt (and wmin.txt)")
    run.add_argument("--threads", type=int, default=1,
                     help="torch intra-op threads during the run (default 1; 0 leaves torch's default)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return parser


def command_list() -> int:
    for name in STUDIES:
        try:
            description = load_study(name).DESCRIPTION
        except ImportError:  # pragma: no cover - a study that failed to import
            description = "(unavailable)"
        print(f"{name:12s} {description}")
    return 0


def command_run(args) -> int:
    study = load_study(args.study)
    layers = [study.QUICK if args.quick else {}]
    if args.config:
        layers.append(load_toml(args.config))
    layers.append(parse_sets(args.set))
    flags = {}
    if args.seed is not None:
        flags["seed"] = args.seed
    if args.data_dir is not None:
        flags["data_dir"] = args.data_dir
    layers.append(flags)
    config = resolve_config(study.Config, *layers)
    out = Path(args.out or Path("runs") / args.study)
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=out / "run.log", level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", force=True)
    logging.info("sgworld %s: run %s with %s", __version__, args.study, config)
    try:
        with torch_threads(args.threads):
            metrics = study.run(config, out, progress=False if args.quiet else None)
    except DivergenceError as exc:
        logging.error("%s", exc)
        if exc.trace is not None:
            exc.trace.save(out / "diverged_trace.npz")
        print(f"sgworld: error: {exc} Partial results are in {out}/", file=sys.stderr)
        return 1
    logging.info("done in %.1f s", metrics.get("runtime_s", float("nan")))
    print(f"wrote {out}/ ({', '.join(sorted(p.name for p in out.iterdir() if p.is_file()))})")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "list":
            return command_list()
        return command_run(args)
    except (ConfigError, ValueError) as exc:
        print(f"sgworld: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sgworld: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
