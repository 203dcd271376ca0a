"""The HTTP API against cross-site posts and slow or many clients.

Every test runs the real server (uvicorn with kolyric's guarded protocol, ``server_config``) on
a free 127.0.0.1 port, with a tiny real model, and talks to it over raw sockets where the
point is how bytes arrive. Every loop and wait is bounded by a deadline."""

from __future__ import annotations

import socket
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from kolyric.serve.schema import Limits

from tests.reliability._util import count
from tests.servers import ThreadedServer

HEAD_S = 1.0
BODY_S = 1.0
CAP = 8
LIMITS = Limits(header_timeout_s=HEAD_S, body_timeout_s=BODY_S, max_connections=CAP, max_new_tokens=8)


class GuardedServer(ThreadedServer):
    """``kolyric serve``'s own uvicorn configuration, in a thread, on a free port."""

    def __init__(self, app, limits: Limits):
        from kolyric.serve.guard import server_config

        super().__init__(server_config(app, limits, log_level="warning"), backlog=256)
        self.app = app

    def health(self) -> httpx.Response:
        return httpx.get(self.url + "/health", timeout=5)


@pytest.fixture(scope="module")
def live(tiny_loaded):
    from kolyric.serve import create_app

    with GuardedServer(create_app(tiny_loaded, LIMITS), LIMITS) as server:
        deadline = time.monotonic() + 30
        while server.health().status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield server


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_closed(s: socket.socket, within: float) -> tuple[bytes, float]:
    """What the server sends until it closes the connection, and when it closed (bounded)."""
    started = time.monotonic()
    deadline = started + within
    data = b""
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return data, time.monotonic() - started
        if not chunk:
            return data, time.monotonic() - started
        data += chunk
    raise AssertionError(f"the server kept the connection open for {within} s (got {data[:200]!r})")


def trickle(s: socket.socket, data: bytes, gap: float, within: float) -> int:
    """Send ``data`` a byte at a time, ``gap`` s apart, until the server closes (bounded); bytes sent."""
    deadline = time.monotonic() + within
    sent = 0
    for byte in data:
        if time.monotonic() > deadline:
            break
        try:
            s.send(bytes([byte]))
        except OSError:  # closed by the server: what the test wants
            break
        sent += 1
        time.sleep(gap)
    return sent


def read_response(s: socket.socket, within: float = 5) -> bytes:
    """One whole response (head and Content-Length body) from a kept-alive connection (bounded)."""
    deadline = time.monotonic() + within
    data = b""
    while time.monotonic() < deadline:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            if len(body) >= length:
                return data
        s.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = s.recv(65536)
        assert chunk, f"closed mid-response: {data[:200]!r}"
        data += chunk
    raise AssertionError(f"no whole response within {within} s: {data[:200]!r}")


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


# -- item 2: only JSON bodies; no published schema -----------------------------------------------------
@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        "application/json-patch+json",
    ],
)
@pytest.mark.parametrize("path", ["/generate", "/generate/stream"])
def test_posts_that_are_not_json_are_415_naming_json(live, content_type, path):
    headers = {"content-type": content_type} if content_type else {}
    before = live.health().json()["admitted"]
    r = httpx.post(live.url + path, content=b'{"prompt": "\xea\xb0\x80", "max_length": 1}', headers=headers, timeout=10)
    assert r.status_code == 415, r.text
    assert "application/json" in r.json()["error"]
    assert live.health().json()["admitted"] == before  # nothing ran
    count("hostile serve: non-JSON posts")


def test_json_with_a_charset_is_fine(live):
    r = httpx.post(
        live.url + "/generate",
        content='{"prompt": "가", "max_length": 1}'.encode(),
        headers={"content-type": "Application/JSON; charset=utf-8"},
        timeout=30,
    )
    assert r.status_code == 200, r.text


def test_schema_pages_only_when_asked_for(tiny_loaded):
    from fastapi.testclient import TestClient

    from kolyric.serve import create_app

    with TestClient(create_app(tiny_loaded, LIMITS)) as client:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            assert client.get(path).status_code == 404, path
    with TestClient(create_app(tiny_loaded, LIMITS, docs=True)) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert client.get(path).status_code == 200, path
        assert "/generate" in client.get("/openapi.json").json()["paths"]


def test_cli_has_a_docs_flag():
    from kolyric.cli import build_parser

    args = build_parser("serve").parse_args(["serve"])
    assert args.docs is False
    assert build_parser("serve").parse_args(["serve", "--docs"]).docs is True


# -- item 3: slow clients ---------------------------------------------------------------------------------
def test_a_head_sent_a_byte_at_a_time_is_cut_off(live):
    head = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 200 + b"\r\n\r\n"
    with connect(live.port) as s:
        started = time.monotonic()
        done = threading.Event()
        sender = threading.Thread(target=lambda: (trickle(s, head, 0.02, 8), done.set()), daemon=True)
        sender.start()
        raw, _ = read_until_closed(s, within=HEAD_S + 4)
        took = time.monotonic() - started
    sender.join(10)
    assert status_of(raw) == 408 and b"request head" in raw and b"1 s" in raw
    assert HEAD_S - 0.05 <= took < HEAD_S + 2, took  # at the deadline, not when the trickle would end (~4.7 s)


def test_an_idle_connection_is_closed_at_the_head_deadline(live):
    with connect(live.port) as s:
        raw, took = read_until_closed(s, within=HEAD_S + 4)
    assert status_of(raw) == 408 and took < HEAD_S + 2


