"""A real uvicorn server in a thread on a free 127.0.0.1 port, for tests that talk HTTP to it."""

from __future__ import annotations

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
