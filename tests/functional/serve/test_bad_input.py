"""Bad requests: every invalid field listed, malformed and oversized bodies, and internal errors answered
as JSON without a traceback while the server goes on."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from tests.servers import sse_events


def test_invalid_settings_list_every_field(server):
    body = {
        "prompt": "가",
        "top_k": -1,
        "temperature": 0,
        "top_p": "lots",
        "polarity": "중립",
        "preset": "fastest",
        "colour": "red",
        "settings": {"unknown_knob": 1},
    }
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
    r = httpx.post(
        server.url + "/generate",
        content=b'{"prompt": "\\ud800", "context": "a\\udfff", "\\ud83d": 1}',
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 422
    assert [p["field"] for p in r.json()["problems"]] == ["?", "prompt", "context"]
    assert "surrogate" in r.json()["problems"][1]["message"]


@pytest.mark.parametrize(
    "content", [b"{bad", b"", b"[1, 2]", b"\xff\xfe{", b'{"top_k": NaN}', b"[" * 30000 + b"]" * 30000]
)
def test_malformed_bodies_are_400(server, content):
    r = httpx.post(server.url + "/generate", content=content, headers={"content-type": "application/json"}, timeout=10)
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
