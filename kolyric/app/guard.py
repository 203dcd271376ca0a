"""No exception in a widget, a handler or a worker takes the app down.

Textual calls ``App._handle_exception`` for any unhandled error (a message handler, an
action, a timer, rendering, a worker started with ``exit_on_error=True``) and then exits.
``KolyricApp`` overrides it with ``ErrorGuard.report``: the draft is saved first, the error is
logged with its traceback to ``errors.log`` in the data folder (rotated, so it stays small),
and the user reads one line saying so; the app keeps running.

Two more places need a hand, because Textual's message loop stops a pump for good after
an error in it: ``Guarded._dispatch_message`` (mixed into the app, the screens and kolyric's
widgets) reports the error and lets the loop go on with the next message. Thread workers run
with ``exit_on_error=False`` (a failure must not go through Textual's exit path); their
failures reach ``Guarded.on_worker_state_changed`` on the node that started them.

A failure that repeats (a widget whose ``render`` raises on every frame) is logged and shown
once, then only counted.
"""

from __future__ import annotations

import logging
import logging.handlers
import traceback
from asyncio import CancelledError
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from textual.message import Message
from textual.worker import Worker, WorkerFailed, WorkerState

LOG_NAME = "errors.log"
LOG_BYTES = 512 * 1024  # then rotated once: errors.log.1
MESSAGE_CHARS = 140


def one_line(error: BaseException, limit: int = MESSAGE_CHARS) -> str:
    """``Type: first line of the message``, at most ``limit`` characters."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    line = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


class ErrorGuard:
    """Reports unexpected errors for one app: ``save_draft`` first, then the log, then a notice."""

    def __init__(self, directory: Path, notify: Callable[[str], None], save_draft: Callable[[], str]) -> None:
        self.path = Path(directory) / LOG_NAME
        self._notify = notify
        self._save_draft = save_draft  # returns a few words for the notice ("the draft is saved")
        self._seen: Counter[tuple[str, str]] = Counter()
        self._reporting = False
        self._logger: logging.Logger | None = None
        self.reported: list[BaseException] = []  # for tests and the status line

    def report(self, error: BaseException, where: str = "", detail: str = "") -> None:
        """Save the draft, log ``error`` (``where`` it happened, for people; ``detail`` for the
        log only) and say so in one line. Repeats are counted, not shown again."""
        if isinstance(error, WorkerFailed):
            error = error.error
        if self._reporting:  # an error while reporting one: never loop
            return
        self._reporting = True
        try:
            signature = (type(error).__name__, str(error)[:200])
            self._seen[signature] += 1
            count = self._seen[signature]
            if count > 1 and count & (count - 1):  # repeats: logged at 2, 4, 8, … only
                return
            self.reported.append(error)
            draft = self._safe(self._save_draft, "the draft could not be saved")
            logged = self._log(error, " ".join(filter(None, (where, detail))), count)
            if count == 1:
                where_text = f" in {where}" if where else ""
                log_text = f"details in {self.path}" if logged else "it could not be logged"
                self._notify(
                    f"Unexpected error{where_text} ({one_line(error)}); kolyric keeps running, {draft}; {log_text}."
                )
        finally:
            self._reporting = False

    @staticmethod
    def _safe(call: Callable[[], str], fallback: str) -> str:
        try:
            return call()
        except Exception:  # noqa: BLE001 - reporting must not fail on the draft
            return fallback

    def _log(self, error: BaseException, where: str, count: int) -> bool:
        try:
            if self._logger is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # an unregistered logger: each app has its own file, and nothing leaks into others
                logger = logging.Logger(f"kolyric.app.errors:{self.path}")
                handler = logging.handlers.RotatingFileHandler(
                    self.path, maxBytes=LOG_BYTES, backupCount=1, encoding="utf-8", delay=True
                )
                handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
                logger.addHandler(handler)
                self._logger = logger
            repeat = f" (seen {count} times)" if count > 1 else ""
            trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            self._logger.error("unexpected error%s%s\n%s", f" in {where}" if where else "", repeat, trace)
            return True
        except Exception:  # noqa: BLE001 - a full disk must not turn a report into a crash
            return False

    def close(self) -> None:
        if self._logger is not None:
            for handler in list(self._logger.handlers):
                handler.close()
                self._logger.removeHandler(handler)


class Guarded:
    """Mixed into a MessagePump (the app, a screen, a widget): an error while handling one
    message is reported and the next message is handled, where Textual would stop the pump."""

    async def _dispatch_message(self, message: Message) -> None:
        try:
            await super()._dispatch_message(message)  # type: ignore[misc]
        except CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - reported, never raised
            self.app._handle_exception(error)  # type: ignore[attr-defined]

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state == WorkerState.ERROR and worker.error is not None and not worker.exit_on_error:
            report = getattr(self.app, "report_error", None)  # type: ignore[attr-defined]
            if report is not None:
                report(worker.error, "a background task", detail=worker.name)
