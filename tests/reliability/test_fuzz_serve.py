"""Fuzzed JSON bodies against the real FastAPI app (in-process, a tiny model, small limits so
valid requests finish fast), and the places the server may touch on disk.

Every request ends in 200 with what was asked for, or 400/413/422 with every problem naming
its field — never a 500, a traceback or a hang. While requests run, an audit hook records
every file the process opens or changes: the server must touch none (it owns no files; a
request cannot name a model, a path or a folder)."""

from __future__ import annotations

import json
import sys
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from kolyric.engine.settings import PRESETS
from kolyric.engine.settings_fields import FIELDS
from kolyric.serve.schema import REQUEST_FIELDS, Limits

from tests.reliability._util import count

LIMITS = Limits(max_new_tokens=8, max_n=3, queue_depth=64, max_body_bytes=16384, max_prompt_chars=200)

# -- file access audit -------------------------------------------------------------------------------
_FILE_EVENTS = {
    "open",
    "os.remove",
    "os.rename",
    "os.mkdir",
    "os.rmdir",
    "os.truncate",
    "os.chmod",
    "os.link",
    "os.symlink",
    "shutil.rmtree",
    "shutil.copyfile",
    "shutil.move",
    "os.listdir",
    "os.scandir",
}
_recording: list | None = None
_hook_lock = threading.Lock()
_hook_installed = False


def _audit(event: str, args: tuple) -> None:
    if _recording is not None and event in _FILE_EVENTS:
        _recording.append((event, repr(args)[:200], threading.current_thread().name))


def _install_hook() -> None:
    global _hook_installed
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_audit)  # process-wide and permanent; inert unless recording
            _hook_installed = True


class Recording:
    def __enter__(self) -> list:
        global _recording
        _recording = []
        return _recording

    def __exit__(self, *exc) -> None:
        global _recording
        _recording = None


@pytest.fixture(scope="module")
def client(tiny_loaded):
    from kolyric.engine.stream import Generator
    from kolyric.serve import create_app

    _install_hook()
    with Recording() as seen:  # the hook does see file access
        open(__file__, "rb").close()
    assert seen and seen[0][0] == "open"
    app = create_app(Generator(tiny_loaded), LIMITS)
    with TestClient(app, raise_server_exceptions=False) as c:
        for body in (
            {"prompt": "가", "max_length": 2},
            {"prompt": "가", "max_length": 2, "strategy": "beam", "n": 2},
            {"constraints": {"syllables": 3}, "max_length": 4},
        ):  # warm every code path (imports)
            c.post("/generate", json=body)
            c.post("/generate/stream", json=body)
        c.post("/generate", json={"top_k": "x", "preset": "nope", "constraints": {"x": 1}})
        yield c


# -- bodies --------------------------------------------------------------------------------------------
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(10**30), 2**64]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
# (valid values, invalid values) per field: valid ones are drawn 9 times in 10, so a good share
# of the bodies are runnable and their results can be checked too.
FIELD_VALUES: dict[str, tuple[list, list]] = {
    "strategy": (["greedy", "beam", "sample", " Sample "], ["best", "", 3]),
    "num_beams": ([2, 3, 4, "3"], [1, 17, 2.5]),
    "top_k": ([0, 5, 50, "10", 5.0], [-1, 5.5, 51201]),
    "top_p": ([0.5, 1, 0.92, "0.8"], [0, 1.01, -0.0]),
    "temperature": ([0.7, 1, 1.5, 1e6], [0, -1, 10**400, "hot", 1e7]),
    "repetition_penalty": ([1, 1.2, 10], [0.9, 11]),
    "no_repeat_ngram_size": ([0, 2, 3], [11, -1]),
    "min_length": ([0, 1, 2], [9, -1, 1025]),
    "max_length": ([1, 2, 4, 8], [9, 0, 1024]),
    "seed": ([None, 0, 7, 2**32 - 1, "random", "", 1.0], [2**32, -1, 1.5, [1]]),
    "n": ([1, 2, 3], [4, 0, True, 17]),
    "prompt": (["", "사랑해", "바람이 분다", "🎵", "\x00\x1b[2J", "가" * 200], ["\ud800", "가" * 201, 5]),
    "polarity": (["긍정", "부정", "none", "positive", "neg", None, ""], ["중립", 1]),
    "preset": ([*PRESETS, None], ["nope", 3, ""]),
    "context": ([["첫 줄", "", "둘째 줄"], "하나\n둘", "", []], [["\udfff"], [5], "줄\n" * 70, 3, {"a": 1}]),
    "constraints": (
        [None, {}, {"syllables": 3}, {"rhyme": "가"}, {"lines": 2, "syllables": 4}, {"scheme": "AB"}],
        [{"syllables": 0}, {"metre": 3}, {"syllables": "seven"}, "rhyme", [1]],
    ),
}
PATHLIKE_KEYS = ["model", "model_path", "checkpoint", "out", "data_dir", "file", "context_file", "path", "../x"]


