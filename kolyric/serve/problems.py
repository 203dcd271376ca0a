"""What is wrong with a request, as the server answers it: each problem's field, the value given
(echoed back shortened and as valid UTF-8), why, and what is valid; and the error that carries them
with its HTTP status. ``kolyric.serve.schema`` finds the problems; the settings' and the lyric
constraints' own problems are turned into these here, so their messages reach the client as they are.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kolyric.engine.settings import OversizedNumber, shown

if TYPE_CHECKING:
    from kolyric.engine.lyric.spec import ConstraintProblem
    from kolyric.engine.settings import Problem

_SHOWN_VALUE_CHARS = 120


@dataclass
class RequestProblem:
    """One thing wrong with a request: the field, what was given, why, and what is valid."""

    field: str
    value: object
    message: str
    valid: str | None = None
    limit: int | None = None
    """Set for size problems (answered 413 when they are the only problems)."""

    def to_dict(self) -> dict[str, object]:
        out = {
            "field": _safe(self.field),
            "value": _shown(self.value),
            "message": _safe(self.message),
            "valid": self.valid,
        }
        if self.limit is not None:
            out["limit"] = self.limit
        return out


class RequestError(Exception):
    """A request the server will not run: an HTTP status and every problem found."""

    def __init__(self, status: int, message: str, problems: list[RequestProblem] | None = None):
        self.status = status
        self.message = message
        self.problems = list(problems or [])
        super().__init__(message)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"error": self.message}
        if self.problems:
            out["problems"] = [p.to_dict() for p in self.problems]
        return out


def _safe(text: str) -> str:
    """Text that encodes as UTF-8 (JSON allows unpaired surrogates; a UTF-8 body cannot hold them)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _shown(value: object) -> object:
    """A value as it is echoed back: JSON scalars as they are, anything long or odd shortened."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, (bool, int, float, type(None))):
        small = not isinstance(value, int) or isinstance(value, bool) or value.bit_length() < 50
        return value if small else shown(value)
    if isinstance(value, OversizedNumber):
        return repr(value)
    try:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=repr)
    except ValueError:  # a container holding a number too long to print
        text = shown(value)
    if len(text) > _SHOWN_VALUE_CHARS:
        text = text[:_SHOWN_VALUE_CHARS] + f"… ({len(text)} characters)"
    return _safe(text)


def bad_unicode(text: str) -> str | None:
    """Why ``text`` cannot be generated from (an unpaired surrogate), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"holds an unpaired surrogate (\\u{ord(text[exc.start]):04x}) at character {exc.start}"
    return None


def from_settings_problem(problem: Problem) -> RequestProblem:
    d = problem.to_dict()
    return RequestProblem(d["field"], problem.value, d["message"], d.get("valid"))


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, OversizedNumber)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def constraint_problem(item: ConstraintProblem, raw: dict[str, object]) -> RequestProblem:
    d = item.to_dict()
    name = str(d.get("field", ""))
    return RequestProblem(
        f"constraints.{name}" if name else "constraints",
        d.get("value", raw.get(name)),
        str(d.get("message", item)),
        d.get("valid"),
    )


__all__ = [
    "RequestError",
    "RequestProblem",
    "bad_unicode",
    "constraint_problem",
    "from_settings_problem",
    "json_type",
]
