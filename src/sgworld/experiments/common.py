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
import hashlib
import inspect
import json
import logging
import math
import os
import re
import shutil
import textwrap
import tokenize
import tomllib
import typing
import zipfile
from pathlib import Path

import numpy as np

from .. import __version__
from .._atomic import atomic_write
from .._disk import free_bytes
from ..checkpoint import data_digest
from ..checks import Check  # noqa: F401  (re-exported: the studies' checks)


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
        if not value:
            raise ConfigError(f"setting {name!r} is empty; give one or more comma-separated values, e.g. "
                              f"--set {name}=a,b (or leave it out for the default)")
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
            if key.endswith("seed") and isinstance(values[key], int) and values[key] < 0:
                raise ConfigError(f"{key} = {values[key]} is negative; seeds are integers >= 0, e.g. {key}=1")
    return config_cls(**values)


def _type_name(kind) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (tuple, list):
        return "list of " + _type_name(next(a for a in args if a is not Ellipsis))
    if origin is typing.Union or origin is getattr(__import__("types"), "UnionType", None):
        return " or ".join("none" if a is type(None) else _type_name(a) for a in args)
    return getattr(kind, "__name__", str(kind))


def _field_comments(config_cls) -> dict:
    """``{field: comment}`` from the class source: the comment on a field's line and the comment-only lines
    that continue it. A ``[...]`` in it (the last one) states the allowed range."""
    try:
        lines, _ = inspect.getsourcelines(config_cls)
    except (OSError, TypeError):
        return {}
    comments, current = {}, None
    for token in tokenize.generate_tokens(iter(lines).__next__):
        if token.type == tokenize.NAME and token.start[1] == 4 and token.line[4:].lstrip().startswith(
                token.string + ":"):
            current = token.string
        elif token.type == tokenize.COMMENT and current is not None:
            if token.line.strip().startswith("#") and token.start[1] == 4:  # a section heading
                current = None
                continue
            comments[current] = (comments.get(current, "") + " " + token.string.lstrip("# ").strip()).strip()
    return comments


def describe_settings(config_cls, quick: dict | None = None, width: int = 100) -> str:
    """Two lines per setting: ``name = default (quick: value)  [type; allowed: range]`` and its meaning, from
    the Config dataclass and the comments on its fields."""
    comments, hints, quick = _field_comments(config_cls), typing.get_type_hints(config_cls), quick or {}
    out = []
    for f in dataclasses.fields(config_cls):
        text, allowed = comments.get(f.name, ""), ""
        ranges = list(re.finditer(r" ?\[([^\[\]]+)\]", text))
        if ranges:
            allowed = ranges[-1].group(1)
            text = (text[:ranges[-1].start()] + text[ranges[-1].end():]).strip(" ;,")
        head = f"  {f.name} = {json.dumps(to_jsonable(f.default))}"
        if f.name in quick:
            head += f" (quick: {json.dumps(to_jsonable(quick[f.name]))})"
        out.append(f"{head}  [{_type_name(hints[f.name])}" + (f"; allowed: {allowed}]" if allowed else "]"))
        if text:
            out.extend(textwrap.wrap(text, width, initial_indent=" " * 6, subsequent_indent=" " * 6))
    return "\n".join(out)


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
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(to_jsonable(obj), indent=2) + "\n")
    return path


def write_config(out_dir: str | os.PathLike, config, **extra) -> Path:
    """``out_dir/config.json``: the study's name, every resolved setting and the package version."""
    study = type(config).__module__.rsplit(".", 1)[-1]
    return write_json(Path(out_dir) / "config.json",
                      {"study": study, **to_jsonable(config), **extra, "sgworld_version": __version__})



#: Settings left out of a checkpoint's fingerprint: paths to data files, whose content is fingerprinted
#: instead (a moved data folder resumes). A Config field can also opt out with
#: ``field(metadata={"fingerprint": False})`` when it cannot change results.
NOT_FINGERPRINTED = frozenset({"data", "data_dir"})
FINGERPRINT_FILE = "fingerprint.json"


def fingerprinted_settings(config) -> dict:
    """The resolved settings that can change a study's results (JSON values), keyed by name."""
    return {f.name: to_jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)
            if f.name not in NOT_FINGERPRINTED and f.metadata.get("fingerprint", True)}


