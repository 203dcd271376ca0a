"""Cancellation, concurrency and overload: a client leaving cancels its generation, concurrent clients
get their own results, two workers share one model, and a full queue answers 503 with Retry-After."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from kolyric.serve.schema import Limits

from tests.servers import LiveServer, sse_events


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
    bodies = [
        {"prompt": p, "seed": 100 + i, "max_length": 6, **extra}
        for i, (p, extra) in enumerate(
            [
                ("사랑해", {}),
                ("눈물", {"polarity": "부정"}),
                ("바다", {"preset": "greedy"}),
                ("별빛", {"strategy": "sample", "n": 2, "temperature": 1.5}),
                ("", {"preset": "top-p-0.8"}),
                ("너와 나", {"polarity": "긍정", "context": ["어제의 노래"]}),
                ("봄", {"preset": "beam-3", "n": 2}),
                ("비가 와", {"top_k": 5}),
            ]
        )
    ]
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

    bodies = [
        {"prompt": p, "seed": i, "max_length": 5, "min_length": 5} for i, p in enumerate(["가을", "겨울", "여름", "봄"])
    ]
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
