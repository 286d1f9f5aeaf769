"""Small shared helpers: progress-bar policy and atomic file writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def tqdm_disable(progress: bool | None):
    """tqdm's ``disable`` for a ``progress`` option: None means auto (only on a terminal)."""
    return None if progress is None else not progress


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Open a temporary file beside ``path``; on success fsync and rename it over ``path``.

    A crash or exception leaves any existing ``path`` untouched and no partial file.
    The result gets the permissions of the file it replaces, or the usual
    ``0o666 & ~umask`` for a new file (``mkstemp`` alone would leave 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            perms = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            perms = 0o666 & ~umask
        os.chmod(tmp, perms)
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
