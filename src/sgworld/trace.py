"""Trace: the draws of K chains, ``(chains, draws, p)``, with the metadata needed to reproduce them.

Two lossless formats: a single ``.npz`` file (arrays bit for bit, metadata as JSON), and a trace
*folder* that long runs stream into (``draws.npy`` written chunk by chunk through a memory map,
``steps.npy``, ``meta.json``), so memory stays bounded whatever the number of draws; loading a
folder memory-maps the draws. The draws file's space is reserved before the first draw is written
(a full disk is an error up front, not a crash later), and a finished folder records the SHA-256 of
``draws.npy`` in ``meta.json`` (``draws_sha256``; ``sha256sum draws.npy`` checks it by hand), which
:meth:`Trace.load` verifies. Convertible to ArviZ's InferenceData when ArviZ is installed
(``pip install sgworld[arviz]``).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._atomic import atomic_write
from ._disk import free_bytes, is_disk_full, require_space, reserve
from .errors import DiskSpaceError, TraceFileError

_FORMAT = "sgworld-trace-1"
_FOLDER_FORMAT = "sgworld-trace-folder-1"
CHECKSUM_KEY = "draws_sha256"  # in a finished folder's meta.json: SHA-256 of draws.npy
_NPY_MAGIC = b"\x93NUMPY"
RANK_FOLDER = "rank-{}"            # a run split over processes: one trace folder per rank inside its out folder
PER_CHAIN_KEYS = ("acceptance_rate", "grad_evals_per_chain", "transition_counts")   # one entry per chain
SPLIT_KEYS = ("rank", "world_size", "chain_groups")   # where a rank's part of a split run sits


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
        with atomic_write(path) as fh:
            np.savez(fh, draws=self.draws, steps=self.steps,
                     meta=np.array(json.dumps({"format": _FORMAT, **self.meta})))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, verify: bool = True) -> "Trace":
        """Read a ``.npz`` trace file or a trace folder (draws memory-mapped, read-only).

        ``verify`` (folders): recompute the SHA-256 of ``draws.npy`` and compare it with the one
        recorded when the run finished, so that a file changed since (a zeroed tail after a crash or
        a full disk, a partial copy) is an error rather than silently wrong draws. It reads the whole
        file once (about 0.3-1 GB/s); ``verify=False`` skips it for very large traces. ``.npz`` files
        are always checked by the CRC-32 of their zip members.
        """
        path = Path(path)
        if not path.exists():
            raise TraceFileError(f"trace file {str(path)!r} does not exist")
        if path.is_dir():
            if not (path / "meta.json").exists() and rank_folders(path):
                return merge_chains([cls._load_folder(f, verify) for f in rank_folders(path)])
            return cls._load_folder(path, verify)
        with open(path, "rb") as fh:
            is_npy = fh.read(len(_NPY_MAGIC)) == _NPY_MAGIC
        if is_npy:
            hint = (f"load the folder instead: Trace.load({str(path.parent)!r})" if (path.parent / "meta.json").exists()
                    else "read it with numpy.load and wrap it as Trace(draws, steps, meta)")
            raise TraceFileError(f"{str(path)!r} is a bare numpy array, not an sgworld trace (a .npz file or a trace "
                                 f"folder); {hint}")
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
    def _load_folder(cls, path: Path, verify: bool = True) -> "Trace":
        meta = read_folder_meta(path)
        if not meta.pop("complete", False):
            raise TraceFileError(f"trace folder {str(path)!r} holds an unfinished run; finish it by calling "
                                 "sample() again with the same arguments and out= (or 'sgworld resume')")
        try:
            draws = np.load(path / "draws.npy", mmap_mode="r", allow_pickle=False)
            steps = np.load(path / "steps.npy", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise TraceFileError(f"trace folder {str(path)!r} is truncated or corrupt: {exc}") from None
        recorded = meta.pop(CHECKSUM_KEY, None)
        if verify and recorded is not None and file_sha256(path / "draws.npy") != recorded:
            raise TraceFileError(f"{str(path / 'draws.npy')!r} does not match the SHA-256 recorded when its run "
                                 "finished: the draws were changed or damaged since (a zeroed tail from a crash or a "
                                 "full disk, a partial copy); copy the folder again or rerun the sampling")
        return cls(draws, steps, meta)

    # -- diagnostics ----------------------------------------------------------------------------
    def diagnose(self, **options):
        """Equilibrium diagnostic of these draws: ESS, R-hat, entropy production and circulation per draw
        with intervals (:func:`sgworld.diagnose.diagnose`; options ``top``, ``lag``, ``level``, ``groups``)."""
        from .diagnose import diagnose

        return diagnose(self, **options)

    # -- ArviZ ----------------------------------------------------------------------------------
    def to_arviz(self, var_name: str = "w"):
        """ArviZ InferenceData with one posterior variable ``var_name`` of shape (chain, draw, p)."""
        try:
            import arviz as az
        except ImportError:  # pragma: no cover - depends on the environment
            raise ImportError("ArviZ is not installed: pip install 'sgworld[arviz]'") from None
        return az.from_dict(posterior={var_name: self.draws},
                            attrs={k: json.dumps(v) for k, v in self.meta.items()})


def rank_folders(path: Path) -> list[Path]:
    """The per-rank trace folders ``rank-0, rank-1, ...`` of a run split over processes, in rank order."""
    found = [(int(f.name[5:]), f) for f in Path(path).glob("rank-*") if f.is_dir() and f.name[5:].isdigit()]
    return [f for _, f in sorted(found)]


def pooled_statistics(meta: dict, steps_done: int) -> dict:
    """Pooled per-run statistics from the per-chain ones in ``meta`` (updated in place and returned):
    ``grad_evals_per_step`` from ``grad_evals_per_chain``, ``transition_fractions`` from ``transition_counts``.
    One function for a single process and for chains merged from several, so both give the same numbers."""
    if "grad_evals_per_chain" in meta:
        evals = np.asarray(meta["grad_evals_per_chain"], dtype=np.float64)
        meta["grad_evals_per_step"] = float(evals.mean()) / max(steps_done, 1)
    if "transition_counts" in meta:
        counts = np.asarray(meta["transition_counts"], dtype=np.int64)
        meta["transition_fractions"] = (counts.sum(0) / max(int(counts.sum()), 1)).tolist()
    return meta


def merge_chains(parts: list[Trace]) -> Trace:
    """One trace from the traces of consecutive chain groups of one run (one per rank, in rank order):
    draws concatenated along the chains, per-chain metadata concatenated and pooled statistics recomputed."""
    if not parts:
        raise TraceFileError("no chains to merge: the run's rank folders are empty")
    first = parts[0]
    skip = set(PER_CHAIN_KEYS) | set(SPLIT_KEYS) | {CHECKSUM_KEY, "grad_evals_per_step", "transition_fractions",
                                                    "fingerprint"}
    for k, part in enumerate(parts[1:], 1):
        differ = sorted(key for key in set(first.meta) | set(part.meta)
                        if key not in skip and first.meta.get(key) != part.meta.get(key))
        if differ or not np.array_equal(first.steps, part.steps):
            raise TraceFileError(f"the parts to merge belong to different runs (part {k} differs in "
                                 f"{', '.join(differ) or 'steps'}); merge only the rank folders of one run")
    spans = [part.meta.get("chain_groups") for part in parts]
    if all(spans) and any(a[1] != b[0] for a, b in zip(spans, spans[1:])):
        raise TraceFileError(f"the parts hold chain groups {spans}, which do not follow one another; merge the rank "
                             "folders of one run with one number of processes")
    chains = sum(part.num_chains for part in parts)
    if "chains" in first.meta and chains != first.meta["chains"]:
        raise TraceFileError(f"the parts hold {chains} chains, the run has {first.meta['chains']}; a rank folder "
                             "is missing or left over from a run with another number of processes")
    meta = {k: v for k, v in first.meta.items() if k not in SPLIT_KEYS and k not in (CHECKSUM_KEY, "fingerprint")}
    for key in PER_CHAIN_KEYS:
        if key in meta:
            meta[key] = [x for part in parts for x in part.meta[key]]
    draws = np.concatenate([np.asarray(part.draws) for part in parts], axis=0)
    if first.steps.size:
        pooled_statistics(meta, int(first.steps[-1]))
    return Trace(draws, first.steps, meta)


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


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _write_json_atomic(path: Path, obj) -> None:
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(obj, indent=1))


class TraceWriter:
    """Streams draws into a trace folder: ``draws.npy`` (chains, draws, p) is preallocated on disk and
    filled block by block through a memory map; ``meta.json`` says whether the run is complete and, once
    it is, holds the file's SHA-256.

    The whole file is checked against the free space and reserved on disk (``posix_fallocate``) before
    anything is written, so a full disk is a :class:`~sgworld.errors.DiskSpaceError` up front instead of
    a SIGBUS in the middle of the run; where the file system cannot reserve space, every block is
    checked before it is written. ``open_existing=True`` reopens the folder of an interrupted run to
    continue writing it (and reserves its file again, which costs nothing once it is reserved).
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int, int], dtype, steps: np.ndarray,
                 meta: dict, *, open_existing: bool = False):
        self.path = Path(path)
        self.meta = dict(meta)
        file = self.path / "draws.npy"
        if open_existing:
            self.draws = np.load(file, mmap_mode="r+", allow_pickle=False)
            if self.draws.shape != tuple(shape):
                raise TraceFileError(f"{str(file)!r} has shape {self.draws.shape}, expected {tuple(shape)}")
            self.reserved = reserve(file, file.stat().st_size, "the draws file draws.npy")
            return
        steps = np.asarray(steps, dtype=np.int64)
        data_bytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        require_space(self.path, data_bytes + steps.nbytes + (64 << 10), "the draws file draws.npy")
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self.draws = np.lib.format.open_memmap(file, mode="w+", dtype=dtype, shape=tuple(shape))
            self.reserved = reserve(file, file.stat().st_size, "the draws file draws.npy")
            np.save(self.path / "steps.npy", steps)
            self._write_meta(complete=False)
        except OSError as exc:  # DiskSpaceError included: leave no half-made folder behind
            self.draws = None
            for name in ("draws.npy", "steps.npy", "meta.json", "meta.json.tmp"):
                (self.path / name).unlink(missing_ok=True)
            if isinstance(exc, DiskSpaceError) or not is_disk_full(exc):
                raise
            raise DiskSpaceError(self.path, data_bytes, free_bytes(self.path), "the trace folder") from None

    def write(self, start: int, block: np.ndarray) -> None:
        """Draws ``start .. start + block.shape[1]`` of every chain."""
        if not self.reserved:
            require_space(self.path, block.nbytes, "a block of draws")
        self.draws[:, start:start + block.shape[1]] = block

    def flush(self) -> None:
        """Make every block written so far durable (before a checkpoint refers to it)."""
        self.draws.flush()

    def finish(self, meta: dict | None = None) -> None:
        """Mark the run complete, recording the SHA-256 of ``draws.npy`` (verified by :meth:`Trace.load`)."""
        self.flush()
        if meta is not None:
            self.meta = dict(meta)
        self.meta[CHECKSUM_KEY] = file_sha256(self.path / "draws.npy")
        self._write_meta(complete=True)

    def _write_meta(self, complete: bool) -> None:
        _write_json_atomic(self.path / "meta.json", {"format": _FOLDER_FORMAT, **self.meta, "complete": complete})
