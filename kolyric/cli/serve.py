"""`kolyric serve --model M [--host 127.0.0.1] [--port 8000] [--queue-depth 8] [--workers 1]`

Serves the model over HTTP (FastAPI + uvicorn; see ``kolyric.serve``). The model loads in
the background after the server starts, so ``GET /health`` answers ``loading`` at once and
``ready`` when generation can start. The server binds to 127.0.0.1 unless ``--host`` says
otherwise; it has no authentication, so a public address is an explicit choice.

`kolyric serve --app` serves the Textual app itself in a browser through textual-serve: each
browser tab runs its own ``kolyric app`` process. That server needs the secret token in the URL
it prints, refuses pages of other origins, runs at most ``--max-sessions`` apps at once, and
starts each with ``KOLYRIC_CONFINED_DIR`` (``<data dir>/browser``), the only folder the app
writes to (see ``kolyric.serve.browser``).
"""

from __future__ import annotations

import argparse
import ipaddress
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kolyric.cli import CLIError
from kolyric.cli.options import add_model_arguments

if TYPE_CHECKING:  # the serving stack and torch load only once a server starts, not for --help
    import socket

    from kolyric.engine.loading import LoadedModel
    from kolyric.serve.browser import BrowserServer
    from kolyric.serve.schema import Limits

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_SESSIONS = 2  # kolyric.serve.browser's; not imported here, so --help stays light
CONFINED_SUBDIR = "browser"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from kolyric.serve.schema import Limits

    defaults = Limits()
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST}: this machine only; the HTTP API has "
        "no authentication, --app needs the token in the URL it prints)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)"
    )
    parser.add_argument(
        "--app", action="store_true", help="serve the Textual app in a browser (textual-serve) instead of the HTTP API"
    )
    add_model_arguments(parser)
    api = parser.add_argument_group("HTTP API limits")
    api.add_argument(
        "--queue-depth",
        type=int,
        default=defaults.queue_depth,
        help="requests that may wait while the workers are busy; more are answered 503 with "
        f"Retry-After (default {defaults.queue_depth})",
    )
    api.add_argument(
        "--workers",
        "--workers-per-model",
        dest="workers",
        type=int,
        default=defaults.workers,
        help="generations run at once over the one model in memory "
        f"(default {defaults.workers}; more rarely helps on CPU)",
    )
    api.add_argument(
        "--max-prompt-chars",
        type=int,
        default=defaults.max_prompt_chars,
        help=f"longest prompt accepted, in characters (default {defaults.max_prompt_chars})",
    )
    api.add_argument(
        "--max-n", type=int, default=defaults.max_n, help=f"most candidates per request (default {defaults.max_n})"
    )
    api.add_argument(
        "--max-new-tokens",
        type=int,
        default=defaults.max_new_tokens,
        help=f"largest max_length a request may ask for (default {defaults.max_new_tokens})",
    )
    api.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads torch uses per forward pass (default: torch's, one per core); 1 is "
        "often fastest on a small or busy machine",
    )
    api.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="server log level (default info)",
    )
    api.add_argument(
        "--max-connections",
        type=int,
        default=defaults.max_connections,
        help="open connections served in full; more get 503 with Retry-After (GET /health still "
        f"answers) (default {defaults.max_connections})",
    )
    api.add_argument(
        "--header-timeout",
        type=float,
        default=defaults.header_timeout_s,
        metavar="SECONDS",
        help="a request's head must arrive within this, however slowly it is sent (default "
        f"{defaults.header_timeout_s:g})",
    )
    api.add_argument(
        "--body-timeout",
        type=float,
        default=defaults.body_timeout_s,
        metavar="SECONDS",
        help=f"a request's body must arrive within this (default {defaults.body_timeout_s:g})",
    )
    api.add_argument(
        "--docs",
        action="store_true",
        help="publish the OpenAPI description and its pages (/docs, /redoc, /openapi.json)",
    )
    web = parser.add_argument_group("--app (the Textual app in a browser)")
    web.add_argument(
        "--max-sessions",
        type=int,
        default=DEFAULT_MAX_SESSIONS,
        help=f"app sessions (browser tabs) at once, each its own process (default {DEFAULT_MAX_SESSIONS})",
    )
    web.add_argument("--public-url", default=None, help="the URL browsers reach the server at, behind a proxy")
    web.add_argument(
        "--app-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an argument passed on to `kolyric app` (repeatable)",
    )


def limits_from_args(args: argparse.Namespace) -> Limits:
    from kolyric.serve.schema import Limits

    try:
        return Limits(
            max_prompt_chars=args.max_prompt_chars,
            max_n=args.max_n,
            max_new_tokens=args.max_new_tokens,
            queue_depth=args.queue_depth,
            workers=args.workers,
            max_connections=args.max_connections,
            header_timeout_s=args.header_timeout,
            body_timeout_s=args.body_timeout,
        )
    except ValueError as exc:
        raise CLIError(_option_message(str(exc))) from exc


