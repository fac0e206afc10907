"""The output folder of ``sgworld run`` and ``sgworld resume``: what may be written to, and one process at a time.

:func:`check_out_folder` refuses, before anything is written, an ``--out`` that is a file, lies under a
file, cannot be written, or is a non-empty folder that holds no sgworld run (a folder's run is its
``config.json`` with the ``study`` and ``sgworld_version`` keys that :func:`write_config` writes).

:class:`FolderLock` holds an exclusive ``flock`` on ``OUT/.sgworld.lock`` for the whole run, so a second
``run``, ``run --overwrite`` or ``resume`` on a folder whose run is still going is refused instead of
mixing or deleting its files. The kernel drops an ``flock`` when its process ends, however it ends
(crash, ``kill -9``), so a lock left by a dead run never blocks; the pid written into the file only
names the holder in the message. (``flock`` is advisory and may not be honoured on some network file
systems; on platforms without ``fcntl`` the folder is not locked.)
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
from pathlib import Path

from .experiments.common import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

log = logging.getLogger(__name__)

LOCK_NAME = ".sgworld.lock"
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}
#: Files a run writes besides its figures (the study's FIGURES) and checkpoints/.
RUN_FILES = ("config.json", "metrics.json", "run.log", "report.html", "data.npz", "diverged_trace.npz")


_LOG_LINE = re.compile(r"sgworld \S+: (?:run|resume) (\w+) with ")


def run_study(folder: str | os.PathLike) -> str | None:
    """The study of the sgworld run in ``folder`` (from its config.json, or the first line of the run.log of a
    run refused before it wrote its config), or None when it holds none."""
    try:
        saved = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        saved = None
    if isinstance(saved, dict) and isinstance(saved.get("study"), str) and "sgworld_version" in saved:
        return saved["study"]
    try:
        with open(Path(folder) / "run.log") as fh:
            found = _LOG_LINE.search(fh.readline())
    except (OSError, UnicodeDecodeError):
        return None
    return found.group(1) if found else None


def check_out_folder(out: str | os.PathLike) -> str | None:
    """Raise ConfigError (one line, with the fix) unless ``out`` can take a run; return the study of the run
    it already holds (None: a new or empty folder)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; choose a folder path")
    existing = out
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing != out and existing.exists() and not existing.is_dir():
        raise ConfigError(f"--out {out} lies under the file {existing}; choose a path inside a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out} is not writable (no write permission on {existing}); choose a folder "
                          "you can write to")
    if not out.is_dir():
        return None
    study = run_study(out)
    entries = sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME)
    if entries and study is None:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise ConfigError(f"--out {out} is a non-empty folder that holds no sgworld run ({len(entries)} "
                          f"{'entry' if len(entries) == 1 else 'entries'}: {shown}); choose a new or empty folder")
    return study


def clear_run(out: str | os.PathLike, figures=()) -> None:
    """Delete a previous run's files from ``out`` (its checkpoints, RUN_FILES and the named figures)."""
    out = Path(out)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    for scratch in out.glob(".rank-*"):  # the other ranks' folders of a run under torchrun
        shutil.rmtree(scratch, ignore_errors=True)
    for name in (*RUN_FILES, *figures):
        (out / name).unlink(missing_ok=True)


class FolderLock:
    """``with FolderLock(out):`` creates ``out`` and holds its lock, or raises ConfigError naming the holder."""

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        self.path = self.out / LOCK_NAME
        self._fh = None

    def __enter__(self) -> "FolderLock":
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            while True:
                fh = open(self.path, "a+")
                if fcntl is None:  # pragma: no cover
                    break
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    fh.seek(0)
                    holder = fh.read().strip() or "unknown"
                    fh.close()
                    raise ConfigError(f"{self.out} is in use by a running sgworld process (pid {holder}); wait for it "
                                      "to finish or stop it, or use another --out") from None
                except OSError as exc:
                    if exc.errno not in _NO_LOCKS:
                        fh.close()
                        raise
                    log.warning("%s cannot be locked on this file system (%s); not locked", self.path, exc)
                    break
                try:  # the holder before us may have removed the file between our open and our lock
                    if os.fstat(fh.fileno()).st_ino == os.stat(self.path).st_ino:
                        break
                except FileNotFoundError:
                    pass
                fh.close()
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
        except OSError as exc:
            raise ConfigError(f"--out {self.out} is not writable ({exc.strerror or exc}); choose a folder you can "
                              "write to") from None
        self._fh = fh
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self.path.unlink(missing_ok=True)  # before unlocking: a waiting process then finds a new file
            self._fh.close()
            self._fh = None
