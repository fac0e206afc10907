"""Command-line interface: ``sgworld run STUDY``, ``resume DIR``, ``report DIR``, ``diagnose TRACE``, ``list``.

Settings resolve in one place with precedence defaults < ``--config FILE.toml`` < ``--set key=value``
< explicit flags (``--seed``, ``--data``); ``--quick`` applies the study's small preset before the
config file. ``sgworld run STUDY --help`` lists the study's settings (defaults, allowed ranges) and
``--print-config`` prints the resolved ones without running. The resolved settings go to
``DIR/config.json``, from which ``sgworld resume DIR`` continues an interrupted run; its checkpoints
carry a fingerprint of those settings and the data, so a resume never mixes two runs. ``--out`` must be
a new or empty folder or an sgworld run folder, and one process at a time holds it (``outdir.py``).
Exit codes: 0 success, 2 bad usage or bad input, 1 failure at run time (with where the partial results
are), 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import torch

from . import __version__, distributed
from .devices import check_device
from .errors import DivergenceError
from .experiments import STUDIES, load_study
from .experiments.common import (ConfigError, describe_settings, load_toml, parse_sets, resolve_config,
                                 to_jsonable)
from .outdir import FolderLock, check_out_folder, clear_run
from .run import sampling_device, torch_threads

class StudyHelp(argparse.Action):
    """``run --help``; after a study name (``run STUDY --help``) also the study's settings, from its Config."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.print_help()
        name = getattr(namespace, "study", None)
        if name in STUDIES:
            study = load_study(name)
            print(f"\nsettings of {name!r} (--set KEY=VALUE, or KEY = VALUE in a --config TOML file; "
                  "--print-config shows the resolved values):")
            print(describe_settings(study.Config, study.QUICK))
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sgworld",
        description="Stochastic-gradient posterior sampling (SGD, SGLD, SGWORLD) and nonequilibrium "
                    "analysis of neural-network training (arXiv 2306.03521).",
        epilog="Example: sgworld run posterior --quick --out runs/demo && sgworld report runs/demo")
    parser.add_argument("--version", action="version", version=f"sgworld {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("list", help="list the studies with a one-line description")

    def common_run_flags(p):
        p.add_argument("--threads", type=int, default=1,
                       help="torch intra-op threads during the run (default 1; 0 leaves torch's default)")
        p.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS",
                       help="seconds between checkpoints of the sampler runs (default 60)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        p.add_argument("--device", default=None,
                       help="where the chains run: cpu (default), cuda, cuda:N or mps; under torchrun, cuda means "
                            "each process's own GPU (cuda:LOCAL_RANK)")

    run = sub.add_parser("run", help="run a study and write its results to --out", add_help=False,
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="Run a study; results, figures, config.json, run.log and report.html go "
                                     "to --out. An interrupted run continues with 'sgworld resume DIR'.\n"
                                     "'sgworld run STUDY --help' also lists the study's settings.")
    run.add_argument("-h", "--help", action=StudyHelp, nargs=0,
                     help="show this help (with STUDY: its settings, defaults and allowed ranges) and exit")
    run.add_argument("study", help="study name (see 'sgworld list')")
    run.add_argument("--out", default=None, help="output directory (default: runs/STUDY)")
    run.add_argument("--config", help="TOML file of settings")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override one setting (repeatable), e.g. --set chains=256")
    run.add_argument("--seed", type=int, help="random seed (overrides config and --set)")
    run.add_argument("--quick", action="store_true", help="small preset for a fast smoke run")
    run.add_argument("--data", "--data-dir", dest="data", metavar="PATH",
                     help="the study's data on disk: digits: MNIST as a folder of IDX files or an .npz; "
                          "regression: a folder with x_train.txt, y_train.txt (and wmin.txt)")
    run.add_argument("--model", metavar="FILE.py[:FACTORY]",
                     help="your model (nonequilibrium, samplers): a Python file whose FACTORY (default make) "
                          "returns a Problem or a dict with module, likelihood and X, y (see examples/)")
    run.add_argument("--overwrite", action="store_true",
                     help="start afresh in an --out folder that holds an unfinished run or another study's run "
                          "(refused while that run is still going)")
    run.add_argument("--print-config", action="store_true",
                     help="print the resolved settings as JSON and exit, without running or writing anything")
    common_run_flags(run)

    resume = sub.add_parser("resume", help="continue an interrupted run from its checkpoints",
                            description="Continue the run in DIR with its config.json; finished sampler runs "
                                        "are read back, the interrupted one resumes from its last checkpoint.")
    resume.add_argument("dir", help="the --out folder of the interrupted run")
    common_run_flags(resume)

    report = sub.add_parser("report", help="write DIR/report.html: config, checks against theory, figures",
                            description="Write one self-contained HTML page (figures embedded) for a finished run.")
    report.add_argument("dir", help="the --out folder of a finished run")
    diag = sub.add_parser("diagnose",
                          help="equilibrium diagnostic of a trace: ESS, R-hat, entropy production, circulation",
                          description="ESS, R-hat and the model-free entropy production and circulation per draw of "
                                      "a trace's chains in their top principal subspace, with intervals "
                                      "(docs/diagnose.md).")
    diag.add_argument("trace", help="a trace file (.npz) or trace folder written by sgworld")
    diag.add_argument("--top", type=int, default=None, metavar="K",
                      help="principal components analysed (default min(p, 4))")
    diag.add_argument("--lag", type=int, default=1, metavar="L", help="draws per transition (default 1)")
    diag.add_argument("--level", type=float, default=0.95, help="coverage of the intervals (default 0.95)")
    diag.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    return parser


