"""Disk space for streamed runs: checked before a file is written, reserved where the system allows.

A trace folder's ``draws.npy`` is written through a memory map; a page that cannot be stored (the disk
is full) kills the process with SIGBUS, with no message and no checkpoint. So the whole file is
checked against the free space and reserved up front (``posix_fallocate``; ext4, xfs, btrfs and tmpfs
support it): once reserved, writes through the map cannot run out of space. Checkpoints are checked
before they are written, and one whose write still fails for lack of space (another process filled
the disk meanwhile) becomes a :class:`~sgworld.errors.DiskSpaceError` too. Where a file cannot be
reserved, every block of draws is checked before it is written; a disk filled by another process
between that check and the write can then still end the process.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from .errors import DiskSpaceError

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_UNSUPPORTED = {errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


def free_bytes(folder: str | os.PathLike) -> int:
    """Bytes free for this user on the file system of ``folder`` (or of its nearest existing parent)."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def require_space(folder: str | os.PathLike, needed: int, what: str) -> None:
    """Raise DiskSpaceError unless ``needed`` bytes are free where ``folder`` lives."""
    free = free_bytes(folder)
    if free < needed:
        raise DiskSpaceError(folder, needed, free, what)


def is_disk_full(exc: BaseException) -> bool:
    """Whether an OSError says the disk (or the user's quota) is full."""
    return isinstance(exc, OSError) and exc.errno in _FULL


def reserve(path: str | os.PathLike, size: int, what: str) -> bool:
    """Allocate the first ``size`` bytes of the existing file ``path`` on disk.

    Returns False where the file system cannot reserve space (then writes must be checked one by one);
    raises DiskSpaceError when the space is not there.
    """
    path = Path(path)
    if not hasattr(os, "posix_fallocate"):  # pragma: no cover - not on Linux
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return False
        if is_disk_full(exc):
            raise DiskSpaceError(path.parent, size, free_bytes(path.parent), what) from None
        raise
    finally:
        os.close(fd)
    return True