def test_a_body_sent_a_byte_at_a_time_is_cut_off(live):
    body = b'{"prompt": "' + b"a" * 300 + b'", "max_length": 1}'
    head = (
        f"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    before = live.health().json()
    with connect(live.port) as s:
        s.sendall(head)
        started = time.monotonic()
        sender = threading.Thread(target=trickle, args=(s, body, 0.02, 10), daemon=True)
        sender.start()
        raw, _ = read_until_closed(s, within=BODY_S + 4)
        took = time.monotonic() - started
    sender.join(10)
    assert status_of(raw) == 408 and b"request body" in raw
    assert took < BODY_S + 2, took
    assert live.health().json()["admitted"] == before["admitted"]


def test_a_keep_alive_connection_gets_a_fresh_head_deadline(live):
    """Two requests on one connection, the second started after the first deadline would have passed."""
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    with connect(live.port) as s:
        s.sendall(request)
        assert status_of(read_response(s)) == 200
        time.sleep(HEAD_S * 0.6)
        s.sendall(request[:10])
        time.sleep(HEAD_S * 0.6)  # past the first head's deadline, inside the second's
        s.sendall(request[10:])
        second = read_response(s)
    assert status_of(second) == 200


def test_health_answers_while_many_slow_clients_hold_connections(live):
    """3x the connection cap of byte-a-second clients: /health answers at once, a generation
    past the cap gets 503 with Retry-After (counted in `rejected`), and the slow ones are gone
    within the head deadline, after which generations run again."""
    slow = []
    try:
        for _ in range(3 * CAP):
            s = connect(live.port)
            s.send(b"G")
            slow.append(s)
        time.sleep(0.1)
        before = live.health().json()["rejected"]
        for _ in range(3):
            started = time.monotonic()
            r = live.health()
            assert r.status_code == 200 and time.monotonic() - started < 1.0
        r = httpx.post(live.url + "/generate", json={"prompt": "가", "max_length": 1}, timeout=10)
        assert r.status_code == 503, r.text
        assert int(r.headers["retry-after"]) >= 1 and r.json()["retry_after"] == int(r.headers["retry-after"])
        assert "connections" in r.json()["error"]
        assert live.health().json()["rejected"] == before + 1
        for s in slow:  # every slow client is cut off at its deadline (measured from its first byte)
            raw, _ = read_until_closed(s, within=HEAD_S + 4)
            assert status_of(raw) in (408, 0)
    finally:
        for s in slow:
            s.close()
    deadline = time.monotonic() + 10
    while True:
        r = httpx.post(live.url + "/generate", json={"prompt": "가", "max_length": 1}, timeout=30)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.status_code == 200, r.text


def test_a_flood_past_four_times_the_cap_is_answered_at_once(live):
    held = []
    try:
        for _ in range(4 * CAP + 5):
            held.append(connect(live.port))
        time.sleep(0.2)
        with connect(live.port) as extra:
            raw, took = read_until_closed(extra, within=2)
        assert status_of(raw) == 503 and b"retry-after:" in raw.lower() and took < 1.0
    finally:
        for s in held:
            s.close()


# -- item 2: a page on a name rebound to 127.0.0.1 (DNS rebinding) -----------------------------------------
FOREIGN_HOSTS = [
    "evil.example:{port}",
    "localhost.evil.example:{port}",
    "127.0.0.1.nip.io:{port}",
    "EVIL.example",
    "localhost.:{port}",
    "",
]
OWN_HOSTS = ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}", "127.0.0.1"]


def test_a_loopback_server_answers_only_loopback_host_names(tiny_loaded):
    """The rebound page is same-origin with the server for its browser: no preflight, and it
    can read the answer. Its Host header names the foreign site, so that is what is refused."""
    from kolyric.serve import create_app
    from kolyric.serve.guard import LOOPBACK_HOSTS

    with GuardedServer(create_app(tiny_loaded, LIMITS, allowed_hosts=LOOPBACK_HOSTS), LIMITS) as server:
        for host in FOREIGN_HOSTS:
            host = host.format(port=server.port)
            for method, path in (("GET", "/health"), ("POST", "/generate"), ("GET", "/settings/schema")):
                r = httpx.request(
                    method,
                    server.url + path,
                    headers={"Host": host},
                    timeout=10,
                    json={"prompt": "가", "max_length": 1},
                )
                assert r.status_code == 400, (host, path, r.status_code)
                count("hostile serve: rebound host names")
        for host in OWN_HOSTS:
            r = httpx.get(server.url + "/health", headers={"Host": host.format(port=server.port)}, timeout=10)
            assert r.status_code == 200, host
        assert server.health().json()["admitted"] == 0  # no foreign request ran


def test_cli_serve_on_loopback_refuses_rebound_host_names():
    """On 127.0.0.2 (loopback too, on Linux): its own address and the loopback names answer."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.reliability._util import quiet_env

    address = "127.0.0.2"
    with socket.socket() as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            pytest.skip(f"{address} is not a loopback address here")
        port = probe.getsockname()[1]
    url = f"http://{address}:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kolyric",
            "serve",
            "--model",
            "mini",
            "--host",
            address,
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=Path(__file__).resolve().parents[2],
        env=quiet_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "kolyric serve did not start"
            try:
                own = httpx.get(url + "/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert own.status_code in (200, 503) and "status" in own.json()
        named = httpx.get(url + "/health", headers={"Host": f"localhost:{port}"}, timeout=5)
        assert named.status_code in (200, 503) and "status" in named.json()
        foreign = httpx.get(url + "/health", headers={"Host": f"evil.example:{port}"}, timeout=5)
        assert foreign.status_code == 400
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, 9)
            _, err = proc.communicate()
    assert "Traceback" not in err
