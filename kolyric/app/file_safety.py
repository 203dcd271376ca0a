"""Careful file operations for the app's draft store, settings file and export.

Writes are atomic (``kolyric.atomic_files``, shared with training's checkpoints).
``quarantine`` moves a file that could not be read aside, so the user's data is never deleted
just because kolyric failed to parse it; ``keep_copy`` keeps a partly readable one.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path


def quarantine(path: Path) -> Path | None:
    """Rename an unreadable file to ``<name>.bad-<timestamp>`` beside it; the new path or None."""
    target = _bad_name(Path(path))
    try:
        os.replace(path, target)
    except OSError:
        return None
    return target


def keep_copy(path: Path) -> Path | None:
    """Copy a file that was only partly readable to ``<name>.bad-<timestamp>`` beside it (the
    readable part is then written back in its place); the copy's path, or None."""
    target = _bad_name(Path(path))
    try:
        shutil.copy2(path, target)
    except OSError:
        return None
    return target


def _bad_name(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.bad-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.bad-{stamp}-{n}")
    return target


def describe_os_error(exc: OSError) -> str:
    """A short user-facing reason for a failed write ("the disk is full", ...)."""
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EROFS: "the folder is on a read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EDQUOT: "the disk quota is exceeded",
    }
    reason = reasons.get(exc.errno or -1) or (exc.strerror or str(exc))
    where = exc.filename if isinstance(exc.filename, str) else None
    return f"{reason} ({where})" if where else reason
