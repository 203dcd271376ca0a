"""The HTTP API: ``create_app(source, limits) -> FastAPI``.

The model, its worker threads and the bounded queue in front of them are
``kolyric.serve.host``'s: a request that finds the queue full is answered 503 with
``Retry-After`` at once instead of piling up.

Endpoints::

    GET  /health             status (loading | ready | error), the model, counters; 503 unless ready
    GET  /presets            every preset, with the full settings it gives
    GET  /settings/schema    every decoding control with its type, range and default; the limits
    POST /generate           one JSON answer: the candidates and the settings actually used
    POST /generate/stream    Server-Sent Events: start, token …, then done (or error)

POST bodies must be ``application/json`` (415 otherwise: a cross-site page can send
``text/plain`` without a CORS preflight). With ``allowed_hosts`` (``kolyric serve`` on a
loopback address passes localhost, 127.0.0.1 and [::1]) a request naming another host is
answered 400: a page on a name rebound to 127.0.0.1 is same-origin with the server as far as
its browser knows, so only the Host header gives it away. ``/docs`` and ``/openapi.json``
exist only when asked for (``docs=True``). Slow clients and the connection cap are
``kolyric.serve.guard``'s.

A client that goes away cancels its generation: the cancel flag the decoding loop checks
before every step is set when the ASGI disconnect arrives (streaming: Starlette cancels the
response when it hears the disconnect; plain: a watcher waits for it), and a request still
waiting in the queue is dropped without running. No request reaches a traceback: bad input is
400/413/422 with every problem listed, anything unexpected is a 500 JSON body with an incident
id, and the traceback goes to the server's log under that id.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kolyric.serve.describe import presets_listing, settings_schema
from kolyric.serve.guard import check_media_type
from kolyric.serve.host import Busy, Job, ServerModel, _Failure
from kolyric.serve.problems import RequestError
from kolyric.serve.schema import Limits, ParsedRequest, decode_body, parse_generation

if TYPE_CHECKING:  # the engine (and torch) loads with the model, in the background
    from kolyric.engine.results import TokenEvent
    from kolyric.serve.host import ModelSource

log = logging.getLogger("kolyric.serve")


# -- HTTP helpers ----------------------------------------------------------------------------------
def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def _busy_response(exc: Busy) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    body: dict[str, Any] = {"error": str(exc)}
    if exc.retry_after is not None:
        body["retry_after"] = exc.retry_after
    return _json(503, body, headers)


async def _read_body(request: Request, limit: int) -> bytes:
    """The JSON body: 413 as soon as it is known to be over ``limit`` bytes, 415 unless it is JSON."""
    declared = (request.headers.get("content-length") or "").strip()
    too_big = RequestError(413, f"request body over {limit} bytes")
    if declared.isdigit() and (len(declared) > 20 or int(declared) > limit):
        raise too_big
    check_media_type(request.headers.get("content-type"))
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
    except ClientDisconnect:  # gone (or cut off by the body deadline): nobody reads the answer
        raise RequestError(400, "the client went away before its body arrived") from None
    return b"".join(chunks)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _token_dict(event: TokenEvent) -> dict[str, Any]:
    token = event.token
    return {
        "candidate": event.candidate,
        "step": event.step,
        "text": event.text,
        "line_break": event.line_break,
        "token": {
            "id": token.token_id,
            "text": token.text,
            "prob": round(float(token.prob), 6),
            "alternatives": [
                {"id": a.token_id, "text": a.text, "prob": round(float(a.prob), 6)} for a in token.alternatives
            ],
        },
    }


class _CatchAll:
    """Any exception a request raises becomes a 500 JSON body with an incident id; the
    traceback goes to the log under that id, once, and never to the client."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # the point of this middleware
            incident = uuid.uuid4().hex[:12]
            log.error(
                "unhandled error on %s %s (incident %s)",
                scope.get("method"),
                scope.get("path"),
                incident,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
            if not started:  # else the response is cut short: the client sees an incomplete body
                await _json(500, {"error": "internal server error", "incident": incident})(scope, receive, send)


# -- the app ---------------------------------------------------------------------------------------
def create_app(
    source: ModelSource,
    limits: Limits | None = None,
    *,
    description: str | None = None,
    docs: bool = False,
    allowed_hosts: Sequence[str] | None = None,
) -> FastAPI:
    """The FastAPI app serving ``source`` (a Generator, a LoadedModel, or a callable loading one).

    A callable is called in a background thread when the app starts (its lifespan), so the
    server answers ``/health`` with ``loading`` at once. ``docs`` publishes ``/docs``,
    ``/redoc`` and ``/openapi.json``; by default they are not served. ``allowed_hosts``: the
    only host names (any port) a request's Host header may carry; None takes any.
    """
    host = ServerModel(source, limits, description=description)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        host.start()
        try:
            yield
        finally:
            host.close()

    app = FastAPI(
        title="kolyric",
        summary="Korean lyric continuation with a Korean GPT-2",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.host = host

    app.add_middleware(_CatchAll)
    if allowed_hosts is not None:  # added last, so it runs first
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts), www_redirect=False)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return _json(exc.status, exc.to_dict())

    @app.get("/")
    async def index() -> dict[str, Any]:
        return {
            "name": "kolyric",
            "endpoints": [
                "GET /health",
                "GET /presets",
                "GET /settings/schema",
                "POST /generate",
                "POST /generate/stream",
            ],
        }

    @app.get("/health")
    async def health() -> JSONResponse:
        body = host.health()
        return _json(200 if body["status"] == "ready" else 503, body)

    @app.get("/presets")
    async def presets() -> dict[str, Any]:
        return presets_listing()

    @app.get("/settings/schema")
    async def schema() -> dict[str, Any]:
        return settings_schema(host.limits)

    async def parse(request: Request) -> ParsedRequest:
        body = await _read_body(request, host.limits.max_body_bytes)
        return parse_generation(decode_body(body), host.limits)

    @app.post("/generate")
    async def generate(request: Request) -> JSONResponse:
        parsed = await parse(request)
        try:
            job = host.admit(parsed.request)
        except Busy as exc:
            return _busy_response(exc)

        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        outcome = await host.run(job, disconnected)
        if isinstance(outcome, _Failure):
            return _json(500, {"error": "generation failed", "incident": outcome.incident})
        if outcome is None:  # cancelled before it ran: the client is gone
            return _json(499, {"error": "cancelled"})
        out = outcome.to_dict()
        out["model"] = host.description
        out["notes"] = parsed.notes
        return _json(200, out)

    @app.post("/generate/stream")
    async def generate_stream(request: Request) -> Response:
        parsed = await parse(request)
        try:
            job = host.admit(parsed.request)
        except Busy as exc:
            return _busy_response(exc)

        async def body() -> AsyncIterator[bytes]:
            from kolyric.engine.results import DoneEvent, TokenEvent

            events = host.events(job)
            try:
                yield _sse(
                    "start",
                    {
                        "settings": parsed.request.settings.to_dict(),
                        "model": host.description,
                        "notes": parsed.notes,
                        "ahead": job.ahead,
                    },
                )
                done = None
                async for event in events:
                    if isinstance(event, TokenEvent):
                        yield _sse("token", _token_dict(event))
                    elif isinstance(event, DoneEvent):
                        done = event.result
                    elif isinstance(event, _Failure):
                        yield _sse("error", {"error": "generation failed", "incident": event.incident})
                        return
                if done is None:
                    yield _sse("error", {"error": "cancelled"})
                    return
                out = done.to_dict()
                out["model"] = host.description
                out["notes"] = parsed.notes
                yield _sse("done", out)
            finally:
                if job.finished_at is None:  # the client went away (or the server is stopping)
                    job.cancel()
                await events.aclose()

        return StreamingResponse(
            body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    return app


__all__ = ["Busy", "Job", "ServerModel", "create_app"]