def _option_message(message: str) -> str:
    """``queue_depth: …`` → ``--queue-depth: …``."""
    name, sep, rest = message.partition(": ")
    flag = {
        "max_new_tokens": "--max-new-tokens",
        "max_n": "--max-n",
        "max_prompt_chars": "--max-prompt-chars",
        "queue_depth": "--queue-depth",
        "workers": "--workers",
        "max_connections": "--max-connections",
        "header_timeout_s": "--header-timeout",
        "body_timeout_s": "--body-timeout",
    }.get(name)
    return f"{flag}: {rest}" if flag and sep else message


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def app_command(args: argparse.Namespace) -> str:
    """The shell command textual-serve runs for each browser session."""
    argv = [sys.executable, "-m", "kolyric", "app"]
    if args.model:
        argv += ["--model", str(args.model)]
    if getattr(args, "device", "auto") not in (None, "auto"):
        argv += ["--device", str(args.device)]
    if getattr(args, "precision", "fp32") not in (None, "fp32", "auto"):  # auto: the app's own setting
        argv += ["--precision", str(args.precision)]
    argv += list(getattr(args, "app_arg", []) or [])
    return shlex.join(argv)


def confined_dir(args: argparse.Namespace) -> Path:
    """``<data dir>/browser``: the data dir an app session uses (its ``--data-dir``, if passed on)."""
    from kolyric.app.config import data_dir

    picked = argparse.ArgumentParser(add_help=False)
    picked.add_argument("--data-dir", default=None)
    known, _ = picked.parse_known_args(list(getattr(args, "app_arg", []) or []))
    return data_dir(known.data_dir).resolve() / CONFINED_SUBDIR


def build_app_server(args: argparse.Namespace, port: int | None = None) -> BrowserServer:
    """The textual-serve server for ``--app`` (built, not started): token, origins, cap, confinement.

    ``port``: the one a socket is already bound to (``--port 0`` picks any free one).
    """
    try:
        from kolyric.serve.browser import BrowserServer
    except ImportError as exc:
        raise CLIError("--app needs textual-serve: pip install 'kolyric[serve]'") from exc
    port = port or args.port or DEFAULT_PORT
    return BrowserServer(
        app_command(args),
        host=args.host,
        port=port,
        public_url=args.public_url,
        max_sessions=args.max_sessions,
        confined_dir=confined_dir(args),
    )


def _check_options(args: argparse.Namespace) -> None:
    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port: must be an integer in [0, 65535], got {args.port}")
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise CLIError(f"--threads: must be a positive integer, got {threads}")
    if args.app and not 1 <= args.max_sessions <= 64:
        raise CLIError(f"--max-sessions: must be an integer in [1, 64], got {args.max_sessions}")


def make_loader(args: argparse.Namespace) -> Callable[[], LoadedModel]:
    """The function the server calls (in its background thread) to load the model."""
    from kolyric.cli.generate import load

    def loader() -> LoadedModel:
        if args.threads is not None:
            import torch

            torch.set_num_threads(args.threads)
        return load(args)

    return loader


def configure_logging(level: str) -> None:
    """The server's own messages (model ready, cancellations, incidents) beside uvicorn's."""
    import logging

    logger = logging.getLogger("kolyric")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper())


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; CLIError naming the address when it cannot be had."""
    import socket

    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CLIError(f"--host {host}: cannot resolve the address ({exc.strerror})") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    _check_options(args)
    if not is_loopback(args.host):
        who = (
            "anyone who can reach this address and has the URL's token can use the app"
            if args.app
            else "anyone who can reach this address can use the server (there is no authentication)"
        )
        print(f"warning: listening on {args.host}: {who}", file=sys.stderr)
    if args.app:
        if args.base:
            raise CLIError(
                "--base: the app takes no base model; give the checkpoint with --model "
                "(or pass app options with --app-arg)"
            )
        sock = bind_socket(args.host, args.port)
        try:
            server = build_app_server(args, port=sock.getsockname()[1])
            try:
                server.confined_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CLIError(
                    f"cannot create the browser sessions' folder {server.confined_dir}: {exc.strerror or exc}"
                ) from exc
            server.serve(sock=sock)
        finally:
            sock.close()
        return 0
    limits = limits_from_args(args)
    try:
        import uvicorn

        from kolyric.serve.api import create_app
    except ImportError as exc:
        raise CLIError(
            f"the HTTP server needs FastAPI and uvicorn ({exc.name} is missing): pip install 'kolyric[serve]'"
        ) from exc
    from kolyric.serve.guard import LOOPBACK_HOSTS, server_config

    configure_logging(args.log_level)
    sock = bind_socket(args.host, args.port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    # On a loopback address any other Host is a page on a name rebound to 127.0.0.1.
    allowed = (*LOOPBACK_HOSTS, shown) if is_loopback(args.host) else None
    app = create_app(make_loader(args), limits, docs=args.docs, allowed_hosts=allowed)
    print(
        f"kolyric serve: http://{shown}:{bound_port}  (the model loads in the background; "
        f"GET /health says when it is ready)",
        file=sys.stderr,
        flush=True,
    )
    config = server_config(app, limits, log_level=args.log_level)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0
