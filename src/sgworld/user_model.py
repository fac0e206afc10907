"""A user's model for ``sgworld run nonequilibrium|samplers --model FILE.py[:FACTORY]``.

``FILE.py`` is imported as a module and ``FACTORY`` (default ``make``) is called without arguments. It
returns either

* a :class:`sgworld.Problem` (used as it is), or
* a dict with ``module`` (an ``nn.Module``), ``likelihood`` (``"gaussian"`` or ``"categorical"``) and
  optionally ``X``, ``y`` (the training data), ``noise_std``, ``prior_std`` (as in
  :func:`sgworld.problems.from_module`; defaults 1.0 and 1.0) and ``X_test``, ``y_test`` (held-out data
  for predictive metrics).

When the dict has no ``X``, ``y``, they come from ``--data``: an ``.npz`` with arrays ``X`` and ``y``
(and optionally ``X_test``, ``y_test``), or a CSV file of numbers whose last column is ``y`` (an optional
header line of names is skipped). :func:`load_model` returns a :class:`UserModel`.

Every failure is one ``ValueError`` line naming the file, the factory or the value and the fix: a missing
file, a factory that is absent or raises, a wrong return type, missing keys, a likelihood that does not
fit the module's outputs (from :func:`sgworld.problems.from_module`).
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._checks import check_choice
from .problems import Problem, from_module
from .problems.module import LIKELIHOODS

__all__ = ["UserModel", "load_model", "load_data", "parse_spec", "DEFAULT_FACTORY"]

DEFAULT_FACTORY = "make"
_KEYS = {"module", "likelihood", "X", "y", "noise_std", "prior_std", "X_test", "y_test"}


@dataclass(frozen=True, eq=False)
class UserModel:
    """The problem built from a model file, with what the pipelines need besides it."""

    problem: Problem
    module: torch.nn.Module | None     # None when the factory returned a Problem
    likelihood: str | None             # None when the factory returned a Problem
    noise_std: float
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    source: str                        # "FILE.py:FACTORY" (and the data file)
    path: Path | None = None           # the model file

    def test_set(self):
        """The :class:`sgworld.comparison.TestSet` of the held-out data (else the training data), or None
        when the factory returned a bare Problem (no way to predict)."""
        from .comparison import TestSet, module_predictor

        if self.module is None:
            return None
        X, y = (self.X_test, self.y_test) if self.X_test is not None else (
            self.problem.data[0].numpy(), self.problem.data[1].numpy())
        return TestSet(X, y, module_predictor(self.module, self.problem.dtype), self.likelihood, self.noise_std)


def parse_spec(spec: str) -> tuple[Path, str]:
    """``"FILE.py[:FACTORY]"`` -> (path, factory name)."""
    text = str(spec)
    path, sep, factory = text.rpartition(":")
    if not sep or "/" in factory or factory.endswith(".py"):  # no factory named
        path, factory = text, DEFAULT_FACTORY
    factory = factory or DEFAULT_FACTORY
    if not factory.isidentifier():
        raise ValueError(f"--model {text!r}: factory {factory!r} is not a Python name; give FILE.py[:FACTORY]")
    return Path(path), factory


def _import(path: Path):
    if not path.is_file():
        raise ValueError(f"model file {str(path)!r} does not exist; give --model FILE.py[:FACTORY] with an existing "
                         "Python file")
    name = f"sgworld_user_model_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"model file {str(path)!r} cannot be imported as Python; give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's code: one line with its own error
        sys.modules.pop(name, None)
        raise ValueError(f"model file {str(path)!r} failed to import ({_one_line(exc)}); fix the file") from None
    return module


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load_data(path) -> dict:
    """``{"X", "y"[, "X_test", "y_test"]}`` from an ``.npz`` (those array names) or a CSV (last column y)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} does not exist; give --data FILE.npz or FILE.csv")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"data file {str(path)!r} cannot be read as .npz ({_one_line(exc)})") from None
        missing = {"X", "y"} - set(arrays)
        if missing:
            raise ValueError(f"data file {str(path)!r} lacks array(s) {', '.join(sorted(missing))}; save the inputs "
                             "as X and the targets or labels as y")
        return {k: arrays[k] for k in ("X", "y", "X_test", "y_test") if k in arrays}
    if path.suffix.lower() == ".csv":
        try:
            table = np.genfromtxt(path, delimiter=",", dtype=np.float64, skip_header=_header_lines(path))
        except ValueError as exc:
            raise ValueError(f"data file {str(path)!r} is not a CSV of numbers ({_one_line(exc)})") from None
        table = np.atleast_2d(table)
        if table.shape[1] < 2 or not np.all(np.isfinite(table)):
            raise ValueError(f"data file {str(path)!r} must hold finite numbers in two or more columns (inputs, "
                             f"then y last), got shape {table.shape}")
        return {"X": table[:, :-1], "y": table[:, -1]}
    raise ValueError(f"data file {str(path)!r}: expected an .npz or a .csv file")


