"""Fuzzed lyric constraints: ``LyricConstraints.from_dict`` with values of any type and size
(integers of 5,000 digits, as ints or text), as the CLI, the server's JSON and a draft file hand
them over. Each case is a valid object or a ``ConstraintError`` whose every problem names a
known field in one short line: never Python's int() limit or another exception."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kolyric.engine.lyric.spec import ConstraintError, LyricConstraints

from tests.reliability._util import count

FIELDS = [f.name for f in dataclasses.fields(LyricConstraints) if f.init]
HUGE = st.sampled_from(
    [
        10**5000,
        -(10**5000),
        "9" * 5000,
        "-" + "9" * 5000,
        "8-" * 3000 + "8",
        ["9" * 5000],
        [10**400, 7],
        "x" * 5000,
        "1" * 19,
        2**64,
    ]
)
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HUGE,
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-2, max_value=45),
    st.text(max_size=12),
    st.lists(st.one_of(st.integers(), st.text(max_size=3)), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
BODIES = st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=8)), VALUES, max_size=5)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BODIES)
def test_any_constraint_body_is_an_object_or_named_problems(body):
    count("fuzz: constraint bodies")
    try:
        made = LyricConstraints.from_dict(body)
    except ConstraintError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.field in FIELDS or problem.field in map(str, body) or problem.field.startswith(("'", '"'))
            assert len(str(problem)) < 400 and "\n" not in str(problem)
        return
    for name in FIELDS:
        value = getattr(made, name)
        assert not isinstance(value, int) or isinstance(value, bool) or abs(value) < 10**6
