"""A hub that accepts and never answers (or answers a byte a second) fails
within the probe's deadline, which covers the whole exchange, not only connecting.

The "hubs" are real sockets on 127.0.0.1 that HF_ENDPOINT points at. Every wait is bounded."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kolyric.engine.loading import ModelLoadError, hub_unreachable_reason, load_model, resolve_model_spec

from tests.reliability._util import quiet_env

ROOT = Path(__file__).resolve().parents[2]


class FakeHub:
    """Accepts connections on a free port and treats each as ``behaviour`` says, for ``life`` s at most."""

    def __init__(self, behaviour: str, life: float = 30):
        self.behaviour = behaviour
        self.life = life
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(5)
        for conn in self.held:
            conn.close()
        self.sock.close()

    def _serve(self) -> None:
        deadline = time.monotonic() + self.life
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            if self.behaviour == "close":
                conn.close()
            elif self.behaviour == "answer":
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                conn.close()
            else:
                self.held.append(conn)
                if self.behaviour == "trickle":
                    threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
            if self.stop.wait(1.0):
                return
            try:
                conn.send(bytes([byte]))
            except OSError:
                return


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


@pytest.mark.parametrize("behaviour", ["silent", "trickle"])
def test_a_hub_that_never_finishes_answering_fails_at_the_deadline(online, monkeypatch, behaviour):
    with FakeHub(behaviour) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        started = time.monotonic()
        reason = hub_unreachable_reason(timeout=1.5)
        took = time.monotonic() - started
    assert reason == "127.0.0.1 did not answer within 1.5 s"
    assert took < 2.5


def test_a_hub_that_hangs_up_or_answers(online, monkeypatch):
    with FakeHub("close") as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        reason = hub_unreachable_reason(timeout=2)  # a close races a reset: either is the hub hanging up
        assert "closed the connection" in reason or "reset" in reason, reason
    with FakeHub("answer") as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url + "/mirror")
        assert hub_unreachable_reason(timeout=2) is None
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:notaport")
    assert "not a valid URL" in hub_unreachable_reason(timeout=1)


def test_loading_a_hub_id_from_a_silent_hub_fails_in_seconds(online, monkeypatch):
    with FakeHub("silent") as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        started = time.monotonic()
        with pytest.raises(ModelLoadError) as info:
            load_model("someone/never-cached-model", device="cpu", network_timeout=2.0)
        took = time.monotonic() - started
        spec, notice = resolve_model_spec(None, network_timeout=1.0)
    message = str(info.value)
    assert message.startswith("someone/never-cached-model: ") and "did not answer within 2 s" in message
    assert "\n" not in message and took < 4
    if notice is not None:  # skt/kogpt2-base-v2 is not cached here: the default falls back to mini
        assert spec == "mini" and "did not answer" in notice


def test_cli_generate_from_a_silent_hub_says_so_in_seconds(tmp_path):
    with FakeHub("trickle") as hub:
        env = {
            k: v
            for k, v in quiet_env(
                HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), KOLYRIC_CONFIG_DIR=str(tmp_path / "config")
            ).items()
            if k != "HF_HUB_OFFLINE"
        }
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "kolyric", "generate", "사랑", "--model", "someone/model"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    assert "someone/model" in proc.stderr and "did not answer within 3 s" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert took < 20, took  # interpreter start and imports, then the 3 s probe
    assert os.environ.get("HF_ENDPOINT") != hub.url


def test_an_abandoned_probe_ends_quietly_whatever_it_meets_later(online, monkeypatch):
    """The probe is abandoned at its deadline and finishes in its own thread; what it meets
    then (here a patched ``create_connection`` that returns None after the caller is gone) must
    be a result, never an unhandled exception in that thread."""
    release = threading.Event()

    def late(*args, **kwargs):
        release.wait(10)
        return None

    errors: list = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    monkeypatch.setattr(socket, "create_connection", late)
    assert hub_unreachable_reason(timeout=0.3) == "huggingface.co did not answer within 0.3 s"
    probes = [t for t in threading.enumerate() if t.name == "kolyric-hub-probe"]
    assert probes
    release.set()
    for thread in probes:
        thread.join(5)
    assert not any(thread.is_alive() for thread in probes)
    assert errors == []
