"""One decoding control's type and range (``FieldSpec``), and reading untyped values into it:
the number and flag coercion every control shares, and quoting a value in a message.

Split from ``kolyric.engine.settings`` (which re-exports all of it) to keep each module short.
Nothing heavy is imported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Raw = object
"""An untyped value as it arrives (text from a CLI or form, JSON, TOML, Python)."""

MAX_NUMBER_CHARS = 100
"""Longest text read as a number. Anything longer is outside every range here, and converting
it could hit Python's 4,300-digit limit (a ValueError about int conversion instead of the
range message): its size is checked first."""
_SHOWN_CHARS = 60


@dataclass(frozen=True)
class FieldSpec:
    """The type and valid range of one control, with a line of help."""

    name: str
    kind: type  # int, float, str, bool; tuple: a list of strings; dict: phrase -> number
    help: str
    low: float | None = None  # for dict: the range of each number
    high: float | None = None
    low_open: bool = False  # True: the value must be strictly above `low`
    choices: tuple[str, ...] | None = None
    optional: bool = False  # None allowed (seed: None = a fresh random seed)
    max_items: int = 0  # tuple and dict: most entries
    max_chars: int = 0  # tuple and dict: longest string

    @property
    def textual(self) -> bool:
        """A list or phrase-bias field (its text form: items separated by ``|``)."""
        return self.kind in (tuple, dict)

    def describe_range(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind is bool:
            return "true or false (on/off)"
        if self.kind is tuple:
            return (
                f"a list of at most {self.max_items} non-empty strings of at most {self.max_chars} "
                "characters (text: separated by |)"
            )
        if self.kind is dict:
            return (
                f"at most {self.max_items} phrase=number pairs (text: separated by |), phrases of at most "
                f"{self.max_chars} characters, each number in [{_fmt(self.low)}, {_fmt(self.high)}]"
            )
        kind = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            left = "(" if self.low_open else "["
            text = f"{kind} in {left}{_fmt(self.low)}, {_fmt(self.high)}]"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {_fmt(self.low)}"
        else:
            text = kind
        if self.optional:
            text += ", or empty for a random seed"
        return text

    def contains(self, value: float) -> bool:
        low_bad = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        return not low_bad and not (self.high is not None and value > self.high)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


@dataclass(frozen=True)
class OversizedNumber:
    """A number whose text is too long to convert (JSON allows any length). Never in range."""

    digits: int

    def __repr__(self) -> str:
        return f"a {self.digits}-digit number"


def json_int(text: str) -> int | OversizedNumber:
    """``json.loads(parse_int=json_int)``: an integer, or an OversizedNumber past MAX_NUMBER_CHARS."""
    return int(text) if len(text) <= MAX_NUMBER_CHARS else OversizedNumber(len(text.lstrip("-")))


def shown(value: Raw) -> str:
    """A value as a message quotes it: its repr, shortened, and never a conversion error.

    ``repr`` of an integer over 4,300 digits raises ValueError, and a 5,000-character value
    would bury the message.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    if isinstance(value, str) and len(value) > _SHOWN_CHARS:
        return f"{value[:_SHOWN_CHARS]!r}… ({len(value)} characters)"
    try:
        text = repr(value)
    except ValueError:  # a container holding a huge integer
        return f"a {type(value).__name__} holding a number too long to show"
    return text if len(text) <= 2 * _SHOWN_CHARS else text[: 2 * _SHOWN_CHARS] + "…"


_TRUE = ("true", "on", "yes", "1", "keep")
_FALSE = ("false", "off", "no", "0", "trim")


def coerce(spec: FieldSpec, raw: Raw) -> tuple[bool, int | float | str | bool | None]:
    """Turn raw input into the field's type; (False, None) when it cannot be."""
    if spec.kind is bool:
        if isinstance(raw, bool):
            return True, raw
        word = raw.strip().lower() if isinstance(raw, str) else None
        return (True, word in _TRUE) if word in _TRUE + _FALSE else (False, None)
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none", "random")):
        return (True, None) if spec.optional else (False, None)
    if isinstance(raw, bool):  # bool is an int subclass; True is never a valid count
        return False, None
    if spec.kind is str:
        return (True, raw.strip().lower()) if isinstance(raw, str) else (False, None)
    if isinstance(raw, str):
        text = raw.strip()
        if len(text) > MAX_NUMBER_CHARS:  # out of every range; int() of it could raise another error
            return False, None
        try:
            raw = int(text) if spec.kind is int else float(text)
        except ValueError:
            try:
                raw = float(text)
            except ValueError:
                return False, None
    if spec.kind is int:
        if isinstance(raw, float):
            if not math.isfinite(raw) or not raw.is_integer():
                return False, None
            raw = int(raw)
        return (True, raw) if isinstance(raw, int) else (False, None)
    if isinstance(raw, (int, float)):
        try:
            value = float(raw)
        except OverflowError:  # an integer beyond any float (JSON allows 10**400)
            return False, None
        return (True, value) if math.isfinite(value) else (False, None)
    return False, None


def parse_int(raw: Raw, low: int, high: int) -> int:
    """``raw`` (text, as typed, or a number) as an integer in [low, high].

    Raises ValueError("must be an integer in [low, high], got …"): the same words as every
    decoding control, whatever was given (a 5,000-digit string included). Callers prefix the
    field's name.
    """
    return _parse(FieldSpec("value", int, "", low, high), raw)


def parse_float(raw: Raw, low: float, high: float, *, low_open: bool = False) -> float:
    """``raw`` as a finite number in [low, high] (``(low, high]`` with ``low_open``); ValueError as parse_int."""
    return _parse(FieldSpec("value", float, "", low, high, low_open=low_open), raw)


def _parse(spec: FieldSpec, raw: Raw) -> int | float:
    ok, value = coerce(spec, raw)
    if not ok or value is None or (isinstance(value, float) and not math.isfinite(value)) or not spec.contains(value):
        raise ValueError(f"must be {spec.describe_range()}, got {shown(raw)}")
    return value


__all__ = [
    "MAX_NUMBER_CHARS",
    "FieldSpec",
    "OversizedNumber",
    "coerce",
    "json_int",
    "parse_float",
    "parse_int",
    "shown",
]
