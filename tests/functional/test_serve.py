"""`kolyric serve`: the real server (uvicorn on a free 127.0.0.1 port) with a tiny local model,
driven by a real HTTP client (httpx)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from kolyric.serve.schema import Limits  # noqa: E402

from tests.servers import ThreadedServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


# -- helpers ---------------------------------------------------------------------------------------
class LiveServer(ThreadedServer):
    """uvicorn serving ``app`` in a thread, on a free port of 127.0.0.1."""

    def __init__(self, app):
        import uvicorn

        super().__init__(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
        self.app = app

    def wait_ready(self, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            r = httpx.get(self.url + "/health", timeout=5)
            if r.status_code == 200:
                return r.json()
            assert time.monotonic() < deadline, f"model not ready: {r.json()}"
            time.sleep(0.05)

    def health(self) -> dict:
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
    """(event, data) pairs from a text/event-stream response, as they arrive."""
    event, data = None, []
    for line in response.iter_lines():
        if line == "":
            if event is not None:
                yield event, json.loads("\n".join(data))
            event, data = None, []
        elif line.startswith("event:"):
            event = line[len("event:"):].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:"):].strip())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_generator_class():
    from kolyric.engine.stream import Generator

    class InstrumentedGenerator(Generator):
        """Prompts starting with 느리게 take ``delay`` s per token (so a test can act mid-stream);
        the prompt 폭발 raises inside the generation."""

        delay = 0.05

        def stream(self, request, cancel=None, controls=None):
            if request.prompt == "폭발":
                raise RuntimeError("secret internal detail")
            for event in super().stream(request, cancel=cancel, controls=controls):
                yield event
                if request.prompt.startswith("느리게"):
                    time.sleep(self.delay)

    return InstrumentedGenerator


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tiny_model_dir):
    """The server as `kolyric serve` builds it: a loader called in the background."""
    from kolyric.engine.loading import load_model
    from kolyric.serve import create_app

    app = create_app(lambda: load_model(str(tiny_model_dir), device="cpu"), Limits(queue_depth=16))
    with LiveServer(app) as live:
        live.wait_ready()
        yield live


@pytest.fixture(scope="module")
def small_server(tiny_loaded):
    """One worker, one waiting place; slow and failing prompts available."""
    from kolyric.serve import create_app

    app = create_app(make_generator_class()(tiny_loaded), Limits(queue_depth=1, workers=1, max_body_bytes=4096))

    @app.get("/test/crash")
    async def crash():
        raise ValueError("another secret detail")

    with LiveServer(app) as live:
        live.wait_ready()
        yield live


# -- health and loading ----------------------------------------------------------------------------
def test_health_says_loading_at_once_then_ready(tiny_loaded):
    from kolyric.serve import create_app

    gate = threading.Event()

    def loader():
        gate.wait(20)
        return tiny_loaded

    with LiveServer(create_app(loader)) as live:
        r = httpx.get(live.url + "/health", timeout=5)
        assert r.status_code == 503
        assert r.json()["status"] == "loading"
        r = httpx.post(live.url + "/generate", json={"prompt": "가"}, timeout=5)
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        gate.set()
        body = live.wait_ready()
        assert body["status"] == "ready" and body["error"] is None
        assert "params" in body["model"]
        assert body["active"] == 0 and body["cancelled"] == 0


def test_health_reports_a_load_failure(tiny_model_dir):
    from kolyric.engine.loading import load_model
    from kolyric.serve import create_app

    with LiveServer(create_app(lambda: load_model(str(tiny_model_dir / "nowhere"), device="cpu"))) as live:
        body = live.wait_health(lambda h: h["status"] != "loading")
        assert body["status"] == "error" and "nowhere" in body["error"]
        assert httpx.get(live.url + "/health", timeout=5).status_code == 503
        r = httpx.post(live.url + "/generate", json={"prompt": "가"}, timeout=5)
        assert r.status_code == 503 and "nowhere" in r.json()["error"]


# -- generation ------------------------------------------------------------------------------------
def test_generate_returns_candidates_with_the_settings_used(server, tiny_loaded):
    from kolyric.engine.settings import preset
    from kolyric.engine.results import GenerationRequest
    from kolyric.engine.stream import Generator

    body = {"prompt": "사랑해", "polarity": "긍정", "preset": "greedy", "max_length": 6, "context": ["첫 줄"]}
    r = httpx.post(server.url + "/generate", json=body, timeout=30)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["settings"]["strategy"] == "greedy" and out["settings"]["max_length"] == 6
    assert isinstance(out["settings"]["seed"], int)  # the seed used is reported
    assert out["prompt_text"].startswith("긍정 ") and "첫 줄" in out["prompt_text"]
    assert len(out["candidates"]) == 1 and out["model"]
    # the same request through the engine directly (as the CLI runs it) gives the same text
    direct = Generator(tiny_loaded).generate(GenerationRequest(
        "사랑해", "긍정", preset("greedy", max_length=6, seed=out["settings"]["seed"]), context=("첫 줄",)))
    assert out["candidates"][0]["token_ids"] == direct.candidates[0].token_ids
    assert out["candidates"][0]["text"] == direct.candidates[0].text

    # the reported settings replay to the same result
    again = httpx.post(server.url + "/generate", json={"prompt": "사랑해", "polarity": "긍정", "context": ["첫 줄"],
                                                       "settings": out["settings"]}, timeout=30).json()
    assert again["candidates"] == out["candidates"]


def test_stream_sends_tokens_then_done(server):
    body = {"prompt": "눈물이", "strategy": "sample", "seed": 11, "n": 2, "max_length": 6, "min_length": 6}
    with httpx.stream("POST", server.url + "/generate/stream", json=body, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(r))
    names = [e for e, _ in events]
    assert names[0] == "start" and names[-1] == "done"
    assert events[0][1]["settings"]["seed"] == 11
    tokens = [d for e, d in events if e == "token"]
    assert len(tokens) >= 2 and names.count("done") == 1 and "error" not in names
    assert {t["candidate"] for t in tokens} == {0, 1}
    assert all(len(t["token"]["alternatives"]) == 5 for t in tokens)
    done = events[-1][1]
    for i, cand in enumerate(done["candidates"]):
        streamed = "".join(t["text"] for t in tokens if t["candidate"] == i)
        assert streamed.split() == cand["text"].split()
        assert [t["token"]["id"] for t in tokens if t["candidate"] == i] == cand["token_ids"]
    # streaming and the plain endpoint agree for the same seed
    plain = httpx.post(server.url + "/generate", json=body, timeout=30).json()
    assert plain["candidates"] == done["candidates"]


def test_presets_and_schema(server):
    from kolyric.engine.settings import FIELDS, PRESETS

    presets = httpx.get(server.url + "/presets", timeout=5).json()
    assert set(presets["presets"]) == set(PRESETS) and presets["default"] in PRESETS
    assert presets["presets"]["beam-3"]["settings"]["num_beams"] == 3
    schema = httpx.get(server.url + "/settings/schema", timeout=5).json()
    assert set(schema["settings"]) == set(FIELDS)
    assert schema["settings"]["top_p"]["valid"] == FIELDS["top_p"].describe_range()
    assert schema["limits"]["max_prompt_chars"] == 2000


# -- bad input -------------------------------------------------------------------------------------
def test_invalid_settings_list_every_field(server):
    body = {"prompt": "가", "top_k": -1, "temperature": 0, "top_p": "lots", "polarity": "중립",
            "preset": "fastest", "colour": "red", "settings": {"unknown_knob": 1}}
    r = httpx.post(server.url + "/generate", json=body, timeout=10)
    assert r.status_code == 422
    problems = {p["field"]: p for p in r.json()["problems"]}
    assert set(problems) >= {"top_k", "temperature", "top_p", "polarity", "preset", "colour", "unknown_knob"}
    assert problems["top_k"]["value"] == -1 and problems["top_k"]["valid"] == "an integer in [0, 51200]"
    assert problems["temperature"]["valid"].startswith("a number in (0")
    assert problems["top_p"]["value"] == "lots"
    assert problems["colour"]["message"] == "unknown field"
    assert "Traceback" not in r.text

    r = httpx.post(server.url + "/generate/stream", json={"strategy": "greedy", "n": 3}, timeout=10)
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "n"
    r = httpx.post(server.url + "/generate", json={"min_length": 9, "max_length": 4}, timeout=10)
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "min_length"
    r = httpx.post(server.url + "/generate", json={"prompt": 5, "context": [1], "constraints": "rhyme"}, timeout=10)
    assert r.status_code == 422
    assert {p["field"] for p in r.json()["problems"]} == {"prompt", "context", "constraints"}
    # unpaired surrogates are valid JSON but not text: named, and echoed back safely
    r = httpx.post(server.url + "/generate", content=b'{"prompt": "\\ud800", "context": "a\\udfff", "\\ud83d": 1}',
                   headers={"content-type": "application/json"}, timeout=10)
    assert r.status_code == 422
    assert [p["field"] for p in r.json()["problems"]] == ["?", "prompt", "context"]
    assert "surrogate" in r.json()["problems"][1]["message"]


@pytest.mark.parametrize("content", [b"{bad", b"", b"[1, 2]", b"\xff\xfe{", b'{"top_k": NaN}',
                                     b"[" * 30000 + b"]" * 30000])
def test_malformed_bodies_are_400(server, content):
    r = httpx.post(server.url + "/generate", content=content, headers={"content-type": "application/json"},
                   timeout=10)
    assert r.status_code == 400
    assert r.json()["error"].startswith("malformed") and "Traceback" not in r.text


def test_oversized_requests_are_413_with_the_limit(server, small_server):
    r = httpx.post(server.url + "/generate", json={"prompt": "가" * 2001}, timeout=10)
    assert r.status_code == 413
    (problem,) = r.json()["problems"]
    assert problem["field"] == "prompt" and problem["limit"] == 2000 and "2001" in problem["message"]
    r = httpx.post(server.url + "/generate", json={"strategy": "sample", "n": 12}, timeout=10)
    assert r.status_code == 413 and r.json()["problems"][0]["limit"] == 8
    r = httpx.post(server.url + "/generate", json={"context": ["줄"] * 100}, timeout=10)
    assert r.status_code == 413 and r.json()["problems"][0]["field"] == "context"
    # a size problem among others: 422, listing all of them with the limit
    r = httpx.post(server.url + "/generate", json={"prompt": "가" * 2001, "top_k": -5}, timeout=10)
    assert r.status_code == 422
    assert {p["field"]: p.get("limit") for p in r.json()["problems"]} == {"prompt": 2000, "top_k": None}
    # bodies over the byte limit are refused before they are parsed
    r = httpx.post(small_server.url + "/generate", content=b'{"prompt": "' + b"a" * 5000 + b'"}', timeout=10)
    assert r.status_code == 413 and "4096" in r.json()["error"]


def test_errors_are_json_without_traceback_and_the_server_goes_on(small_server, caplog):
    caplog.set_level(logging.ERROR, logger="kolyric.serve")
    r = httpx.post(small_server.url + "/generate", json={"prompt": "폭발"}, timeout=10)
    assert r.status_code == 500
    assert r.json()["error"] == "generation failed" and r.json()["incident"]
    assert "secret" not in r.text and "Traceback" not in r.text
    # the server's log has the incident id and the traceback
    assert r.json()["incident"] in caplog.text and "secret internal detail" in caplog.text
    with httpx.stream("POST", small_server.url + "/generate/stream", json={"prompt": "폭발"}, timeout=10) as s:
        events = list(sse_events(s))
    assert [e for e, _ in events] == ["start", "error"] and "secret" not in json.dumps(events)
    r = httpx.get(small_server.url + "/test/crash", timeout=10)
    assert r.status_code == 500 and r.json()["error"] == "internal server error"
    assert "secret" not in r.text and "Traceback" not in r.text
    assert small_server.health()["failed"] >= 2
    r = httpx.post(small_server.url + "/generate", json={"prompt": "가", "max_length": 2}, timeout=30)
    assert r.status_code == 200


# -- cancellation, concurrency, overload -----------------------------------------------------------
def test_disconnect_cancels_the_stream_within_a_step(small_server):
    before = small_server.wait_health(lambda h: h["active"] == 0 and h["queued"] == 0)
    body = {"prompt": "느리게 가자", "strategy": "greedy", "max_length": 100}
    seen = 0
    with httpx.stream("POST", small_server.url + "/generate/stream", json=body, timeout=30) as r:
        for event, _ in sse_events(r):
            seen += event == "token"
            if seen == 2:
                break  # leaving the block closes the connection mid-stream
    after = small_server.wait_health(lambda h: h["cancelled"] > before["cancelled"], timeout=5)
    assert after["active"] == 0
    last = after["last_cancel"]
    assert last["ran"] and last["new_tokens"] < 20 < last["max_length"]
    assert last["latency_s"] < 1.0  # a step is ~0.05 s here (plus a CPU-bound forward pass)


def test_disconnect_cancels_a_plain_generate(small_server):
    before = small_server.wait_health(lambda h: h["active"] == 0 and h["queued"] == 0)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(small_server.url + "/generate", json={"prompt": "느리게 가자", "max_length": 100}, timeout=0.6)
    after = small_server.wait_health(lambda h: h["cancelled"] > before["cancelled"], timeout=5)
    assert after["last_cancel"]["new_tokens"] < 60 and after["active"] == 0


def test_concurrent_clients_get_their_own_results(server):
    bodies = [{"prompt": p, "seed": 100 + i, "max_length": 6, **extra}
              for i, (p, extra) in enumerate([
                  ("사랑해", {}), ("눈물", {"polarity": "부정"}), ("바다", {"preset": "greedy"}),
                  ("별빛", {"strategy": "sample", "n": 2, "temperature": 1.5}), ("", {"preset": "top-p-0.8"}),
                  ("너와 나", {"polarity": "긍정", "context": ["어제의 노래"]}), ("봄", {"preset": "beam-3", "n": 2}),
                  ("비가 와", {"top_k": 5})])]
    alone = [httpx.post(server.url + "/generate", json=b, timeout=60).json() for b in bodies]

    async def all_at_once():
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(*(client.post(server.url + "/generate", json=b) for b in bodies))

    together = asyncio.run(all_at_once())
    assert [r.status_code for r in together] == [200] * len(bodies)
    for solo, r in zip(alone, together):
        got = r.json()
        assert got["candidates"] == solo["candidates"]
        assert got["settings"] == solo["settings"] and got["prompt_text"] == solo["prompt_text"]
    assert len({json.dumps(a["candidates"]) for a in alone}) == len(bodies)  # really different requests
    assert server.health()["rejected"] == 0


def test_two_workers_share_one_model(tiny_loaded):
    from kolyric.serve import create_app

    bodies = [{"prompt": p, "seed": i, "max_length": 5, "min_length": 5} for i, p in enumerate(["가을", "겨울", "여름", "봄"])]
    with LiveServer(create_app(tiny_loaded, Limits(workers=2, queue_depth=2))) as live:
        live.wait_ready()
        alone = [httpx.post(live.url + "/generate", json=b, timeout=60).json()["candidates"] for b in bodies]

        async def all_at_once():
            async with httpx.AsyncClient(timeout=60) as client:
                return await asyncio.gather(*(client.post(live.url + "/generate", json=b) for b in bodies))

        together = asyncio.run(all_at_once())
        assert [r.json()["candidates"] for r in together] == alone
        assert live.health()["workers"] == 2


def test_queue_overflow_is_503_with_retry_after(small_server):
    small_server.wait_health(lambda h: h["active"] == 0 and h["queued"] == 0)
    slow = {"prompt": "느리게 가자", "strategy": "greedy", "max_length": 100}
    with httpx.Client(timeout=30) as c1, httpx.Client(timeout=30) as c2:
        with c1.stream("POST", small_server.url + "/generate/stream", json=slow) as running:
            events = sse_events(running)
            assert next(events)[0] == "start" and next(events)[0] == "token"  # generating
            with c2.stream("POST", small_server.url + "/generate/stream", json=slow) as waiting:
                start = next(sse_events(waiting))
                assert start[0] == "start" and start[1]["ahead"] == 1  # admitted, waiting its turn
                assert small_server.health()["queued"] == 1
                for path in ("/generate", "/generate/stream"):
                    r = httpx.post(small_server.url + path, json={"prompt": "가"}, timeout=10)
                    assert r.status_code == 503
                    assert int(r.headers["retry-after"]) >= 1
                    assert r.json()["retry_after"] == int(r.headers["retry-after"])
                    assert "busy" in r.json()["error"]
    # both clients left: the running one is cancelled, the waiting one never runs
    h = small_server.wait_health(lambda h: h["active"] == 0 and h["queued"] == 0, timeout=5)
    assert h["rejected"] >= 2
    r = httpx.post(small_server.url + "/generate", json={"prompt": "가", "max_length": 2}, timeout=30)
    assert r.status_code == 200


# -- the command line ------------------------------------------------------------------------------
def test_cli_serve_starts_and_answers(tiny_model_dir):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "kolyric", "serve", "--model", str(tiny_model_dir),
                             "--port", str(port), "--queue-depth", "2", "--log-level", "warning"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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


@pytest.mark.parametrize("argv, message", [
    (["--queue-depth", "-1"], "--queue-depth: must be an integer >= 0"),
    (["--workers", "0"], "--workers: must be a positive integer"),
    (["--max-n", "40"], "--max-n: must be at most 16"),
    (["--port", "70000"], "--port: must be an integer in [0, 65535]"),
    (["--threads", "0"], "--threads: must be a positive integer"),
    (["--app", "--base", "x"], "--base: the app takes no base model"),
])
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


def test_lyric_constraints_over_http(server):
    body = {"prompt": "사랑해", "preset": "greedy", "max_length": 20, "constraints": {"syllables": 4, "rhyme": "랑"}}
    r = httpx.post(server.url + "/generate", json=body, timeout=60)
    assert r.status_code == 200, r.text
    report = r.json()["candidates"][0]["constraints"]
    assert isinstance(report, dict) and "satisfied" in report
    r = httpx.post(server.url + "/generate", json={"constraints": {"syllables": 99, "colour": 1}, "top_k": -1},
                   timeout=10)
    assert r.status_code == 422
    problems = {p["field"]: p for p in r.json()["problems"]}
    assert set(problems) == {"constraints.syllables", "constraints.colour", "top_k"}
    assert problems["constraints.syllables"]["value"] == 99 and problems["constraints.syllables"]["valid"]


def test_parse_generation_unit():
    """The schema alone: defaults, aliases and a fixed seed (no server, no torch)."""
    from kolyric.engine.settings import DEFAULT_PRESET, preset
    from kolyric.serve.schema import parse_generation

    parsed = parse_generation({"prompt": "가", "polarity": "positive", "context": "하나\n\n둘"})
    request = parsed.request
    assert request.polarity == "긍정" and request.context == ("하나", "둘")
    assert isinstance(request.settings.seed, int)
    assert replace(request.settings, seed=None) == preset(DEFAULT_PRESET)