def command_list() -> int:
    for name in STUDIES:
        try:
            description = load_study(name).DESCRIPTION
        except ImportError:  # pragma: no cover - a study that failed to import
            description = "(unavailable)"
        print(f"{name:{max(map(len, STUDIES))}s}  {description}")
    return 0


def _data_flag(study_name: str, config_cls, path: str) -> dict:
    fields = {f.name for f in dataclasses.fields(config_cls)}
    for key in ("data", "data_dir"):
        if key in fields:
            return {key: path}
    raise ConfigError(f"study {study_name!r} reads no data files; drop --data")


def command_run(args) -> int:
    study = load_study(args.study)
    layers = [study.QUICK if args.quick else {}]
    if args.config:
        layers.append(load_toml(args.config))
    layers.append(parse_sets(args.set))
    flags = {}
    if args.seed is not None:
        flags["seed"] = args.seed
    if args.data is not None:
        flags.update(_data_flag(args.study, study.Config, args.data))
    if args.model is not None:
        if not getattr(study, "USER_MODEL", False):  # a study that takes a model file declares it
            takes = [n for n in STUDIES if getattr(load_study(n), "USER_MODEL", False)]
            raise ConfigError(f"study {args.study!r} has its own model; drop --model (it is for: {', '.join(takes)})")
        flags["model"] = args.model
    layers.append(flags)
    config = resolve_config(study.Config, *layers)
    if args.print_config:
        print(json.dumps({"study": args.study, **to_jsonable(config)}, indent=2))
        return 0
    out = Path(args.out or Path("runs") / args.study)
    if distributed.rank() > 0:  # under torchrun rank 0 checks and holds out; the others work in a folder of their own
        _follow_rank0(out / _rank_folder(), args.overwrite)
        return execute(args.study, study, config, out, args)
    with _tell_followers():
        held = check_out_folder(out)
    with _tell_followers(), FolderLock(out):  # from here on no other sgworld process writes to out
        if held is not None and held != args.study:
            if not args.overwrite:
                raise ConfigError(f"--out {out} holds a {held!r} run; choose another folder, or pass --overwrite to "
                                  "replace it")
            clear_run(out, getattr(load_study(held), "FIGURES", {}) if held in STUDIES else ())
        if (out / "checkpoints").exists():
            if not args.overwrite:
                raise ConfigError(f"{out} holds an unfinished run; continue it with 'sgworld resume {out}' or pass "
                                  "--overwrite to start again")
            shutil.rmtree(out / "checkpoints")
        _release_followers(None)
        return execute(args.study, study, config, out, args)


def command_resume(args) -> int:
    out = Path(args.dir)
    path = out / "config.json"
    if not path.is_file():
        raise ConfigError(f"{path} is missing: {out} is not the --out folder of a started run")
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); start the run again with 'sgworld run'") from None
    name = saved.get("study")
    study = load_study(name)
    if not (out / "checkpoints").exists() and (out / "metrics.json").exists():
        print(f"{out} is finished; nothing to resume (see 'sgworld report {out}')")
        return 0
    fields = {f.name for f in dataclasses.fields(study.Config)}
    config = resolve_config(study.Config, {k: v for k, v in saved.items() if k in fields})
    if distributed.rank() > 0:
        _follow_rank0(out / _rank_folder(), False)
        return execute(name, study, config, out, args)
    with _tell_followers(), FolderLock(out):
        _release_followers(None)
        return execute(name, study, config, out, args)


