"""`kolyric serve --app`: the Textual app in a browser (textual-serve), for its owner only.

textual-serve's ``Server`` takes a WebSocket from any page on any site, and each one starts an
app process that can write files wherever the user can. ``BrowserServer`` (a subclass) adds:

- **A token.** A per-run secret (``secrets.token_urlsafe``) in the URL the server prints, as
  Jupyter does. The first visit with ``?token=…`` sets an HttpOnly, SameSite=Strict cookie,
  which the page's WebSocket and downloads then carry. Every route but the static files needs
  one or the other; tokens are compared with ``hmac.compare_digest``.
- **Origins.** A request whose ``Origin`` is not this server (its host:port, or localhost,
  127.0.0.1 or [::1] on that port, or ``--public-url``) is refused, and so is a ``Host`` that
  names another site on a loopback server (DNS rebinding).
- **A session cap.** Each tab is a process (~250 MB); past ``max_sessions`` a tab is told so
  in its terminal and the socket closes.
- **Confinement.** Each app process gets ``KOLYRIC_CONFINED_DIR`` (a folder inside the data
  directory); the app writes exports and training output only there.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import secrets
import signal
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

from kolyric.serve.guard import LOOPBACK_HOSTS

log = logging.getLogger("kolyric.serve.browser")

CONFINED_ENV = "KOLYRIC_CONFINED_DIR"
DEFAULT_MAX_SESSIONS = 2
_WILDCARDS = ("", "0.0.0.0", "::", "[::]")


class ConfinedAppService(AppService):
    """One app process, started with ``KOLYRIC_CONFINED_DIR`` set."""

    def __init__(self, command: str, *, confined_dir: Path, **kwargs: Any) -> None:  # AppService's own, passed on
        super().__init__(command, **kwargs)
        self.confined_dir = confined_dir

    def _build_environment(self, width: int = 80, height: int = 24) -> dict[str, str]:
        environment = super()._build_environment(width=width, height=height)
        environment[CONFINED_ENV] = str(self.confined_dir)
        return environment


def _host_port(host: str, port: int) -> str:
    name = host.strip("[]")
    try:
        if ipaddress.ip_address(name).version == 6:
            name = f"[{name}]"
    except ValueError:
        pass
    return name if port in (80, 443) else f"{name}:{port}"


class BrowserServer(Server):
    """textual-serve's Server with a token, an origin check, a session cap and confinement."""

    def __init__(
        self,
        command: str,
        *,
        host: str,
        port: int,
        confined_dir: Path,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        public_url: str | None = None,
        title: str = "kolyric",
        token: str | None = None,
    ) -> None:
        if public_url is None:  # textual-serve's own default would write an IPv6 address unbracketed
            public_url = f"{'https' if port == 443 else 'http'}://{_host_port(host, port)}"
        super().__init__(command, host=host, port=port, title=title, public_url=public_url)
        self.token = token or secrets.token_urlsafe(32)
        self.confined_dir = Path(confined_dir)
        self.max_sessions = max_sessions
        self.sessions = 0
        # Cookies ignore the port: one name per port keeps two servers on one machine apart.
        self.cookie_name = f"kolyric-serve-{port}"
        self.wildcard = host.strip() in _WILDCARDS
        own = {_host_port(name, port) for name in (*LOOPBACK_HOSTS, host)}
        public = urlsplit(self.public_url)
        if public.netloc:
            own.add(public.netloc.lower())
        self.allowed_hosts = {h.lower() for h in own}

    @property
    def url(self) -> str:
        """The URL to open: it carries the token."""
        return f"{self.public_url.rstrip('/')}/?token={self.token}"

    # -- checks -------------------------------------------------------------------------------------
    def refusal(self, request: web.Request) -> str | None:
        """Why ``request`` may not be served (None: it may)."""
        host = (request.headers.get("Host") or "").strip().lower()
        if not self.wildcard and host not in self.allowed_hosts:
            return f"this server does not answer for host {host!r}"
        origin = request.headers.get("Origin")
        if origin is not None and not self._own_origin(origin.strip().lower(), host):
            return f"requests from {origin!r} are refused: only pages of this server may connect"
        if request.path.startswith("/static/"):
            return None
        if not self._has_token(request):
            return "a token is needed: open the URL that `kolyric serve --app` printed (it ends in ?token=…)"
        return None

    def _own_origin(self, origin: str, host: str) -> bool:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # "null" (sandboxed frames, file: pages) included
        netloc = parts.netloc
        if (parts.scheme, parts.port) in (("http", 80), ("https", 443)):
            netloc = parts.hostname or netloc
        return netloc in self.allowed_hosts or (self.wildcard and netloc == host)

    def _has_token(self, request: web.Request) -> bool:
        expected = self.token.encode()
        for given in (request.query.get("token"), request.cookies.get(self.cookie_name)):
            if given and hmac.compare_digest(given.encode("utf-8", "replace"), expected):
                return True
        return False

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        why = self.refusal(request)
        if why is not None:
            log.warning("refused %s %s: %s", request.method, request.path, why)
            return web.Response(status=403, text=f"kolyric serve --app: {why}\n")
        return await handler(request)

    # -- routes ---------------------------------------------------------------------------------------
    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self.guard)
        return app

    async def handle_index(self, request: web.Request) -> web.StreamResponse:
        if self.sessions >= self.max_sessions:
            return web.Response(status=503, headers={"Retry-After": "5"}, text=self._full_message() + "\n")
        response = await super().handle_index(request)
        response.set_cookie(
            self.cookie_name,
            self.token,
            httponly=True,
            samesite="Strict",
            path="/",
            secure=self.public_url.lower().startswith("https:"),
        )
        response.headers["Cache-Control"] = "no-store"  # the page's URL holds the token
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def _full_message(self) -> str:
        return (
            f"kolyric serve --app: {self.sessions} app session{'s' * (self.sessions != 1)} already open, "
            f"the most this server allows (--max-sessions {self.max_sessions}); close a tab and reload"
        )

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """textual-serve's handler, with the cap and a confined app process."""
        websocket = web.WebSocketResponse(heartbeat=15)
        if self.sessions >= self.max_sessions:
            await websocket.prepare(request)
            await websocket.send_bytes((self._full_message() + "\r\n").encode())
            await websocket.close(code=1013, message=b"too many sessions")
            return websocket
        self.sessions += 1
        width = max(1, min(to_int(request.query.get("width", "80"), 80), 1000))
        height = max(1, min(to_int(request.query.get("height", "24"), 24), 1000))
        app_service: AppService | None = None
        try:
            await websocket.prepare(request)
            app_service = ConfinedAppService(
                self.command,
                confined_dir=self.confined_dir,
                write_bytes=websocket.send_bytes,
                write_str=websocket.send_str,
                close=websocket.close,
                download_manager=self.download_manager,
                debug=self.debug,
            )
            await app_service.start(width, height)
            try:
                await self._process_messages(websocket, app_service)
            finally:
                await app_service.stop()
        except asyncio.CancelledError:
            await websocket.close()
        except Exception as error:  # noqa: BLE001 - one tab's failure must not stop the server
            log.error("app session failed: %s", error)
        finally:
            if app_service is not None:
                await app_service.stop()
            self.sessions -= 1
        return websocket

    async def on_startup(self, app: web.Application) -> None:
        self.confined_dir.mkdir(parents=True, exist_ok=True)

    def announce(self, *_: object) -> None:
        """Said once the server listens (aiohttp calls it then), instead of textual-serve's banner."""
        print(
            f"kolyric serve --app: open {self.url}\n"
            f"  the token in this URL is the key: anyone with it can use the app; each tab runs "
            f"its own `kolyric app` (at most {self.max_sessions} at once), which writes files only "
            f"under {self.confined_dir}",
            file=sys.stderr,
            flush=True,
        )

    def serve(self, debug: bool = False, sock: socket.socket | None = None) -> None:
        """textual-serve's ``serve``, announcing the URL (with its token) when the port is open;
        on ``sock`` (already listening on this server's port) if given, else on host:port."""
        self.debug = debug
        self.initialize_logging()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.request_exit)
            except (NotImplementedError, RuntimeError):
                pass
        # aiohttp listens on ``sock`` alone when it is given and no host is.
        host, port = (None, None) if sock is not None else (self.host, self.port)
        web.run_app(
            self._make_app(), host=host, port=port, sock=sock, handle_signals=False, loop=loop, print=self.announce
        )


__all__ = ["CONFINED_ENV", "BrowserServer", "ConfinedAppService", "DEFAULT_MAX_SESSIONS"]
