"""Checkpoint files of a sampling run: written atomically, the previous one kept as a fallback.

A checkpoint is a dict of tensors and plain values (sampler state, generator states, index-stream
state, counters) saved with ``torch.save`` to a temporary file, flushed to disk and renamed into
place; the checkpoint it replaces becomes ``checkpoint.prev.pt``. A process killed at any instant
therefore leaves at least one complete checkpoint, and a corrupt or truncated newest file falls back
to the previous one (with a warning in the log). The free space is checked before a checkpoint is
written (its size is estimated from the tensors it holds), and a write that runs out of space anyway
removes its temporary file: either way a :class:`~sgworld.errors.DiskSpaceError` leaves the previous
checkpoint in place and usable.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

from ._atomic import atomic_write
from ._disk import free_bytes, is_disk_full, require_space
from .errors import CheckpointError, DiskSpaceError

log = logging.getLogger(__name__)

CURRENT, PREVIOUS = "checkpoint.pt", "checkpoint.prev.pt"
_FORMAT = "sgworld-checkpoint-1"
_OVERHEAD = 64 << 10  # bytes of a checkpoint besides its tensors (pickled structure, zip records)


def checkpoint_size(payload) -> int:
    """An upper estimate of the bytes ``torch.save`` writes for ``payload``: every distinct tensor storage
    once (views of one storage share it, as in the file), plus a record per tensor and per value."""
    storages, records = {}, 0

    def walk(x):
        nonlocal records
        records += 1
        if isinstance(x, torch.Tensor):
            storage = x.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    walk(payload)
    return sum(storages.values()) + 128 * records


def save_checkpoint(folder: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` as the folder's newest checkpoint (see the module docstring); DiskSpaceError
    when the disk cannot hold it, with the previous checkpoint left as it was."""
    folder = Path(folder)
    current = folder / CURRENT
    needed = checkpoint_size(payload) + _OVERHEAD
    require_space(folder, needed, "a checkpoint")
    try:
        with atomic_write(current, keep_previous=folder / PREVIOUS) as fh:
            torch.save({"format": _FORMAT, **payload}, fh)
    except BaseException as exc:
        if is_disk_full(exc):
            raise DiskSpaceError(folder, needed, free_bytes(folder), "a checkpoint") from None
        require_space(folder, needed, "a checkpoint")  # torch.save may wrap a full disk's OSError
        raise
    return current


def load_checkpoint(folder: str | os.PathLike) -> dict | None:
    """The newest readable checkpoint in ``folder``; None when there is none at all.

    Raises CheckpointError when checkpoint files exist but none can be read.
    """
    folder = Path(folder)
    problems = []
    for name in (CURRENT, PREVIOUS):
        path = folder / name
        if not path.exists():
            continue
        try:
            payload = torch.load(path, weights_only=True)
            if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
                raise ValueError("not an sgworld checkpoint")
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            log.warning("checkpoint %s is unreadable (%s)", path, reason)
            problems.append(f"{path.name}: {reason}")
            continue
        if problems:
            log.warning("resuming from the previous checkpoint %s (step %s)", path, payload.get("step"))
        return payload
    if problems:
        raise CheckpointError(f"no readable checkpoint in {str(folder)!r} ({'; '.join(problems)}); "
                              "delete the folder to start the run again")
    return None


def remove_checkpoints(folder: str | os.PathLike) -> None:
    for name in (CURRENT, PREVIOUS, CURRENT + ".tmp"):
        (Path(folder) / name).unlink(missing_ok=True)


def data_digest(*arrays) -> str:
    """SHA-256 (first 20 hex digits) of arrays' dtypes, shapes and bytes: what a checkpoint belongs to
    (a sampling run's data and starting points, a study's data)."""
    digest = hashlib.sha256()
    for array in arrays:
        if array is None:
            digest.update(b"none")
            continue
        a = np.ascontiguousarray(array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array))
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()[:20]
