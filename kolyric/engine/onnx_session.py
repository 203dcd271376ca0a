"""Opening an ONNX Runtime session for a kolyric graph: its threads, and whether they spin
between runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnxruntime


def open_session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spins(threads) else "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


SPIN_ENV = "KOLYRIC_ONNX_SPIN"
"""``1`` or ``0`` decides whether a session's worker threads spin between runs (see ``spins``)."""


def spins(threads: int, others: float | None = None) -> bool:
    """Whether a session of ``threads`` threads should let its workers spin between runs.

    Spinning wins where the cores are free: a worker that waits for the next step on a core of
    its own wakes at once (a 2-thread step on 2 idle cores: int4 4.5 ms spinning, 7.7 not; int8
    6.1 against 8.3). Where another process needs the core it takes, it costs twice that (20-24
    ms against 9-11 with one core busy). So the workers spin when a core is left over beside
    them, or when the other processes use less than half a core (``others``: cores in use by
    them, measured now by ``busy_elsewhere`` unless given; None where it cannot be). The
    decision is made once, when the session opens; ``$KOLYRIC_ONNX_SPIN`` (1 or 0) overrides it.
    """
    forced = os.environ.get(SPIN_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    threads, cores = max(1, threads), available_cpus()
    if threads < cores:
        return True
    if threads == 1 or threads > cores:  # no worker to spin, or more of them than cores
        return False
    if others is None:
        others = busy_elsewhere()
    return others is not None and others < 0.5


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity: a container's or ``taskset``'s share),
    else all the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity call on this system
        return os.cpu_count() or 1


def busy_elsewhere(window: float = 0.1) -> float | None:
    """Cores the machine's other processes keep busy over ``window`` seconds: the busy time of
    every CPU (``/proc/stat``) less this process's own, or None where that cannot be read."""
    import time

    start, own, wall = machine_busy_seconds(), time.process_time(), time.perf_counter()
    if start is None:
        return None
    time.sleep(window)
    end = machine_busy_seconds()
    if end is None:
        return None
    elapsed = time.perf_counter() - wall
    return max(0.0, (end - start) - (time.process_time() - own)) / elapsed


def machine_busy_seconds() -> float | None:
    """CPU seconds every CPU has spent busy since boot (``/proc/stat``'s first line, less idle
    and iowait), or None where it cannot be read (no ``/proc``, an unexpected format)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    if len(fields) < 5 or ticks <= 0:
        return None
    return (sum(fields[:8]) - fields[3] - fields[4]) / ticks


__all__ = ["SPIN_ENV", "available_cpus", "busy_elsewhere", "machine_busy_seconds", "open_session", "spins"]
