"""Running a piece of Python in a fresh interpreter, as a cold start does: what a process imports
and allocates can only be seen in one that has imported nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_child(code: str, *args: str, cache: Path, timeout: float = 300) -> dict:
    """Run ``code`` with ``args`` from the checkout's root, one torch thread, graphs cached in
    ``cache``; the last line it prints, read as JSON. A failure shows the child's stderr."""
    env = {**os.environ, "KOLYRIC_ONNX_CACHE": str(cache), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("KOLYRIC_INT8_BACKEND", None)  # the graph path is the one under test
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
