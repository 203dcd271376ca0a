"""Running `kolyric train` as a child process and reading its JSON events.

``TrainingProcess.run`` blocks (call it from a worker thread): it starts the process, parses
each stdout line as a JSON event (other lines become log lines), keeps the last stderr
lines, and returns a ``TrainingOutcome`` once the process has exited. ``cancel`` may be
called from any thread: it sends SIGINT (the trainer stops cleanly and may save), then
SIGTERM and SIGKILL if the process is still there after a grace period. Nothing here raises
for a failed run: a crash becomes an outcome with the process's own message.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass

INTERRUPT_GRACE_S = 20.0
TERMINATE_GRACE_S = 5.0
TRAINER_NICENESS = 5
Event = dict[str, object]  # one JSON event line of `kolyric train --events -`


@dataclass
class TrainingOutcome:
    ok: bool
    returncode: int | None
    message: str
    cancelled: bool = False
    result_path: str | None = None


def result_path(event: Event) -> str | None:
    """The model to open from a ``finished`` event: the export dir, else the best checkpoint."""
    for key in ("export_dir", "best_ckpt", "last_ckpt", "path"):
        value = event.get(key)
        if isinstance(value, str) and value:
            return value
    return None


class TrainingProcess:
    """One training run. ``on_event`` gets each event dict; ``on_line`` each other output line."""

    def __init__(
        self,
        argv: list[str],
        on_event: Callable[[Event], None],
        on_line: Callable[[str], None] = lambda line: None,
        env: dict[str, str] | None = None,
    ):
        self.argv = argv
        self.on_event = on_event
        self.on_line = on_line
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process: subprocess.Popen[str] | None = None
        self.cancelled = False
        self._stderr: collections.deque[str] = collections.deque(maxlen=30)
        self._started = threading.Event()

    def run(self) -> TrainingOutcome:
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                env=self.env,
                start_new_session=True,
            )  # its own process group: a Ctrl+C meant for us is not its
        except OSError as exc:
            self._started.set()
            return TrainingOutcome(False, None, f"could not start training: {exc}")
        self._started.set()
        _lower_priority(self.process.pid)
        reader = threading.Thread(target=self._read_stderr, daemon=True)
        reader.start()
        finished: Event | None = None
        error: str | None = None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = _parse(line)
            if event is None:
                if line.strip():
                    self.on_line(line.rstrip("\n"))
                continue
            if event.get("event") == "finished":
                finished = event
            elif event.get("event") == "error":
                error = str(event.get("message") or "training failed")
            self.on_event(event)
        returncode = self.process.wait()
        reader.join(timeout=2)
        if finished is not None and returncode == 0 and not finished.get("cancelled"):
            return TrainingOutcome(True, 0, "training finished", False, result_path(finished))
        if self.cancelled or (finished is not None and finished.get("cancelled")):
            return TrainingOutcome(
                False, returncode, "training cancelled", True, result_path(finished) if finished else None
            )
        tail = "\n".join(self._stderr).strip()
        message = error or (tail.splitlines()[-1] if tail else f"the training process exited with status {returncode}")
        return TrainingOutcome(False, returncode, message)

    def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            line = line.rstrip("\n")
            if line.strip():
                self._stderr.append(line)
                self.on_line(line)

    def cancel(self) -> None:
        """Ask the process to stop (SIGINT), escalating in a background thread; returns at once."""
        self._started.wait(timeout=5)
        process = self.process
        if process is None or process.poll() is not None or self.cancelled:
            return
        self.cancelled = True
        try:
            process.send_signal(signal.SIGINT)
        except OSError:
            return
        threading.Thread(target=self._escalate, args=(process,), daemon=True).start()

    @staticmethod
    def _escalate(process: subprocess.Popen[str]) -> None:
        for grace, stop in ((INTERRUPT_GRACE_S, process.terminate), (TERMINATE_GRACE_S, process.kill)):
            try:
                process.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                try:
                    stop()
                except OSError:
                    return


def _lower_priority(pid: int) -> None:
    """Run the trainer a little nicer than the app, so typing stays instant while it works;
    it still gets every idle cycle."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + TRAINER_NICENESS))
    except (AttributeError, OSError):  # not on this platform, or not allowed: run as is
        pass


def _parse(line: str) -> Event | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None
