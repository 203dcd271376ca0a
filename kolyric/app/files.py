"""Small, careful file operations shared by the draft store, the settings file and export.

``atomic_write_text`` never leaves a half-written file behind: it writes a temporary file
in the same directory, fsyncs it, and renames it over the target (``os.replace`` is atomic
on POSIX and Windows). ``quarantine`` moves a file that could not be read aside, so the
user's data is never deleted just because kolyric failed to parse it.
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
from pathlib import Path


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; raises OSError on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on every platform.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def quarantine(path: Path) -> Path | None:
    """Rename an unreadable file to ``<name>.bad-<timestamp>`` beside it; the new path or None."""
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.bad-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.bad-{stamp}-{n}")
    try:
        os.replace(path, target)
    except OSError:
        return None
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
