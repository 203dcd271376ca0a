"""`kolyric serve --app` is its owner's only.

The server (kolyric's textual-serve subclass) runs for real on a free 127.0.0.1 port and is
driven by aiohttp's HTTP and WebSocket client, the way a browser page would, with and without
the token and from foreign origins. Most sessions run a stand-in app (a few lines speaking
textual-serve's protocol, reporting the environment it was started with), so a session costs
milliseconds; one test runs the real `kolyric serve --app` with the real app. Every wait is
bounded."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("textual_serve")
aiohttp = pytest.importorskip("aiohttp")

from kolyric.serve.browser import BrowserServer

from tests.reliability._util import count, quiet_env

ROOT = Path(__file__).resolve().parents[2]

STAND_IN = r"""
import json, os, sys
out = sys.stdout.buffer
out.write(b"__GANGLION__\n")
payload = json.dumps({"confined": os.environ.get("KOLYRIC_CONFINED_DIR"), "pad": "x" * 20}).encode()
out.write(b"D" + len(payload).to_bytes(4, "big") + payload)
out.flush()
seen = b""
while b"quit" not in seen:  # textual-serve's stop() sends a quit meta packet
    chunk = sys.stdin.buffer.read1(4096)
    if not chunk:
        break
    seen = seen[-16:] + chunk
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """A BrowserServer on 127.0.0.1:port inside the test's event loop."""

    def __init__(self, server: BrowserServer):
        self.server = server
        self.base = f"http://127.0.0.1:{server.port}"
        self.ws_url = f"ws://127.0.0.1:{server.port}/ws"
        self.origin = f"http://127.0.0.1:{server.port}"

    async def __aenter__(self) -> Running:
        app = await self.server._make_app()
        self.runner = aiohttp.web.AppRunner(app)
        await self.runner.setup()
        await aiohttp.web.TCPSite(self.runner, "127.0.0.1", self.server.port).start()
        return self

    async def __aexit__(self, *exc) -> None:
        await asyncio.wait_for(self.runner.cleanup(), 20)


def make_server(tmp_path: Path, max_sessions: int = 2, **kwargs) -> BrowserServer:
    script = tmp_path / "stand_in_app.py"
    script.write_text(STAND_IN, encoding="utf-8")
    return BrowserServer(
        shlex.join([sys.executable, str(script)]),
        host="127.0.0.1",
        port=free_port(),
        confined_dir=tmp_path / "data" / "browser",
        max_sessions=max_sessions,
        **kwargs,
    )


def browser():
    """An HTTP client keeping cookies as a browser does (for 127.0.0.1 too)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def run(coro, timeout: float = 60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def first_bytes(ws, within: float = 20) -> bytes:
    """The first binary message of a session (what the page writes into its terminal)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        msg = await asyncio.wait_for(ws.receive(), max(0.05, deadline - time.monotonic()))
        if msg.type == aiohttp.WSMsgType.BINARY:
            return msg.data
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            raise AssertionError(f"closed before any output: {msg}")
    raise AssertionError("no output")


async def ended(server: BrowserServer, within: float = 10) -> None:
    """Every session over: its app process has exited and been reaped."""
    deadline = time.monotonic() + within
    while server.sessions and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert server.sessions == 0
    await asyncio.sleep(0.1)  # the subprocess transport closes on the next loop iterations


# -- the token ----------------------------------------------------------------------------------------
def test_the_page_needs_the_token_and_then_sets_a_strict_cookie(tmp_path):
    server = make_server(tmp_path)

    async def go():
        async with Running(server) as live, browser() as http:
            for query in ("", "?token=", "?token=wrong", f"?token={server.token[:-1]}", f"?token={server.token}x"):
                async with http.get(live.base + "/" + query) as r:
                    assert r.status == 403, query
                    assert "token" in await r.text()
            async with http.get(f"{live.base}/download/anything") as r:
                assert r.status == 403
            async with http.get(f"{live.base}/?token={server.token}") as r:
                assert r.status == 200 and "data-session-websocket-url" in await r.text()
                cookie = r.headers["Set-Cookie"]
                assert server.token in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
                assert r.headers["Cache-Control"] == "no-store"
            async with http.get(live.base + "/") as r:  # the cookie alone is enough now
                assert r.status == 200
            async with http.get(live.base + "/static/js/textual.js") as r:  # static files need none
                assert r.status == 200

    run(go())
    assert server.url == f"http://127.0.0.1:{server.port}/?token={server.token}"
    assert len(server.token) >= 40 and server.token != make_server(tmp_path).token


