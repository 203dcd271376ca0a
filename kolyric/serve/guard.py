"""What keeps the API answering under hostile clients: slow senders, floods, cross-site posts.

- **Slow clients.** uvicorn's h11 protocol times out only idle keep-alive connections: a client
  that sends its request head or body a byte at a time holds its connection for ever, and
  enough of them starve ``/health``. ``guarded_protocol`` gives each request a deadline for its
  whole head (``header_timeout_s``, from the first byte) and one for its whole body
  (``body_timeout_s``), whatever the rate; past it the client gets 408 and the connection closes.
- **Too many connections.** uvicorn's ``limit_concurrency`` answers a bare 503 with no
  ``Retry-After``, which the server's ``rejected`` counter never sees. Instead, a connection
  opened past ``max_connections`` gets a short head deadline and then a JSON 503 with
  ``Retry-After``, counted in ``rejected``; ``GET /health`` is still answered on it, so the
  server can always say how it is. Past four times the cap a connection is answered at once
  and closed, so a flood cannot run the process out of file descriptors.
- **Cross-site requests.** A page on any site may POST ``text/plain`` (or a typeless Blob) to
  a local server without a CORS preflight. Bodies must be ``application/json``, which a
  browser sends cross-site only after a preflight that this server never approves. A page on
  a name rebound to 127.0.0.1 needs no preflight at all; a server on a loopback address
  answers only ``LOOPBACK_HOSTS`` (``create_app(allowed_hosts=…)``).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from typing import Any

import h11
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send
from uvicorn import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

from kolyric.serve.problems import RequestError
from kolyric.serve.schema import Limits

JSON_MEDIA_TYPE = "application/json"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
"""The names a loopback server answers to, as a Host header spells them."""
OVER_CAP_HEAD_TIMEOUT_S = 2.0
HARD_CAP_FACTOR = 4


def check_media_type(content_type: str | None) -> None:
    """RequestError 415 unless the Content-Type is application/json (parameters such as charset are fine)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != JSON_MEDIA_TYPE:
        got = f"got {media!r}" if media else "no Content-Type was given"
        raise RequestError(
            415, f"unsupported media type: send the body as {JSON_MEDIA_TYPE} (Content-Type: {JSON_MEDIA_TYPE}); {got}"
        )


def _raw_response(status: int, reason: str, body: dict[str, Any], retry_after: int | None = None) -> bytes:
    """A whole HTTP/1.1 response, for a connection that is closed right after (h11 is bypassed)."""
    payload = json.dumps(body).encode()
    head = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json",
        f"content-length: {len(payload)}",
        "connection: close",
    ]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


def retry_after_s(limits: Limits) -> int:
    """How long a refused client should wait: by then the slowest head in the way has timed out."""
    return max(1, math.ceil(min(limits.header_timeout_s, 10.0) / 2))


def guarded_protocol(limits: Limits, on_reject: Callable[[], None] | None = None) -> type[H11Protocol]:
    """uvicorn's h11 protocol with per-request deadlines and a connection cap (see the module docstring).

    ``on_reject`` is called for each connection refused with 503 (the server's ``rejected`` counter).
    """
    hard_cap = HARD_CAP_FACTOR * limits.max_connections
    retry_after = retry_after_s(limits)
    busy_body = {
        "error": f"server busy: more than {limits.max_connections} connections are open; try again in {retry_after} s",
        "retry_after": retry_after,
    }

    def rejected() -> None:
        if on_reject is not None:
            on_reject()

    class GuardedH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:  # uvicorn's own, passed through
            super().__init__(*args, **kwargs)
            self._timer: asyncio.TimerHandle | None = None
            self._phase: str | None = None
            self._over_cap = False
            app = self.app

            async def gated(scope: Scope, receive: Receive, send: Send) -> None:
                if self._over_cap and scope["type"] == "http" and scope["path"] != "/health":
                    rejected()
                    # Read the body first (bounded by the size limit and the body deadline): closing
                    # on unread bytes makes the kernel reset the connection, and the client would
                    # see a reset instead of this 503.
                    while (await receive()).get("more_body"):
                        pass
                    headers = [
                        (b"content-type", b"application/json"),
                        (b"retry-after", str(retry_after).encode()),
                        (b"connection", b"close"),
                    ]
                    await send({"type": "http.response.start", "status": 503, "headers": headers})
                    await send({"type": "http.response.body", "body": json.dumps(busy_body).encode()})
                    return
                await app(scope, receive, send)

            self.app = gated

        # -- asyncio.Protocol -----------------------------------------------------------------------
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            open_now = len(self.connections)
            if open_now > hard_cap:
                rejected()
                transport.write(_raw_response(503, "Service Unavailable", busy_body, retry_after))
                transport.close()
                return
            self._over_cap = open_now > limits.max_connections
            self._watch()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel()
            super().connection_lost(exc)

        # -- deadlines --------------------------------------------------------------------------------
        def _watch(self) -> None:
            """Arm the deadline of the phase the client is in: sending a head, or a body."""
            if self.transport is None or self.transport.is_closing():
                self._cancel()
                return
            state = self.conn.their_state
            if state is h11.IDLE:
                # Between requests uvicorn's keep-alive timer runs; ours starts with the next byte.
                phase = "idle" if self.timeout_keep_alive_task is not None else "head"
            elif state is h11.SEND_BODY:
                phase = "body"
            else:
                phase = None
            if phase == self._phase:
                return
            self._cancel()
            self._phase = phase
            if phase == "head":
                timeout = (
                    min(limits.header_timeout_s, OVER_CAP_HEAD_TIMEOUT_S) if self._over_cap else limits.header_timeout_s
                )
            elif phase == "body":
                timeout = limits.body_timeout_s
            else:
                return
            self._timer = self.loop.call_later(timeout, self._expired, phase, timeout)

        def _cancel(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expired(self, phase: str, timeout: float) -> None:
            self._timer = None
            if self.transport.is_closing() or self._phase != phase:
                return
            what = "request head" if phase == "head" else "request body"
            can_answer = phase == "head" or self.cycle is None or not self.cycle.response_started
            if can_answer:
                body = {"error": f"request timeout: the whole {what} must arrive within {timeout:g} s"}
                self.transport.write(_raw_response(408, "Request Timeout", body))
            self.transport.close()

    return GuardedH11Protocol


def server_config(app: Starlette, limits: Limits, *, log_level: str = "info", **kwargs: Any) -> Config:
    """The uvicorn Config the API runs under: the guarded protocol, no WebSockets (the API has none).
    ``kwargs``: more of uvicorn.Config's own arguments."""
    host = getattr(app.state, "host", None)
    on_reject = host.reject if host is not None else None
    return Config(
        app,
        http=guarded_protocol(limits, on_reject),
        ws="none",
        log_level=log_level,
        timeout_graceful_shutdown=5,
        limit_concurrency=None,
        **kwargs,
    )


__all__ = [
    "JSON_MEDIA_TYPE",
    "LOOPBACK_HOSTS",
    "check_media_type",
    "guarded_protocol",
    "retry_after_s",
    "server_config",
]