def _header_lines(path: Path) -> int:
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = fh.readline()
    try:
        [float(v) for v in first.split(",")]
        return 0
    except ValueError:
        return 1


def load_model(spec: str, data: str | None = None, dtype: torch.dtype = torch.float64) -> UserModel:
    """Import ``FILE.py``, call ``FACTORY()`` and build the Problem (module docstring)."""
    path, factory_name = parse_spec(spec)
    source = f"{path}:{factory_name}"
    factory = getattr(_import(path), factory_name, None)
    if not callable(factory):
        raise ValueError(f"model file {str(path)!r} defines no function {factory_name!r}; define it, or name the "
                         "factory with --model FILE.py:FACTORY")
    try:
        made = factory()
    except Exception as exc:  # noqa: BLE001 - the user's code
        raise ValueError(f"model factory {source} raised {_one_line(exc)}; fix the factory") from None
    if isinstance(made, Problem):
        return UserModel(made, None, None, 1.0, None, None, source, path)
    if not isinstance(made, dict):
        raise ValueError(f"model factory {source} returned {type(made).__name__}; it must return a sgworld Problem "
                         "or a dict with module, likelihood and X, y")
    unknown = set(made) - _KEYS
    if unknown:
        raise ValueError(f"model factory {source} returned unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                         f"allowed: {', '.join(sorted(_KEYS))}")
    module = made.get("module")
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"model factory {source}: 'module' must be a torch.nn.Module, got "
                         f"{type(module).__name__}; return the network under the key 'module'")
    likelihood = made.get("likelihood")
    if likelihood is None:
        raise ValueError(f"model factory {source}: 'likelihood' is missing; add likelihood='gaussian' or "
                         "'categorical'")
    check_choice("likelihood", likelihood, LIKELIHOODS)
    arrays = {k: made[k] for k in ("X", "y", "X_test", "y_test") if made.get(k) is not None}
    if "X" not in arrays or "y" not in arrays:
        if data is None:
            raise ValueError(f"model factory {source} returned no data (X, y) and no --data was given; return X "
                             "and y, or pass --data FILE.npz|FILE.csv")
        arrays = load_data(data)
        source += f" with data {data}"
    noise_std = float(made.get("noise_std", 1.0))
    prior_std = made.get("prior_std", 1.0)
    y = np.asarray(arrays["y"])
    if likelihood == "categorical" and y.dtype.kind == "f":
        if not np.all(y == np.round(y)):
            raise ValueError(f"categorical labels y must be whole numbers 0 .. C-1, got {y[y != np.round(y)][0]!r}")
        y = y.astype(np.int64)
    problem = from_module(module, np.asarray(arrays["X"]), y, likelihood=likelihood, noise_std=noise_std,
                          prior_std=prior_std, dtype=dtype)
    y_test = arrays.get("y_test")
    if y_test is not None and likelihood == "categorical":
        y_test = np.asarray(y_test).astype(np.int64)
    return UserModel(problem, module, likelihood, noise_std,
                     None if arrays.get("X_test") is None else np.asarray(arrays["X_test"]), y_test, source, path)