def _size(nbytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1000


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable; None when unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_resources(out_dir: str | os.PathLike, memory: float, disk: float, sizes: str) -> None:
    """Refuse, before any work, a run whose memory or disk estimate exceeds what is available.

    ``memory`` and ``disk`` are a study's lower bounds in bytes (its largest arrays, from chains, draws
    and p); ``sizes`` names what they were computed from, for the message.
    """
    free_memory = available_memory()
    if free_memory is not None and memory > free_memory:
        raise ConfigError(f"this run needs at least {_size(memory)} of memory ({sizes}) but {_size(free_memory)} "
                          "is available; lower chains or the number of draws/steps")
    free_disk = free_bytes(out_dir)
    if disk > free_disk:
        raise ConfigError(f"this run needs at least {_size(disk)} of disk in {out_dir} ({sizes}) but "
                          f"{_size(free_disk)} is free; lower chains or the number of draws/steps, or choose "
                          "another --out")


class StudyCheckpoints:
    """A study's resumable state in ``out_dir/checkpoints/``, removed when the study finishes.

    Every ``sample()`` call streams into its own trace folder there (``sample_args(tag)``), so a rerun
    of the study with the same settings returns finished runs from disk and resumes the interrupted
    one from its last checkpoint; ``save``/``load`` keep other partial results (named arrays) that
    are expensive to recompute. ``sgworld resume DIR`` reruns the study with ``DIR/config.json``.

    Given the study's ``config`` and ``data`` (the arrays its results depend on), the store belongs to
    one run: the fingerprint ``sha256(study, settings that can change results, data digest)`` is kept in
    ``checkpoints/fingerprint.json`` (with the settings, to name the ones that differ) and in every saved
    array file. Checkpoints of other settings (an edited ``config.json``) or of another run (a copied
    file or folder, or no fingerprint at all) raise :class:`ConfigError` instead of being mixed into
    the result; a copied trace folder is refused by ``sample`` itself (see :meth:`sample_args`).
    """

    def __init__(self, out_dir: str | os.PathLike, every: float | None = 60.0, *, config=None, data=()):
        self.root = Path(out_dir) / "checkpoints"
        self.every = every
        self.fingerprint = None
        if config is not None:
            study = type(config).__module__.rsplit(".", 1)[-1]
            self._record = {"study": study, "settings": fingerprinted_settings(config), "data": data_digest(*data)}
            self.fingerprint = hashlib.sha256(json.dumps(self._record, sort_keys=True).encode()).hexdigest()[:20]
            self._claim()

    def _refuse(self, what: str, copied: Path | None = None) -> ConfigError:
        fix = (f"delete {copied} to recompute it" if copied is not None else
               f"restore the settings of config.json, or delete {self.root}")
        return ConfigError(f"{what}; resuming would mix two runs: {fix}, or start afresh with "
                           "'sgworld run ... --overwrite'")

    def _claim(self) -> None:
        """Check that existing checkpoints belong to this run, or record that the new ones do."""
        path = self.root / FINGERPRINT_FILE
        if path.is_file():
            try:
                previous = json.loads(path.read_text())
            except (OSError, ValueError):
                previous = {}
            if previous.get("fingerprint") == self.fingerprint:
                return
            if not isinstance(previous.get("settings"), dict):
                raise self._refuse(f"{path} is unreadable")
            old, new = previous["settings"], self._record["settings"]
            differ = [f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in sorted(set(old) | set(new))
                      if old.get(k) != new.get(k)]
            if previous.get("study") != self._record["study"]:
                differ.insert(0, f"study: {previous.get('study')!r} there, {self._record['study']!r} now")
            if previous.get("data") != self._record["data"]:
                differ.append("the data differ")
            shown = "; ".join(differ[:4]) + (f" and {len(differ) - 4} more" if len(differ) > 4 else "")
            raise self._refuse(f"the checkpoints in {self.root} belong to other settings ({shown or 'fingerprint'})")
        if self.root.is_dir() and any(self.root.iterdir()):
            raise self._refuse(f"the checkpoints in {self.root} carry no fingerprint of their run")
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(path, {"fingerprint": self.fingerprint, **self._record})

    def sample_args(self, tag: str) -> dict:
        """Keyword arguments for :func:`sgworld.sample` that make the call resumable.

        The trace folder's own metadata (every argument of the call, and a hash of the data and the
        starting points) makes ``sample`` refuse a folder of any other call, copied or not."""
        return {"out": self.root / tag, "checkpoint_every": self.every}

    def save(self, name: str, **arrays) -> None:
        """Store named arrays atomically (temp file + rename) as ``name``, with the run's fingerprint."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.fingerprint is not None:
            arrays["__fingerprint__"] = np.array(self.fingerprint)
        with atomic_write(self.root / f"{name}.npz") as fh:
            np.savez(fh, **arrays)

    def load(self, name: str) -> dict | None:
        """The arrays saved as ``name``, or None (also for a corrupt file, which is then recomputed).

        Raises ConfigError for a file saved by another run (another fingerprint, or none)."""
        path = self.root / f"{name}.npz"
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            logging.getLogger(__name__).warning("ignoring unreadable checkpoint %s (%s)", path, exc)
            return None
        found = arrays.pop("__fingerprint__", None)
        if self.fingerprint is not None and (found is None or str(found) != self.fingerprint):
            raise self._refuse(f"the checkpoint {path} belongs to another run (fingerprint "
                               f"{None if found is None else str(found)} there, {self.fingerprint} here)", copied=path)
        return arrays

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
