"""Generating over HTTP: plain and streamed results, the presets and settings schema, lyric constraints,
and the request schema on its own."""

from __future__ import annotations

from dataclasses import replace

import httpx

from tests.servers import sse_events


def test_generate_returns_candidates_with_the_settings_used(server, tiny_loaded):
    from kolyric.engine.results import GenerationRequest
    from kolyric.engine.settings import preset
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
    direct = Generator(tiny_loaded).generate(
        GenerationRequest(
            "사랑해", "긍정", preset("greedy", max_length=6, seed=out["settings"]["seed"]), context=("첫 줄",)
        )
    )
    assert out["candidates"][0]["token_ids"] == direct.candidates[0].token_ids
    assert out["candidates"][0]["text"] == direct.candidates[0].text

    # the reported settings replay to the same result
    again = httpx.post(
        server.url + "/generate",
        json={"prompt": "사랑해", "polarity": "긍정", "context": ["첫 줄"], "settings": out["settings"]},
        timeout=30,
    ).json()
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
    from kolyric.engine.settings import PRESETS
    from kolyric.engine.settings_fields import FIELDS

    presets = httpx.get(server.url + "/presets", timeout=5).json()
    assert set(presets["presets"]) == set(PRESETS) and presets["default"] in PRESETS
    assert presets["presets"]["beam-3"]["settings"]["num_beams"] == 3
    schema = httpx.get(server.url + "/settings/schema", timeout=5).json()
    assert set(schema["settings"]) == set(FIELDS)
    assert schema["settings"]["top_p"]["valid"] == FIELDS["top_p"].describe_range()
    assert schema["limits"]["max_prompt_chars"] == 2000


def test_lyric_constraints_over_http(server):
    body = {"prompt": "사랑해", "preset": "greedy", "max_length": 20, "constraints": {"syllables": 4, "rhyme": "랑"}}
    r = httpx.post(server.url + "/generate", json=body, timeout=60)
    assert r.status_code == 200, r.text
    report = r.json()["candidates"][0]["constraints"]
    assert isinstance(report, dict) and "satisfied" in report
    r = httpx.post(
        server.url + "/generate", json={"constraints": {"syllables": 99, "colour": 1}, "top_k": -1}, timeout=10
    )
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