@st.composite
def bodies(draw):
    body = {}
    for key in draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), max_size=6, unique=True)):
        good, bad = FIELD_VALUES[key]
        roll = draw(st.integers(0, 19))
        body[key] = draw(st.sampled_from(good) if roll < 18 else st.sampled_from(bad) if roll == 18 else JSON)
    if draw(st.integers(0, 7)) == 0:
        body[draw(st.one_of(st.sampled_from(PATHLIKE_KEYS), st.text(max_size=8)))] = draw(
            st.one_of(st.sampled_from(["/etc/passwd", "../../secret", "~/.ssh/id_rsa", "C:\\x"]), JSON)
        )
    body.setdefault("max_length", draw(st.sampled_from([1, 3, 6])))  # the default (40) is over this server's 8
    if draw(st.integers(0, 6)) == 0:  # some controls nested under `settings`, as results report them
        nested = {k: body.pop(k) for k in list(body) if k in FIELDS and draw(st.booleans())}
        body["settings"] = nested if draw(st.integers(0, 5)) else draw(JSON)
    return body


KNOWN = set(REQUEST_FIELDS) | set(FIELDS)


def check_response(body, status: int, data: dict, stream_events: list | None) -> None:
    assert status in (200, 400, 413, 422), (status, data)
    if status != 200:
        assert isinstance(data.get("error"), str) and data["error"], data
        if status in (413, 422):
            assert data["problems"], data
            given = {str(k) for k in body} | (
                set(body["settings"]) if isinstance(body.get("settings"), dict) else set()
            )
            for p in data["problems"]:
                name = p["field"]
                assert (
                    name in given or name in FIELDS or name == "?" or name.startswith("constraints") or name == "preset"
                ), (name, body)
                assert p["message"], p
            unknown = [str(k) for k in body if k not in KNOWN]
            for key in unknown:  # a field the server does not know is never ignored
                assert any(p["field"] in (key, "?") for p in data["problems"]), (key, data["problems"])
        return
    result = data if stream_events is None else stream_events[-1][1]
    assert set(body) <= KNOWN, f"unknown fields accepted: {set(body) - KNOWN}"
    s = result["settings"]
    given = {**(body.get("settings") or {}), **{k: v for k, v in body.items() if k in FIELDS}}
    for name, raw in given.items():
        if isinstance(raw, int) and not isinstance(raw, bool):
            assert s[name] == raw, (name, raw, s[name])
        if name == "strategy" and isinstance(raw, str):
            assert s[name] == raw.strip().lower()
    expected_n = 1 if s["strategy"] == "greedy" else s["n"]
    assert len(result["candidates"]) == expected_n
    assert result["new_tokens"] <= s["max_length"] * expected_n
    assert s["max_length"] <= LIMITS.max_new_tokens and s["n"] <= LIMITS.max_n
    if stream_events is not None:
        names = [e for e, _ in stream_events]
        assert names[0] == "start" and names[-1] == "done" and set(names[1:-1]) <= {"token"}, names


def sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.split("\n\n"):
        lines = block.strip().splitlines()
        if lines:
            name = lines[0].removeprefix("event:").strip()
            events.append((name, json.loads("\n".join(line.removeprefix("data:").strip() for line in lines[1:]))))
    return events


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(bodies(), st.booleans())
def test_json_bodies(client, body, stream):
    count("fuzz: server JSON bodies")
    raw = json.dumps(body).encode()  # ASCII escapes: lone surrogates travel as JSON allows
    path = "/generate/stream" if stream else "/generate"
    with Recording() as touched:
        r = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert not touched, f"the server touched files: {touched[:5]}"
    assert "Traceback" not in r.text
    if stream and r.status_code == 200:
        check_response(body, 200, {}, sse(r.text))
    else:
        check_response(body, r.status_code, r.json(), None)
    count(f"fuzz: server status {r.status_code}")


