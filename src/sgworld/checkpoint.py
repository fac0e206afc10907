"""Checkpoint files of a sampling run: written atomically, the previous one kept as a fallback.

A checkpoint is a dict of tensors and plain values (sampler state, generator states, index-stream
state, counters) saved with ``torch.save`` to a temporary file, flushed to disk and renamed into
place; the checkpoint it replaces becomes ``checkpoint.prev.pt``. A process killed at any instant
therefore leaves at least one complete checkpoint, and a corrupt or truncated newest file falls back
to the previous one (with a warning in the log).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from .errors import CheckpointError

log = logging.getLogger(__name__)

CURRENT, PREVIOUS = "checkpoint.pt", "checkpoint.prev.pt"
_FORMAT = "sgworld-checkpoint-1"


def save_checkpoint(folder: str | os.PathLike, payload: dict) -> Path:
    folder = Path(folder)
    current, tmp = folder / CURRENT, folder / (CURRENT + ".tmp")
    with open(tmp, "wb") as fh:
        torch.save({"format": _FORMAT, **payload}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    if current.exists():
        os.replace(current, folder / PREVIOUS)
    os.replace(tmp, current)
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
