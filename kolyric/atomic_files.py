"""Atomic file writes, shared by the draft store, the settings file and training checkpoints.

A write goes to a temporary file in the target's own folder (``.<name>.*.tmp``), is flushed
and fsynced, then renamed over the target with ``os.replace`` (atomic on POSIX and Windows),
and the folder is fsynced so the rename itself survives a crash. A failure at any point
leaves the previous file untouched and removes the temporary one. A process killed mid-write
(``kill -9``, power loss) cannot remove its temporary file: ``sweep_stale_temps`` does, at the
next start, once the file is old enough that no live writer can own it.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(handle)`` on a temporary file, then put it in place of ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically; raises OSError on failure."""
    data = text.encode("utf-8")
    atomic_write(path, lambda handle: handle.write(data))


def fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable; not possible (nor needed) on every platform."""
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


STALE_AFTER_S = 60.0  # a live atomic write holds its temp file for milliseconds, not a minute


def sweep_stale_temps(directory: str | os.PathLike, name: str = "*", older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the temporary files ``atomic_write`` left in ``directory`` (for target ``name``, or
    any) when a process died mid-write; only files older than ``older_than_s``. Returns what
    was removed; never raises (a folder that cannot be listed is simply skipped)."""
    removed: list[Path] = []
    now = time.time()
    try:
        candidates = list(Path(directory).glob(f".{name}.*.tmp"))
    except OSError:
        return removed
    for path in candidates:
        try:
            if path.is_file() and not path.is_symlink() and now - path.stat().st_mtime > older_than_s:
                path.unlink()
                removed.append(path)
        except OSError:
            continue
    return removed