RAW = st.one_of(
    st.binary(max_size=60),
    st.sampled_from(
        [
            b"",
            b"{",
            b"null",
            b"[]",
            b'"text"',
            b"1e999",
            b'{"top_k": NaN}',
            b'{"a": Infinity}',
            b"\xef\xbb\xbf{}",
            b"\xff\xfe{\x00}\x00",
            b'{"prompt": "\\ud800"}',
            b"[" * 50000,
            b'{"temperature": 1' + b"0" * 400 + b"}",
            b'{"seed": 1' + b"0" * 4400 + b"}",
            b'{"prompt": "a", "prompt": "b", "max_length": 1}',
        ]
    ),
    JSON.map(lambda v: json.dumps(v).encode()),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(RAW)
def test_raw_bodies(client, raw):
    count("fuzz: server raw bodies")
    with Recording() as touched:
        r = client.post("/generate", content=raw, headers={"content-type": "application/json"})
    assert not touched, touched[:5]
    assert r.status_code in (200, 400, 413, 422), (r.status_code, r.text[:500])
    assert isinstance(r.json(), dict) and "Traceback" not in r.text
    count(f"fuzz: server status {r.status_code}")


def test_huge_integer_for_a_float_control_is_a_422_naming_it(client):
    """Before the fix in settings._coerce this was a 500 (OverflowError: int too large to convert to float)."""
    r = client.post(
        "/generate", content=b'{"temperature": 1' + b"0" * 400 + b"}", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and [p["field"] for p in r.json()["problems"]] == ["temperature"]


@pytest.mark.parametrize(
    "url",
    [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/generate/..%2f..%2fetc%2fpasswd",
        "/static/../../etc/passwd",
        "//etc/passwd",
        "/docs",
        "/openapi.json?path=/etc",
    ],
)
def test_no_route_reads_a_path(client, url):
    with Recording() as touched:
        r = client.get(url)
    assert r.status_code in (404, 405) or (url.startswith("/openapi") and r.status_code == 200)
    assert "root:" not in r.text and not touched


def test_the_api_has_no_place_for_a_model_or_a_path(client):
    routes = {(m, route.path) for route in client.app.routes for m in getattr(route, "methods", ()) or ()}
    assert {p for _, p in routes} <= {
        "/",
        "/health",
        "/presets",
        "/settings/schema",
        "/generate",
        "/generate/stream",
        "/openapi.json",
    }
    assert not (set(REQUEST_FIELDS) & {"model", "model_path", "checkpoint", "path", "file", "out", "data_dir"})
    for key in PATHLIKE_KEYS:
        r = client.post("/generate", json={key: "/etc/passwd", "max_length": 1})
        assert r.status_code == 422 and r.json()["problems"][0]["field"] == key


NUMERIC_FIELDS = [name for name, spec in FIELDS.items() if spec.kind in (int, float)]


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    st.sampled_from(NUMERIC_FIELDS + ["constraints.syllables", "constraints.lines", "settings.top_k"]),
    st.integers(101, 9000),
    st.sampled_from(["", "-"]),
    st.sampled_from(["", ".5", "e3"]),
)
def test_json_numbers_of_any_length_are_a_422_naming_the_field(client, name, digits, sign, tail):
    """JSON numbers have no size limit; Python's int() stops at 4,300 digits. Either way the
    answer is 422 naming the field, never a 400 about integer conversion or a 500."""
    count("fuzz: server numbers of any length")
    number = (sign + "1" + "0" * (digits - 1) + tail).encode()
    outer, _, inner = name.partition(".")
    field = b'"%s": %s' % (inner.encode(), number) if inner else b'"%s": %s' % (outer.encode(), number)
    raw = b"{%s}" % (b'"%s": {%s}' % (outer.encode(), field) if inner else field)
    if name != "max_length":  # the default (40) is over this server's 8
        raw = raw[:-1] + b', "max_length": 1}' if name != "settings.top_k" else raw[:-2] + b', "max_length": 1}}'

    r = client.post("/generate", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, (r.status_code, r.text[:300])
    fields = [p["field"] for p in r.json()["problems"]]
    assert fields == [name if outer == "constraints" else inner or outer], fields
    assert "Exceeds the limit" not in r.text and len(r.text) < 2000