def test_a_websocket_without_the_token_is_refused(tmp_path):
    server = make_server(tmp_path)

    async def go():
        async with Running(server) as live, browser() as http:
            for url in (live.ws_url, live.ws_url + "?token=nope"):
                with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                    await http.ws_connect(url, origin=live.origin)
                assert info.value.status == 403
            assert server.sessions == 0

    run(go())


# -- origins -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "http://evil.example:{port}",
        "null",
        "http://127.0.0.1:1",
        "https://127.0.0.1.evil.example:{port}",
        "file://",
        "http://localhost.evil.example:{port}",
    ],
)
def test_foreign_origins_are_refused_even_with_the_token(tmp_path, origin):
    server = make_server(tmp_path)
    origin = origin.format(port=server.port)

    async def go():
        async with Running(server) as live, browser() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(f"{live.ws_url}?token={server.token}", origin=origin)
            assert info.value.status == 403
            async with http.get(f"{live.base}/?token={server.token}", headers={"Origin": origin}) as r:
                assert r.status == 403 and "refused" in await r.text()
            assert server.sessions == 0

    run(go())
    count("hostile browser: foreign origins")


def test_a_rebound_host_name_is_refused(tmp_path):
    """DNS rebinding: evil.example resolving to 127.0.0.1 sends Host: evil.example:port."""
    server = make_server(tmp_path)

    async def go():
        async with Running(server) as live, browser() as http:
            async with http.get(
                f"{live.base}/?token={server.token}", headers={"Host": f"evil.example:{server.port}"}
            ) as r:
                assert r.status == 403 and "host" in await r.text()
            for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}"):
                async with http.get(f"{live.base}/?token={server.token}", headers={"Host": host}) as r:
                    assert r.status == 200, host

    run(go())


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
def test_an_ipv6_loopback_server_works_from_its_own_page(tmp_path):
    """`--host ::1`: the URL and the page's WebSocket address bracket the address; a session opens."""
    script = tmp_path / "stand_in_app.py"
    script.write_text(STAND_IN, encoding="utf-8")
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    server = BrowserServer(
        shlex.join([sys.executable, str(script)]), host="::1", port=port, confined_dir=tmp_path / "data" / "browser"
    )
    base = f"http://[::1]:{port}"
    assert server.url == f"{base}/?token={server.token}"

    async def go():
        app = await server._make_app()
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        await aiohttp.web.TCPSite(runner, "::1", port).start()
        try:
            async with browser() as http:
                async with http.get(server.url) as r:
                    assert r.status == 200
                    page = await r.text()
                assert f'data-session-websocket-url="ws://[::1]:{port}/ws"' in page
                assert f"{base}/static/js/textual.js" in page
                ws = await http.ws_connect(f"ws://[::1]:{port}/ws", origin=base)
                assert json.loads(await first_bytes(ws))["confined"]
                await ws.close()
                await ended(server)
        finally:
            await asyncio.wait_for(runner.cleanup(), 20)

    run(go())


def test_the_cookie_is_secure_behind_an_https_url(tmp_path):
    server = make_server(tmp_path, public_url="https://lyrics.example")  # behind a TLS proxy; the test talks http

    async def go():
        async with Running(server) as live, browser() as http:
            async with http.get(f"{live.base}/?token={server.token}", headers={"Host": "lyrics.example"}) as r:
                assert r.status == 200
                assert "Secure" in r.headers["Set-Cookie"]
        plain = make_server(tmp_path)
        async with Running(plain) as live, browser() as http:
            async with http.get(f"{live.base}/?token={plain.token}") as r:
                assert "Secure" not in r.headers["Set-Cookie"]  # a browser would drop it on http

    run(go())


