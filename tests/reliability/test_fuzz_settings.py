"""Fuzzed decoding settings: ``DecodingSettings.from_dict`` and ``preset`` with arbitrary keys,
types, ranges, NaN/inf, huge integers and Unicode. Each case is either a valid settings object
that holds exactly what was asked, or a ``SettingsError`` whose every problem names a field."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kolyric.engine.settings import PRESETS, DecodingSettings, SettingsError, check, preset
from kolyric.engine.settings_fields import FIELDS

from tests.reliability._util import count

NUMBER_TEXT = st.sampled_from(
    [
        "0",
        "1",
        "2",
        " 3 ",
        "0.5",
        "1.0",
        "-1",
        "1e3",
        "1e400",
        "-1e400",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "+7",
        "1_000",
        "0x10",
        "٣",
        "３",
        "",
        " ",
        "none",
        "None",
        "random",
        "9" * 5000,
        "1" + "0" * 30,
        "4294967295",
        "4294967296",
        "greedy",
        "BEAM",
        " sample ",
        "true",
        "False",
        "null",
    ]
)
HUGE_INTS = st.sampled_from([2**31, 2**32, 2**32 - 1, 2**63, 2**64, 10**30, 10**400, -(10**400), -(2**63)])
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HUGE_INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2, max_value=20),
    st.integers(min_value=-2, max_value=20),
    NUMBER_TEXT,
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.binary(max_size=4),
    st.tuples(st.integers()),
    st.complex_numbers(max_magnitude=10),
)
KEYS = st.one_of(
    st.sampled_from(list(FIELDS)),
    st.sampled_from([f.upper() for f in FIELDS] + ["top-k", "preset"]),
    st.text(max_size=12),
    st.integers(),
    st.none(),
)
BODIES = st.dictionaries(KEYS, VALUES, max_size=6)


def expected_value(name: str, raw):
    """What a well-typed raw value must become (None: no simple expectation)."""
    spec = FIELDS[name]
    if isinstance(raw, bool):
        return None
    if spec.kind is str:
        return raw.strip().lower() if isinstance(raw, str) else None
    if isinstance(raw, int):
        return float(raw) if spec.kind is float else raw
    if isinstance(raw, float) and math.isfinite(raw):
        return raw if spec.kind is float else int(raw)
    return None


def check_outcome(values: dict, make) -> None:
    try:
        result = make()
    except SettingsError as exc:
        assert exc.problems, "a SettingsError with no problem"
        given_names = {str(k) for k in values}
        for problem in exc.problems:
            assert problem.field in given_names or problem.field in FIELDS or problem.field == "preset", problem
            assert str(problem).startswith(f"{problem.field}: ")
            json.dumps(problem.to_dict(), allow_nan=False)  # what the server sends back is valid JSON
        return
    # A result: valid, and holding exactly what was asked for each well-typed field.
    assert isinstance(result, DecodingSettings)
    assert check(result.to_dict()) == []
    for key, raw in values.items():
        assert key in FIELDS, f"unknown key {key!r} silently accepted"
        want = expected_value(key, raw)
        if want is not None:
            assert getattr(result, key) == want, (key, raw, getattr(result, key))
        if key == "seed" and (raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none", "random"))):
            assert result.seed is None
    assert DecodingSettings.from_dict(result.to_dict()) == result  # round trip


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BODIES)
def test_from_dict_never_raises_anything_but_settings_error(values):
    count("fuzz: DecodingSettings.from_dict")
    check_outcome(values, lambda: DecodingSettings.from_dict(values))


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.sampled_from(list(PRESETS)), st.text(max_size=15)),
    st.dictionaries(st.sampled_from(list(FIELDS)), VALUES, max_size=4),
)
def test_preset_with_overrides(name, overrides):
    count("fuzz: preset(name, **overrides)")
    check_outcome(overrides, lambda: preset(name, **overrides))


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["temperature", "top_p", "repetition_penalty"]), st.one_of(HUGE_INTS, st.integers(min_value=10**20))
)
def test_huge_integers_in_float_fields_are_a_message(name, value):
    """JSON has no size limit on integers: 10**400 for a float control must be a range message."""
    count("fuzz: huge integers in float fields")
    try:
        DecodingSettings.from_dict({name: value})
    except SettingsError as exc:
        assert [p.field for p in exc.problems] == [name]
    else:
        raise AssertionError(f"{name}={value} accepted")


NUMERIC = [name for name, spec in FIELDS.items() if spec.kind in (int, float)]
DIGITS = st.builds(
    lambda sign, head, n, pad: f"{pad}{sign}{head}{'0' * n}{pad}",
    st.sampled_from(["", "-", "+"]),
    st.integers(1, 9),
    st.integers(4290, 6000),
    st.sampled_from(["", " "]),
)
HUGE = st.one_of(
    st.builds(lambda e, k: k * 10**e, st.integers(4290, 6000), st.sampled_from([1, -1, 7])),
    DIGITS,
    DIGITS.map(lambda t: t.strip() + ".5"),
    DIGITS.map(lambda t: t.strip() + "e5"),
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(NUMERIC), HUGE)
def test_numbers_of_any_size_in_every_numeric_field(name, value):
    """Python refuses to convert a number of over 4,300 digits from or to text; that limit must
    never reach the user: each such value is that field's range message, of bounded length."""
    from kolyric.engine.settings import parse_float, parse_int

    count("fuzz: numbers of any size")
    try:
        DecodingSettings.from_dict({name: value})
    except SettingsError as exc:
        (problem,) = [p for p in exc.problems if p.field == name]
        assert FIELDS[name].describe_range() in problem.message and "Exceeds the limit" not in problem.message
        assert len(str(problem)) < 300
        json.dumps(problem.to_dict(), allow_nan=False)
    else:
        raise AssertionError(f"{name}={str(value)[:20]}… accepted")
    for parse in (lambda v: parse_int(v, 0, 100), lambda v: parse_float(v, 0, 100)):
        try:
            parse(value)
        except ValueError as exc:
            assert str(exc).startswith("must be ") and "Exceeds the limit" not in str(exc) and len(str(exc)) < 300
        else:
            raise AssertionError("accepted")
