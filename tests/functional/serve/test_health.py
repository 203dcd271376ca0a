"""GET /health while the model loads, once it is ready, and after its load failed."""

from __future__ import annotations

import threading

import httpx

from tests.servers import LiveServer


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