# -- under torchrun: rank 0 owns --out; every other rank R runs its share of the chains in OUT/.rank-R -----

def _rank_folder() -> str:
    return f".rank-{distributed.rank()}"


_TOLD = [False]


def _release_followers(error) -> None:
    """Rank 0 tells the other ranks, once, whether its output-folder checks passed (None) or why not."""
    if distributed.active() and distributed.rank() == 0 and not _TOLD[0]:
        _TOLD[0] = True
        distributed.broadcast_from_rank0(error)


class _tell_followers:
    """Rank 0: an error raised in the block before the others were released is passed on to them."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is not None:
            _release_followers(str(exc) or type(exc).__name__)
        return False


def _follow_rank0(scratch: Path, overwrite: bool) -> None:
    """Ranks > 0: wait for rank 0's checks of --out (its refusal is ours), then work in ``scratch``."""
    error = distributed.broadcast_from_rank0(None)
    if error is not None:
        raise ConfigError(f"rank 0 refused the run: {error}")
    if overwrite:
        shutil.rmtree(scratch, ignore_errors=True)


def _out_of_memory(exc: BaseException) -> bool:
    """numpy's MemoryError, torch.OutOfMemoryError (GPU) or the CPU allocator's RuntimeError."""
    return isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


def execute(name: str, study, config, out: Path, args) -> int:
    follower = distributed.rank() > 0
    if follower:  # its study files go to a folder of its own; its sample() calls only add chains to rank 0's
        out = out / _rank_folder()
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=out / "run.log", level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.info("sgworld %s: %s %s with %s", __version__, args.command, name, config)

    def where() -> str:  # resume is advice only where there is something to resume
        if (out / "checkpoints").is_dir():
            return f"Partial results and checkpoints are in {out}/; continue with 'sgworld resume {out}'."
        return "Nothing was checkpointed: start again with 'sgworld run' once the cause is fixed."
    try:
        with torch_threads(args.threads), sampling_device(distributed.local_device(args.device)):
            metrics = study.run(config, out, progress=False if args.quiet else None,
                                checkpoint_every=args.checkpoint_every)
    except DivergenceError as exc:
        logging.error("%s", exc)
        if exc.trace is not None:
            exc.trace.save(out / "diverged_trace.npz")
        print(f"sgworld: error: {exc} The draws before the divergence are in {out}/diverged_trace.npz.",
              file=sys.stderr)
        return 1
    except (ConfigError, ValueError):
        raise
    except KeyboardInterrupt:
        logging.warning("interrupted")
        print(f"sgworld: interrupted. {where()}", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a run-time failure: report it with where the results are
        if _out_of_memory(exc):  # a resume would run out the same way
            logging.exception("out of memory")
            reason = (str(exc).strip().splitlines() or ["no detail"])[0][-160:]
            print(f"sgworld: error: out of memory ({reason}); resuming would run out again: lower chains, draws or "
                  f"steps (see 'sgworld run {name} --help') and start again with --overwrite. Details in "
                  f"{out}/run.log.", file=sys.stderr)
            return 1
        logging.exception("run failed")
        print(f"sgworld: error: {type(exc).__name__}: {exc}. {where()} Details in {out}/run.log.", file=sys.stderr)
        return 1
    logging.info("done in %.1f s", metrics.get("runtime_s", float("nan")))
    if follower:
        shutil.rmtree(out, ignore_errors=True)
        return 0
    from .report import write_report
    report = write_report(out)
    files = sorted(p.name for p in out.iterdir() if p.is_file() and not p.name.startswith("."))
    print(f"wrote {out}/ ({', '.join(files)}); "
          f"open {report} in a browser")
    return 0


def command_diagnose(args) -> int:
    from .diagnose import diagnose
    from .trace import Trace
    result = diagnose(Trace.load(args.trace), top=args.top, lag=args.lag, level=args.level)
    print(json.dumps(result.to_json(), indent=1) if args.json else result)
    return 0


def command_report(args) -> int:
    from .report import write_report
    print(f"wrote {write_report(args.dir)}")
    return 0


COMMANDS = {"list": lambda args: command_list(), "run": command_run, "resume": command_resume,
            "report": command_report, "diagnose": command_diagnose}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in ("run", "resume"):
        distributed.init_from_env()  # under torchrun: the chains of every sample() call are split over the ranks
    try:
        if getattr(args, "device", None) is not None:
            check_device(distributed.local_device(args.device))  # before anything is written
        return COMMANDS[args.command](args)
    except (ConfigError, ValueError) as exc:
        print(f"sgworld: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sgworld: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (e.g. '| head'): no traceback, as for other tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
