"""Shared by the reliability tests and their runnable scripts (kill_drafts, kill_train, soak).

Nothing here imports torch: the draft-kill script must start fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORPUS_DIR = ROOT / "tests" / "data"  # the NSMC sample, as a --corpus-dir (see tests/data/README.md)
COUNTS_FILE = ROOT / ".pytest_cache" / "kolyric-reliability-counts.json"  # git-ignored

# Fuzz cases and trials run in this session, printed at the end of a pytest run (see conftest)
# and written to COUNTS_FILE so the figures can be quoted.
COUNTS: Counter = Counter()
_counts_lock = threading.Lock()


def count(name: str, n: int = 1) -> None:
    with _counts_lock:
        COUNTS[name] += n


def quiet_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: one thread, offline, unbuffered, no network."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
    }
    env.update(extra)
    return env


def models_cache_dir() -> Path:
    """The folder tests/conftest.py builds its tiny models in (same key), so scripts reuse them."""
    key = hashlib.sha256((ROOT / "tests" / "conftest.py").read_bytes()).hexdigest()[:12]
    path = ROOT / ".pytest_cache" / "d" / f"kolyric-models-{key}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def tiny_model_dir() -> Path:
    """The tiny save_pretrained model of tests/conftest.py, built (once) if missing."""
    from tests.conftest import _build

    return _build(models_cache_dir(), "tiny", "metaspace", 1200)


_ANSI = re.compile(rb"\x1b(\[[0-9;?<=>]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[PX^_][^\x1b]*\x1b\\|[@-Z\\-_])")


def strip_ansi(data: bytes) -> str:
    return _ANSI.sub(b"", data).decode("utf-8", "replace")


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux
        import psutil

        return psutil.Process().num_fds()


def try_mount_tmpfs(path: Path, size: str, read_only: bool = False) -> bool:
    """Mount a small tmpfs at ``path`` (root only); False where that is not allowed."""
    import subprocess

    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def remount(path: Path, options: str) -> None:
    import subprocess

    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True, capture_output=True, timeout=20)


def umount(path: Path) -> None:
    import subprocess

    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=20)


def print_report(name: str, report: dict) -> None:
    print(f"{name}:", flush=True)
    for key, value in report.items():
        print(f"  {key}: {json.dumps(value, ensure_ascii=False)}", flush=True)
