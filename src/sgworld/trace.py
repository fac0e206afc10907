"""Trace: the draws of K chains, ``(chains, draws, p)``, with the metadata needed to reproduce them.

Two lossless formats: a single ``.npz`` file (arrays bit for bit, metadata as JSON), and a trace
*folder* that long runs stream into (``draws.npy`` written chunk by chunk through a memory map,
``steps.npy``, ``meta.json``), so memory stays bounded whatever the number of draws; loading a
folder memory-maps the draws. Convertible to ArviZ's InferenceData when ArviZ is installed
(``pip install sgworld[arviz]``).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import TraceFileError

_FORMAT = "sgworld-trace-1"
_FOLDER_FORMAT = "sgworld-trace-folder-1"


@dataclass
class Trace:
    """Draws ``(chains, draws, p)``; ``steps[j]`` is the sampler step after which draw j was taken.

    ``meta`` holds the sampler, lr, temperature, batch size, scheme, seed, burn-in, thinning and
    the package version, plus per-run statistics (e.g. MALA acceptance rates).
    """

    draws: np.ndarray
    steps: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.draws = np.asarray(self.draws)
        self.steps = np.asarray(self.steps, dtype=np.int64)
        if self.draws.ndim != 3:
            raise ValueError(f"draws must have shape (chains, draws, p), got {self.draws.shape}")
        if self.steps.shape != (self.draws.shape[1],):
            raise ValueError(f"steps must have shape ({self.draws.shape[1]},), got {self.steps.shape}")

    @property
    def num_chains(self) -> int:
        return self.draws.shape[0]

    @property
    def num_draws(self) -> int:
        return self.draws.shape[1]

    @property
    def dim(self) -> int:
        return self.draws.shape[2]

    def pooled(self) -> np.ndarray:
        """All draws of all chains, (chains * draws, p)."""
        return self.draws.reshape(-1, self.dim)

    def mean(self) -> np.ndarray:
        return self.pooled().mean(0)

    def cov(self) -> np.ndarray:
        return np.cov(self.pooled(), rowvar=False).reshape(self.dim, self.dim)

    # -- files ----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (``.npz``) atomically: a temporary file renamed into place."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, draws=self.draws, steps=self.steps,
                     meta=np.array(json.dumps({"format": _FORMAT, **self.meta})))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Trace":
        """Read a ``.npz`` trace file or a trace folder (draws memory-mapped, read-only)."""
        path = Path(path)
        if not path.exists():
            raise TraceFileError(f"trace file {str(path)!r} does not exist")
        if path.is_dir():
            return cls._load_folder(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                draws, steps, meta = f["draws"], f["steps"], json.loads(str(f["meta"]))
        except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as exc:
            raise TraceFileError(
                f"{str(path)!r} is not a readable sgworld trace (truncated or corrupt file?): {exc}"
            ) from None
        if meta.pop("format", None) != _FORMAT:
            raise TraceFileError(f"{str(path)!r} is not an sgworld trace file (format tag missing)")
        return cls(draws, steps, meta)

    @classmethod
    def _load_folder(cls, path: Path) -> "Trace":
        meta = read_folder_meta(path)
        if not meta.pop("complete", False):
            raise TraceFileError(f"trace folder {str(path)!r} holds an unfinished run; finish it by calling "
                                 "sample() again with the same arguments and out= (or 'sgworld resume')")
        try:
            draws = np.load(path / "draws.npy", mmap_mode="r", allow_pickle=False)
            steps = np.load(path / "steps.npy", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise TraceFileError(f"trace folder {str(path)!r} is truncated or corrupt: {exc}") from None
        return cls(draws, steps, meta)

    # -- ArviZ ----------------------------------------------------------------------------------
    def to_arviz(self, var_name: str = "w"):
        """ArviZ InferenceData with one posterior variable ``var_name`` of shape (chain, draw, p)."""
        try:
            import arviz as az
        except ImportError:  # pragma: no cover - depends on the environment
            raise ImportError("ArviZ is not installed: pip install 'sgworld[arviz]'") from None
        return az.from_dict(posterior={var_name: self.draws},
                            attrs={k: json.dumps(v) for k, v in self.meta.items()})


def read_folder_meta(path: Path) -> dict:
    """The metadata of a trace folder, with its ``complete`` flag (format tag checked and removed)."""
    try:
        meta = json.loads((path / "meta.json").read_text())
    except FileNotFoundError:
        raise TraceFileError(f"{str(path)!r} is not a trace folder (meta.json is missing)") from None
    except (ValueError, OSError) as exc:
        raise TraceFileError(f"{str(path / 'meta.json')!r} is corrupt: {exc}") from None
    if not isinstance(meta, dict) or meta.pop("format", None) != _FOLDER_FORMAT:
        raise TraceFileError(f"{str(path)!r} is not an sgworld trace folder (format tag missing)")
    return meta


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


class TraceWriter:
    """Streams draws into a trace folder: ``draws.npy`` (chains, draws, p) is preallocated on disk and
    filled block by block through a memory map; ``meta.json`` says whether the run is complete.

    ``open_existing=True`` reopens the folder of an interrupted run to continue writing it.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int, int], dtype, steps: np.ndarray,
                 meta: dict, *, open_existing: bool = False):
        self.path = Path(path)
        self.meta = dict(meta)
        if open_existing:
            self.draws = np.load(self.path / "draws.npy", mmap_mode="r+", allow_pickle=False)
            if self.draws.shape != tuple(shape):
                raise TraceFileError(f"{str(self.path / 'draws.npy')!r} has shape {self.draws.shape}, "
                                     f"expected {tuple(shape)}")
            return
        self.path.mkdir(parents=True, exist_ok=True)
        self.draws = np.lib.format.open_memmap(self.path / "draws.npy", mode="w+", dtype=dtype, shape=tuple(shape))
        np.save(self.path / "steps.npy", np.asarray(steps, dtype=np.int64))
        self._write_meta(complete=False)

    def write(self, start: int, block: np.ndarray) -> None:
        """Draws ``start .. start + block.shape[1]`` of every chain."""
        self.draws[:, start:start + block.shape[1]] = block

    def flush(self) -> None:
        """Make every block written so far durable (before a checkpoint refers to it)."""
        self.draws.flush()

    def finish(self, meta: dict | None = None) -> None:
        self.flush()
        if meta is not None:
            self.meta = dict(meta)
        self._write_meta(complete=True)

    def _write_meta(self, complete: bool) -> None:
        _write_json_atomic(self.path / "meta.json", {"format": _FOLDER_FORMAT, **self.meta, "complete": complete})
