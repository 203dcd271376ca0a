"""Is the Hugging Face hub there? A probe with one deadline for the whole exchange.

``kolyric.engine.loading`` asks before it lets transformers reach for the network, so a hub id
with no network (or a hub that accepts and never answers) fails in seconds, with the reason.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from urllib.parse import urlparse

from kolyric.engine.checkpoints import one_line


def hub_unreachable_reason(timeout: float = 3.0) -> str | None:
    """None when the hub answers an HTTP request within ``timeout`` s; else why not.

    The deadline covers the whole exchange (name resolution, connecting, TLS, sending and
    reading the status line), so a hub that accepts and never answers, or answers a byte a
    second, fails as fast as one that refuses. Name resolution can block far longer than a
    socket timeout, so the probe runs in a daemon thread and is abandoned at the deadline; it
    never raises, so finishing after its caller has returned is quiet.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    secure = parsed.scheme != "http"
    host = parsed.hostname or "huggingface.co"
    try:
        port = parsed.port or (443 if secure else 80)
    except ValueError:  # a port that is not a number, or out of range
        return f"HF_ENDPOINT {endpoint!r} is not a valid URL"
    deadline = time.monotonic() + timeout
    result: list[str | None] = []

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        return remaining

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=left()) as raw:
                sock = raw
                if secure:
                    import ssl

                    sock = ssl.create_default_context().wrap_socket(raw, server_hostname=host)
                target = parsed.path or "/"
                sock.settimeout(left())
                sock.sendall(
                    f"HEAD {target} HTTP/1.1\r\nHost: {parsed.netloc}\r\nUser-Agent: kolyric\r\n"
                    f"Connection: close\r\n\r\n".encode("ascii", "replace")
                )
                data = b""
                while b"\n" not in data and len(data) < 4096:
                    sock.settimeout(left())
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise ConnectionError("closed the connection without answering")
                    data += chunk
            result.append(None if data.startswith(b"HTTP/") else f"{host}: answered, but not with HTTP")
        except Exception as exc:  # noqa: BLE001 - this thread may outlive its caller: whatever it meets is a result
            result.append(
                f"{host} did not answer within {timeout:g} s"
                if isinstance(exc, socket.timeout)
                else f"{host}: {one_line(exc)}"
            )

    thread = threading.Thread(target=probe, name="kolyric-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        return f"{host} did not answer within {timeout:g} s"
    return result[0]


__all__ = ["hub_unreachable_reason"]
