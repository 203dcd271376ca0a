"""`kolyric serve` from the command line: a real process that answers, the --app server it builds, and
bad options or a busy port refused in one line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[3]


def test_cli_serve_starts_and_answers(tiny_model_dir):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kolyric",
            "serve",
            "--model",
            str(tiny_model_dir),
            "--port",
            str(port),
            "--queue-depth",
            "2",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                r = httpx.get(url + "/health", timeout=2)
                if r.status_code == 200:
                    break
                assert r.json()["status"] == "loading"
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "kolyric serve never became ready"
            time.sleep(0.1)
        assert r.json()["queue_depth"] == 2
        r = httpx.post(url + "/generate", json={"prompt": "사랑해", "preset": "greedy", "max_length": 3}, timeout=30)
        assert r.status_code == 200 and len(r.json()["candidates"]) == 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert f"http://127.0.0.1:{port}" in out
    assert "Traceback" not in out


def _serve_args(argv):
    from kolyric.cli import build_parser

    return build_parser("serve").parse_args(["serve", *argv])


def test_cli_serve_app_builds_the_textual_serve_command():
    pytest.importorskip("textual_serve")
    from kolyric.cli.serve import build_app_server

    args = _serve_args(["--app", "--model", "mini", "--port", "8123", "--app-arg=--theme", "--app-arg", "dark"])
    server = build_app_server(args)
    assert server.host == "127.0.0.1" and server.port == 8123
    assert server.command.endswith("-m kolyric app --model mini --theme dark")
    assert server.command.startswith(sys.executable.replace(" ", "\\ ")) or sys.executable in server.command
    assert server.public_url == "http://127.0.0.1:8123"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--queue-depth", "-1"], "--queue-depth: must be an integer >= 0"),
        (["--workers", "0"], "--workers: must be a positive integer"),
        (["--max-n", "40"], "--max-n: must be at most 16"),
        (["--port", "70000"], "--port: must be an integer in [0, 65535]"),
        (["--threads", "0"], "--threads: must be a positive integer"),
        (["--app", "--base", "x"], "--base: the app takes no base model"),
    ],
)
def test_cli_serve_rejects_bad_options(argv, message, capsys):
    from kolyric.cli import main

    assert main(["serve", *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_serve_reports_a_busy_port(capsys):
    from kolyric.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", "--model", "mini", "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