# -- sessions: confinement and the cap ------------------------------------------------------------------
def test_each_session_is_confined_and_the_count_is_capped(tmp_path):
    server = make_server(tmp_path, max_sessions=1)

    async def go():
        async with Running(server) as live, browser() as http:
            async with http.get(f"{live.base}/?token={server.token}") as r:
                assert r.status == 200  # the cookie is set from here on
            first = await http.ws_connect(live.ws_url + "?width=90&height=30", origin=live.origin)
            hello = json.loads(await first_bytes(first))
            assert hello["confined"] == str(tmp_path / "data" / "browser")
            assert server.sessions == 1
            # a second tab: told why, in its terminal, and closed with "try again later"
            second = await http.ws_connect(live.ws_url, origin=f"http://localhost:{server.port}")
            told = await first_bytes(second)
            assert b"--max-sessions 1" in told and b"already open" in told
            closing = await asyncio.wait_for(second.receive(), 5)
            assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1013
            async with http.get(live.base + "/") as r:
                assert r.status == 503 and "already open" in await r.text()
            await first.close()
            await ended(server)
            again = await http.ws_connect(live.ws_url, origin=live.origin)
            assert json.loads(await first_bytes(again))["confined"]
            await again.close()
            await ended(server)

    run(go())


def test_the_app_command_and_folder_come_from_the_cli(tmp_path, monkeypatch):
    from kolyric.cli import build_parser
    from kolyric.cli.serve import build_app_server

    monkeypatch.setenv("KOLYRIC_DATA_DIR", str(tmp_path / "data"))
    args = build_parser("serve").parse_args(["serve", "--app", "--model", "mini", "--port", "8123"])
    server = build_app_server(args)
    assert isinstance(server, BrowserServer) and server.max_sessions == 2
    assert server.confined_dir == (tmp_path / "data" / "browser").resolve()
    args = build_parser("serve").parse_args(
        ["serve", "--app", "--max-sessions", "3", f"--app-arg=--data-dir={tmp_path / 'mine'}"]
    )
    server = build_app_server(args)
    assert server.max_sessions == 3 and server.confined_dir == (tmp_path / "mine" / "browser").resolve()
    from kolyric.cli import main

    assert main(["serve", "--app", "--max-sessions", "0"]) == 2


# -- the real thing ----------------------------------------------------------------------------------------
def test_cli_serve_app_end_to_end(tmp_path):
    env = quiet_env(KOLYRIC_DATA_DIR=str(tmp_path / "data"), KOLYRIC_CONFIG_DIR=str(tmp_path / "config"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "kolyric", "serve", "--app", "--port", "0", "--model", "mini", "--app-arg=--no-load"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        url = None
        lines = []
        while url is None:
            assert proc.poll() is None and time.monotonic() < deadline, lines
            line = proc.stderr.readline()
            lines.append(line)
            found = re.search(r"open (http://\S+\?token=\S+)", line)
            url = found.group(1) if found else None
        port = int(re.match(r"http://127\.0\.0\.1:(\d+)/\?token=", url).group(1))
        assert port != 8000  # --port 0: any free port, as --help says, not the default
        assert (tmp_path / "data" / "browser").is_dir()

        async def go():
            async with browser() as http:
                async with http.get(url) as r:
                    assert r.status == 200
                with pytest.raises(aiohttp.WSServerHandshakeError):
                    await http.ws_connect(f"ws://127.0.0.1:{port}/ws", origin="http://evil.example")
                ws = await http.ws_connect(
                    f"ws://127.0.0.1:{port}/ws?width=80&height=24", origin=f"http://127.0.0.1:{port}"
                )
                await ws.send_json(["resize", {"width": 80, "height": 24}])  # as the page does once open
                painted = b""
                deadline = time.monotonic() + 60
                while len(painted) < 2000 and time.monotonic() < deadline:  # the real app paints its screen
                    painted += await first_bytes(ws, within=deadline - time.monotonic())
                assert len(painted) >= 2000
                await ws.close()

        run(go(), timeout=90)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
    err = proc.stderr.read()
    assert "Traceback" not in err, err[-2000:]
