"""The one way sgworld writes a file: atomically, so that a reader or a resumed run never sees half of it.

:func:`atomic_write` opens a temporary file beside the target (``NAME.tmp``), hands it to the caller,
flushes it to disk (``fsync``) and renames it into place; if anything fails on the way, the temporary
file is removed and the target is left as it was. A process killed at any instant therefore leaves
either the old file or the new one.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, keep_previous: str | os.PathLike | None = None,
                 encoding: str | None = None):
    """Context manager yielding an open temporary file that replaces ``path`` when the block succeeds.

    ``keep_previous``: where the file being replaced is moved first (e.g. a checkpoint's fallback copy).
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if keep_previous is not None and path.exists():
        os.replace(path, keep_previous)
    os.replace(tmp, path)
