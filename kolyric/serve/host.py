"""The model behind the HTTP API: loaded once, shared by worker threads, admitted through a
bounded queue (``kolyric.serve.api`` serves it).

One model is loaded once (in a background thread, so ``/health`` answers at once) and shared
by every request. Generations run on worker threads (one by default): a ``Generator`` runs one
stream at a time, so requests wait their turn in a bounded queue, and a request that finds the
queue full is refused (``Busy``: 503 with ``Retry-After``) at once instead of piling up. Each
job carries the cancel flag the decoding loop checks before every step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, TypeGuard

from kolyric.serve.schema import Limits

if TYPE_CHECKING:  # torch loads with the model, in the background, so /health answers at once
    from kolyric.engine.loading import LoadedModel
    from kolyric.engine.results import DoneEvent, GenerationRequest, GenerationResult, TokenEvent
    from kolyric.engine.stream import Generator

ModelSource: TypeAlias = "Generator | LoadedModel | Callable[[], Generator | LoadedModel]"
"""What the server serves: a ready Generator, a loaded model, or a loader called in the background."""
Event: TypeAlias = "TokenEvent | DoneEvent"

log = logging.getLogger("kolyric.serve")

LOADING_RETRY_AFTER_S = 2
MAX_RETRY_AFTER_S = 60


# -- the model host: loading, admission, worker threads ------------------------------------------
class Busy(Exception):
    """The queue is full (503 with Retry-After)."""

    def __init__(self, message: str, retry_after: int | None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(eq=False)  # identity: jobs are kept in a set
class Job:
    """One admitted generation: its request, its cancel flag and when things happened."""

    request: GenerationRequest
    cancel_event: threading.Event = field(default_factory=threading.Event)
    admitted_at: float = field(default_factory=time.monotonic)
    ahead: int = 0
    """Generations admitted before this one that had not finished when it was admitted."""
    cancel_requested_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None

    def cancel(self) -> None:
        if not self.cancel_event.is_set():
            self.cancel_requested_at = time.monotonic()
            self.cancel_event.set()


@dataclass
class _Failure:
    """A generation that raised: the incident id under which the traceback was logged."""

    incident: str


_END = object()


class ServerModel:
    """The model in memory and the workers that run generations over it.

    ``source`` is a ready ``Generator``, a ``LoadedModel``, or a callable returning either
    (called once, in a background thread, by ``start``).
    """

    def __init__(self, source: ModelSource, limits: Limits | None = None, description: str | None = None):
        self.limits = limits or Limits()
        self._source = source
        self._description = description
        self.status = "loading"
        self.error: str | None = None
        self._generators: queue.Queue[Generator] = queue.Queue()
        self._executor = ThreadPoolExecutor(max_workers=self.limits.workers, thread_name_prefix="kolyric-gen")
        self._lock = threading.Lock()
        self._jobs: set[Job] = set()
        self._ready = threading.Event()
        self._started = False
        self._closed = False
        self.started_at = time.monotonic()
        self.counters = {"admitted": 0, "completed": 0, "cancelled": 0, "failed": 0, "rejected": 0, "new_tokens": 0}
        self.active = 0
        self._mean_s: float | None = None  # moving average of generation time
        self.last_cancel: dict[str, float | int | bool] | None = None
        self.loaded: LoadedModel | None = None

    # -- loading ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the model (in a background thread unless it is already a Generator)."""
        if self._started:
            return
        self._started = True
        if self._is_generator(self._source) or self._is_loaded(self._source):
            self._install(self._source)
            return
        threading.Thread(target=self._load, name="kolyric-load", daemon=True).start()

    @staticmethod
    def _is_generator(obj: object) -> TypeGuard[Generator]:
        return hasattr(obj, "stream") and hasattr(obj, "loaded")

    @staticmethod
    def _is_loaded(obj: object) -> TypeGuard[LoadedModel]:
        return hasattr(obj, "model") and hasattr(obj, "tokenizer") and not callable(obj)

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            result = self._source()
            if not (self._is_generator(result) or self._is_loaded(result)):
                raise TypeError(f"the model loader returned {type(result).__name__}, not a model")
            self._install(result)
        except Exception as exc:  # reported by /health, never raised into a request
            self.error = str(exc).strip() or type(exc).__name__
            self.status = "error"
            if _is_expected_load_error(exc):
                log.error("model failed to load: %s", self.error)
            else:
                log.exception("model failed to load: %s", self.error)
        else:
            log.info("model ready in %.1f s: %s", time.perf_counter() - started, self.description)
        finally:
            self._ready.set()

    def _install(self, source: Generator | LoadedModel) -> None:
        from kolyric.engine.stream import Generator

        first = source if self._is_generator(source) else Generator(source)
        self.loaded = first.loaded
        self._generators.put(first)
        for _ in range(self.limits.workers - 1):  # more Generators over the same model in memory
            self._generators.put(type(first)(first.loaded))
        self.status = "ready"
        self._ready.set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout) and self.status == "ready"

    @property
    def description(self) -> str | None:
        if self._description:
            return self._description
        return getattr(self.loaded, "description", None) or None

    # -- admission -------------------------------------------------------------------------------
    def admit(self, request: GenerationRequest) -> Job:
        """A Job for ``request``, or Busy when the workers and the queue are full."""
        if self.status == "loading":
            raise Busy("the model is still loading; try again shortly", LOADING_RETRY_AFTER_S)
        if self.status == "error":
            raise Busy(f"the model failed to load: {self.error}", None)
        if self._closed:
            raise Busy("the server is shutting down", None)
        capacity = self.limits.workers + self.limits.queue_depth
        with self._lock:
            if len(self._jobs) >= capacity:
                self.counters["rejected"] += 1
                waiting = len(self._jobs) - self.active
                raise Busy(
                    f"server busy: {self.active} generating and {waiting} waiting "
                    f"(queue depth {self.limits.queue_depth})",
                    self._retry_after(len(self._jobs)),
                )
            job = Job(request, ahead=len(self._jobs))
            self._jobs.add(job)
            self.counters["admitted"] += 1
        return job

    def reject(self) -> None:
        """Count a request refused before admission (the connection cap)."""
        with self._lock:
            self.counters["rejected"] += 1

    def _retry_after(self, pending: int) -> int:
        mean = self._mean_s if self._mean_s is not None else 1.0
        return max(1, min(MAX_RETRY_AFTER_S, math.ceil(mean * pending / self.limits.workers)))

    # -- the worker side (runs on an executor thread) ----------------------------------------------
    def _work(self, job: Job, emit: Callable[[Event], None] | None) -> GenerationResult | _Failure | None:
        from kolyric.engine.results import DoneEvent

        generator = self._generators.get()
        job.started_at = time.monotonic()
        with self._lock:
            self.active += 1
        result = None
        failed = False
        try:
            if job.cancel_event.is_set():  # the client left while this waited: do not run it
                return None
            for event in generator.stream(job.request, cancel=job.cancel_event):
                if isinstance(event, DoneEvent):
                    result = event.result
                if emit is not None:
                    emit(event)
            return result
        except Exception:
            failed = True
            incident = uuid.uuid4().hex[:12]
            log.exception("generation failed (incident %s)", incident)
            return _Failure(incident)
        finally:
            self._generators.put(generator)
            self._finish(job, result, failed)

    def _finish(self, job: Job, result: GenerationResult | None, failed: bool) -> None:
        job.finished_at = time.monotonic()
        with self._lock:
            self.active -= 1
            self._jobs.discard(job)
            if failed:
                self.counters["failed"] += 1
            elif job.cancel_event.is_set():
                self.counters["cancelled"] += 1
                requested = job.cancel_requested_at or job.finished_at
                self.last_cancel = {
                    "latency_s": round(job.finished_at - requested, 4),
                    "new_tokens": getattr(result, "new_tokens", 0),
                    "max_length": job.request.settings.max_length,
                    "ran": result is not None,
                }
            else:
                self.counters["completed"] += 1
            if result is not None:
                self.counters["new_tokens"] += int(getattr(result, "new_tokens", 0))
            if result is not None and not job.cancel_event.is_set():  # Retry-After estimates from whole runs
                took = job.finished_at - (job.started_at or job.finished_at)
                self._mean_s = took if self._mean_s is None else 0.8 * self._mean_s + 0.2 * took

    # -- the async side ----------------------------------------------------------------------------
    async def run(
        self,
        job: Job,
        disconnected: Callable[[], Awaitable[None]] | None = None,
    ) -> GenerationResult | _Failure | None:
        """Run ``job`` to its end; cancel it if ``disconnected()`` (an awaitable factory) fires first."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._work, job, None)
        watcher = asyncio.ensure_future(disconnected()) if disconnected is not None else None
        try:
            if watcher is not None:
                await asyncio.wait({future, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if not future.done():
                    log.info("client disconnected: cancelling its generation")
                    job.cancel()
            return None if future.cancelled() else await future
        finally:
            if not future.done():  # this request's task was cancelled (shutdown)
                job.cancel()
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(BaseException):
                    await watcher

    async def events(self, job: Job) -> AsyncIterator[Event | _Failure]:
        """The job's TokenEvents and DoneEvent (or a _Failure) as they happen.

        Closing this iterator early (the client disconnected) cancels the generation.
        """
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Event | object] = asyncio.Queue()

        def emit(item: Event) -> None:
            try:
                loop.call_soon_threadsafe(items.put_nowait, item)
            except RuntimeError:  # the event loop is gone: nobody is listening
                job.cancel()

        future = loop.run_in_executor(self._executor, self._work, job, emit)
        future.add_done_callback(lambda f: items.put_nowait(_END))
        try:
            while True:
                item = await items.get()
                if item is _END:
                    break
                yield item
            outcome = None if future.cancelled() else future.result()
            if isinstance(outcome, _Failure):
                yield outcome
        finally:
            if not future.done():
                job.cancel()

    # -- state -------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        with self._lock:
            pending = len(self._jobs)
            out = {
                "status": self.status,
                "model": self.description,
                "error": self.error,
                "active": self.active,
                "queued": pending - self.active,
                "workers": self.limits.workers,
                "queue_depth": self.limits.queue_depth,
                **self.counters,
                "mean_generation_s": round(self._mean_s, 4) if self._mean_s is not None else None,
                "last_cancel": dict(self.last_cancel) if self.last_cancel else None,
                "uptime_s": round(time.monotonic() - self.started_at, 1),
            }
        return out

    def close(self) -> None:
        """Cancel everything running or waiting and stop the workers."""
        self._closed = True
        with self._lock:
            jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _is_expected_load_error(exc: BaseException) -> bool:
    """Load failures whose message says it all (no traceback needed in the log)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ModelLoadError", "CLIError"})


__all__ = ["Busy", "Job", "ServerModel"]
