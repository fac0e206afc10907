"""What every study shares: resolving its config, and writing JSON results.

A study is a module with a frozen ``Config`` dataclass (defaults = the full-size run), a ``QUICK``
dict of overrides for fast smoke runs, a one-line ``DESCRIPTION`` and
``run(config, out_dir, progress=None, checkpoint_every=60.0) -> metrics dict`` that writes its files to
``out_dir``, keeping its resumable state in a :class:`StudyCheckpoints` until it finishes.
For ``sgworld report`` a study also provides ``FIGURES`` (file name -> one-line caption) and
``checks(metrics) -> list[Check]`` (every headline number with its theory value and tolerance).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import tomllib
import typing
import zipfile
from pathlib import Path

import numpy as np

from .. import __version__


@dataclasses.dataclass(frozen=True)
class Check:
    """One reported number against its reference, for the report: ``ok`` says whether ``value`` is
    within ``tolerance`` (a short human-readable rule, e.g. ``"|z| < 5"``) of ``reference``; ``None``
    when the number has no pass/fail rule (shown for information)."""

    name: str
    value: float | None
    reference: float | None = None
    tolerance: str = ""
    ok: bool | None = None
    note: str = ""


class ConfigError(ValueError):
    """A setting is unknown or has a value of the wrong kind."""


def _coerce(name: str, kind, value):
    """Convert a TOML or ``--set`` value (possibly a string) to the field's type."""
    origin = typing.get_origin(kind)
    if origin in (tuple, list):
        (item,) = set(typing.get_args(kind)) - {Ellipsis}
        if isinstance(value, str):
            value = [v for v in value.strip("[]() ").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"setting {name!r} must be a list, got {value!r}")
        return tuple(_coerce(name, item, v) for v in value)
    if origin is typing.Union or origin is getattr(__import__("types"), "UnionType", None):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(name, args[0], value)
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes", "on"):
                    return True
                if value.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError
            return bool(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        if kind is float:
            out = float(value)
            if math.isnan(out):
                raise ValueError
            return out
        if kind is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name!r} expects {getattr(kind, '__name__', kind)}, got {value!r}") from None
    return value


def resolve_config(config_cls, *layers: dict):
    """Defaults < each layer in turn (config file, --set, flags). Unknown keys are errors."""
    hints = typing.get_type_hints(config_cls)
    values = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if key not in hints:
                allowed = ", ".join(sorted(hints))
                raise ConfigError(f"unknown setting {key!r} for this study; known settings: {allowed}")
            values[key] = _coerce(key, hints[key], value)
    return config_cls(**values)


def load_toml(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


def parse_sets(items) -> dict:
    """``["key=value", ...]`` -> dict of strings (typed later by :func:`resolve_config`)."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def to_jsonable(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if hasattr(obj, "tolist"):  # torch tensors
        return to_jsonable(obj.tolist())
    return obj


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write JSON atomically (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def write_config(out_dir: str | os.PathLike, config, **extra) -> Path:
    """``out_dir/config.json``: the study's name, every resolved setting and the package version."""
    study = type(config).__module__.rsplit(".", 1)[-1]
    return write_json(Path(out_dir) / "config.json",
                      {"study": study, **to_jsonable(config), **extra, "sgworld_version": __version__})



class StudyCheckpoints:
    """A study's resumable state in ``out_dir/checkpoints/``, removed when the study finishes.

    Every ``sample()`` call streams into its own trace folder there (``sample_args(tag)``), so a rerun
    of the study with the same settings returns finished runs from disk and resumes the interrupted
    one from its last checkpoint; ``save``/``load`` keep other partial results (named arrays) that
    are expensive to recompute. ``sgworld resume DIR`` reruns the study with ``DIR/config.json``.
    """

    def __init__(self, out_dir: str | os.PathLike, every: float | None = 60.0):
        self.root = Path(out_dir) / "checkpoints"
        self.every = every

    def sample_args(self, tag: str) -> dict:
        """Keyword arguments for :func:`sgworld.sample` that make the call resumable."""
        return {"out": self.root / tag, "checkpoint_every": self.every}

    def save(self, name: str, **arrays) -> None:
        """Store named arrays atomically (temp file + rename) as ``name``."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{name}.npz.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / f"{name}.npz")

    def load(self, name: str) -> dict | None:
        """The arrays saved as ``name``, or None (also for a corrupt file, which is then recomputed)."""
        path = self.root / f"{name}.npz"
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            logging.getLogger(__name__).warning("ignoring unreadable checkpoint %s (%s)", path, exc)
            return None

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
