"""Lines as lines over HTTP and in the CLI: token events say where a line breaks, and a
constrained request without a max_length gets one that fits its lines."""

from __future__ import annotations

import json

from kolyric.engine.lyric.spec import LyricConstraints
from kolyric.serve.schema import Limits, parse_generation


def test_a_constrained_request_without_max_length_gets_room_for_its_lines():
    body = {"prompt": "봄", "constraints": {"syllables": 12, "lines": 6}}
    parsed = parse_generation(body, Limits(max_new_tokens=512))
    budget = LyricConstraints.from_dict(body["constraints"]).length_budget()
    assert parsed.request.max_length_set is True
    assert parsed.request.settings.max_length == min(budget, 512) > 40
    capped = parse_generation(body, Limits(max_new_tokens=60)).request.settings.max_length
    assert capped == 60  # never past the server's own limit


def test_an_explicit_max_length_is_kept():
    for body in (
        {"prompt": "봄", "max_length": 40, "constraints": {"syllables": 12, "lines": 6}},
        {"prompt": "봄", "settings": {"max_length": 40}, "constraints": {"syllables": 12, "lines": 6}},
    ):
        request = parse_generation(body, Limits()).request
        assert request.max_length_set is True and request.settings.max_length == 40
    plain = parse_generation({"prompt": "봄"}, Limits()).request
    assert plain.max_length_set is False


def test_the_cli_tells_the_engine_whether_max_length_was_chosen():
    from kolyric.cli import build_parser
    from kolyric.cli.generate import build_request

    parser = build_parser("generate")
    chosen = build_request(
        parser.parse_args(["generate", "봄", "--syllables", "7", "--lines", "4", "--max-length", "40"])
    )
    assert chosen.max_length_set is True
    default = build_request(parser.parse_args(["generate", "봄", "--syllables", "7", "--lines", "4"]))
    assert default.max_length_set is False


def test_stream_token_events_carry_line_break(tiny_loaded):
    from kolyric.engine.results import GenerationRequest, TokenEvent
    from kolyric.engine.settings import preset
    from kolyric.engine.stream import Generator
    from kolyric.serve.api import _token_dict

    events = [
        e
        for e in Generator(tiny_loaded).stream(GenerationRequest("봄", None, preset("greedy", max_length=8)))
        if isinstance(e, TokenEvent)
    ]
    assert events
    for event in events:
        shown = _token_dict(event)
        assert shown["line_break"] == ("\n" in event.text)
        json.dumps(shown, ensure_ascii=False)
