"""A real uvicorn server in a thread on a free 127.0.0.1 port, for tests that talk HTTP to it, and
the client side's helpers (reading a server-sent event stream, a free port for a server process)."""

from __future__ import annotations

import json
import socket
import threading
import time


class ThreadedServer:
    """Serves ``config`` (a ``uvicorn.Config``) on a socket bound here; a context manager that
    returns once the server has started and stops it on exit."""

    def __init__(self, config, backlog: int = 64) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


class LiveServer(ThreadedServer):
    """The API ``app`` served by uvicorn in a thread, with its /health at hand."""

    def __init__(self, app) -> None:
        import uvicorn

        super().__init__(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
        self.app = app

    def wait_ready(self, timeout: float = 30) -> dict:
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            r = httpx.get(self.url + "/health", timeout=5)
            if r.status_code == 200:
                return r.json()
            assert time.monotonic() < deadline, f"model not ready: {r.json()}"
            time.sleep(0.05)

    def health(self) -> dict:
        import httpx

        return httpx.get(self.url + "/health", timeout=5).json()

    def wait_health(self, predicate, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            h = self.health()
            if predicate(h):
                return h
            assert time.monotonic() < deadline, f"health never matched: {h}"
            time.sleep(0.02)


def sse_events(response):
    """(event, data) pairs from a text/event-stream response (httpx), as they arrive."""
    event, data = None, []
    for line in response.iter_lines():
        if line == "":
            if event is not None:
                yield event, json.loads("\n".join(data))
            event, data = None, []
        elif line.startswith("event:"):
            event = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:") :].strip())


def free_port() -> int:
    """A port of 127.0.0.1 free a moment ago, for a server started in another process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
