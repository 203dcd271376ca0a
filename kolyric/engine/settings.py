"""Decoding settings: one typed object, its valid ranges, validation and the named presets.

Everything that shows or accepts a decoding control (the CLI flags, the app's controls
panel, the HTTP server's JSON) reads the ranges from ``FIELDS`` here, so a range is stated
once. Lengths count **new tokens** (the prompt, the polarity prefix and draft context are
not included); the tutorial's `min_length`/`max_length` counted the prompt too.

This module imports nothing heavy: the app builds its controls from it before torch loads.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from kolyric.engine import settings_lists

Strategy = Literal["greedy", "beam", "sample"]
STRATEGIES: tuple[str, ...] = ("greedy", "beam", "sample")
MAX_SEED = 2**32 - 1
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
            return (f"a list of at most {self.max_items} non-empty strings of at most {self.max_chars} "
                    "characters (text: separated by |)")
        if self.kind is dict:
            return (f"at most {self.max_items} phrase=number pairs (text: separated by |), phrases of at most "
                    f"{self.max_chars} characters, each number in [{_fmt(self.low)}, {_fmt(self.high)}]")
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


def shown(value: Any) -> str:
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
    return text if len(text) <= 2 * _SHOWN_CHARS else text[:2 * _SHOWN_CHARS] + "…"


FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec("strategy", str, "greedy: most likely token; beam: beam search; sample: random sampling",
                  choices=STRATEGIES),
        FieldSpec("num_beams", int, "beams kept by beam search", 2, 16),
        FieldSpec("top_k", int, "sample only from the k most likely tokens (0 = off)", 0, 51200),
        FieldSpec("top_p", float, "sample from the smallest set of tokens whose probability reaches p (1 = off)",
                  0.0, 1.0, low_open=True),
        FieldSpec("temperature", float, "divide the logits by this before sampling (<1 sharper, >1 flatter)",
                  0.0, 1e6, low_open=True),
        FieldSpec("repetition_penalty", float, "penalise tokens already in the text (1 = off)", 1.0, 10.0),
        FieldSpec("no_repeat_ngram_size", int, "never repeat an n-gram of this size (0 = off)", 0, 10),
        FieldSpec("min_length", int, "new tokens before the end token is allowed", 0, 1024),
        FieldSpec("max_length", int, "most new tokens to generate", 1, 1024),
        FieldSpec("seed", int, "random seed; the same seed and settings give the same text", 0, MAX_SEED,
                  optional=True),
        FieldSpec("n", int, "number of candidates", 1, 16),
        FieldSpec("stop", tuple, "end a candidate where its text contains one of these strings", max_items=16,
                  max_chars=64),
        FieldSpec("keep_stop", bool, "keep the stop string that ended a candidate in its text (off: trim it)"),
        FieldSpec("ban", tuple, "words or phrases that never appear in the output, however they are spelled "
                  "in tokens", max_items=128, max_chars=64),
        FieldSpec("bias", dict, "raise (+) or lower (-) the log-probability of words or phrases, e.g. 사랑=-2",
                  -100.0, 100.0, max_items=128, max_chars=64),
        FieldSpec("alternatives", int, "top alternatives shown for each token", 1, 20),
    )
}


@dataclass(frozen=True)
class Problem:
    """One invalid value: the field, what was given and what is valid."""

    field: str
    value: Any
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        spec = FIELDS.get(self.field)
        value = self.value if isinstance(self.value, (int, float, str, bool, type(None))) else shown(self.value)
        if isinstance(value, float) and not math.isfinite(value):
            value = repr(value)
        elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
            value = shown(value)
        elif isinstance(value, str) and len(value) > _SHOWN_CHARS:
            value = shown(value)
        return {"field": self.field, "value": value, "message": self.message,
                "valid": spec.describe_range() if spec else None}


class SettingsError(ValueError):
    """Raised with every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class DecodingSettings:
    """How to pick each next token. Construction validates: an instance is always valid."""

    strategy: Strategy = "sample"
    """greedy, beam or sample."""
    num_beams: int = 3
    """Beams kept by beam search (used when strategy is beam)."""
    top_k: int = 50
    """Keep only the k most likely tokens when sampling; 0 turns it off."""
    top_p: float = 1.0
    """Nucleus sampling: keep the most likely tokens up to this total probability; 1 turns it off."""
    temperature: float = 1.0
    """Logits are divided by this before sampling."""
    repetition_penalty: float = 1.0
    """Tokens already present are made less likely by this factor; 1 turns it off."""
    no_repeat_ngram_size: int = 0
    """No n-gram of this many tokens appears twice; 0 turns it off."""
    min_length: int = 0
    """New tokens that must be generated before the end token may be chosen."""
    max_length: int = 40
    """Most new tokens generated (the prompt is not counted)."""
    seed: int | None = None
    """Random seed; None picks a fresh one (reported back with the result)."""
    n: int = 1
    """Number of candidates."""
    stop: tuple[str, ...] = ()
    """A candidate ends where its text contains one of these (also across tokens)."""
    keep_stop: bool = False
    """Keep the stop string in the candidate's text; False trims it."""
    ban: tuple[str, ...] = ()
    """Words and phrases that never appear in the output."""
    bias: tuple[tuple[str, float], ...] = ()
    """(phrase, bias) pairs: added to the log-probability of every token sequence spelling the phrase."""
    alternatives: int = 5
    """Top alternatives the inspector shows for each token."""

    def __post_init__(self) -> None:
        # Lists and a bias mapping given in code become the tuples an instance holds (hashable,
        # comparable); anything else is left for check() to name.
        for name, spec in FIELDS.items():
            value = getattr(self, name)
            if spec.textual and isinstance(value, (Mapping, list, tuple)):
                found, _ = _coerce_textual(spec, value)
                if found is not None:
                    object.__setattr__(self, name, found)
        problems = check(dataclasses.asdict(self))
        if problems:
            raise SettingsError(problems)

    @property
    def bias_map(self) -> dict[str, float]:
        return dict(self.bias)

    # -- construction from untyped input (CLI strings, TOML, JSON, form fields) --------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any], base: "DecodingSettings | None" = None) -> "DecodingSettings":
        """Coerce and validate ``values`` over ``base`` (default: the class defaults).

        Raises SettingsError listing every unknown field, bad type and out-of-range value.
        """
        merged = dataclasses.asdict(base) if base is not None else _defaults()
        problems: list[Problem] = []
        for key, raw in values.items():
            if key not in FIELDS:
                problems.append(Problem(str(key), raw, f"unknown setting; known: {', '.join(FIELDS)}"))
                continue
            spec = FIELDS[key]
            if spec.textual:
                value, why = _coerce_textual(spec, raw)
                if value is None:
                    problems.append(Problem(key, raw, f"must be {spec.describe_range()}; {why}"))
                    continue
                merged[key] = value
                continue
            ok, value = _coerce(spec, raw)
            if not ok:
                problems.append(Problem(key, raw, f"must be {spec.describe_range()}, got {shown(raw)}"))
                continue
            merged[key] = value
        if problems:
            # report range problems of the well-typed fields too, so the user sees all at once
            known = {k: v for k, v in merged.items() if k not in {p.field for p in problems}}
            problems += check({**_defaults(), **known})
            raise SettingsError(problems)
        return cls(**merged)

    def replace(self, **changes: Any) -> "DecodingSettings":
        return DecodingSettings.from_dict(changes, base=self)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: lists of strings as lists, the bias as an object; ``from_dict`` reads it back."""
        out = dataclasses.asdict(self)
        for name, spec in FIELDS.items():
            if spec.kind is tuple:
                out[name] = list(out[name])
            elif spec.kind is dict:
                out[name] = dict(out[name])
        return out

    def notes(self) -> list[str]:
        """Controls that are set but have no effect under this strategy (shown, not errors)."""
        out = []
        if self.strategy != "sample":
            for name, neutral in (("temperature", 1.0), ("top_k", 50), ("top_p", 1.0)):
                if getattr(self, name) != neutral:
                    out.append(f"{name} only applies to sampling; strategy is {self.strategy}")
        return out


def _defaults() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(DecodingSettings)}


def _coerce_textual(spec: FieldSpec, raw: Any) -> tuple[Any, str]:
    """A list or bias field's value from any of its forms; (None, what is wrong) when it cannot be."""
    if spec.kind is dict:
        return settings_lists.coerce_bias(raw, spec.max_items, spec.max_chars, spec.low, spec.high)
    return settings_lists.coerce_strings(raw, spec.max_items, spec.max_chars)


_TRUE = ("true", "on", "yes", "1", "keep")
_FALSE = ("false", "off", "no", "0", "trim")


def _coerce(spec: FieldSpec, raw: Any) -> tuple[bool, Any]:
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


def parse_int(raw: Any, low: int, high: int) -> int:
    """``raw`` (text, as typed, or a number) as an integer in [low, high].

    Raises ValueError("must be an integer in [low, high], got …"): the same words as every
    decoding control, whatever was given (a 5,000-digit string included). Callers prefix the
    field's name.
    """
    return _parse(FieldSpec("value", int, "", low, high), raw)


def parse_float(raw: Any, low: float, high: float, *, low_open: bool = False) -> float:
    """``raw`` as a finite number in [low, high] (``(low, high]`` with ``low_open``); ValueError as parse_int."""
    return _parse(FieldSpec("value", float, "", low, high, low_open=low_open), raw)


def _parse(spec: FieldSpec, raw: Any) -> Any:
    ok, value = _coerce(spec, raw)
    if not ok or value is None or (isinstance(value, float) and not math.isfinite(value)) or not spec.contains(value):
        raise ValueError(f"must be {spec.describe_range()}, got {shown(raw)}")
    return value


def check(values: Mapping[str, Any]) -> list[Problem]:
    """Every problem in a full set of typed values (ranges and cross-field rules)."""
    problems: list[Problem] = []
    for name, spec in FIELDS.items():
        value = values.get(name)
        if value is None and spec.optional:
            continue
        if spec.textual or spec.kind is bool:
            if not _typed_ok(spec, value):
                problems.append(Problem(name, value, f"must be {spec.describe_range()}, got {shown(value)}"))
            continue
        if spec.choices is not None:
            if value not in spec.choices:
                problems.append(Problem(name, value, f"must be {spec.describe_range()}, got {shown(value)}"))
            continue
        typed = isinstance(value, (int, float)) and not isinstance(value, bool)
        if spec.kind is int and not isinstance(value, int):
            typed = False
        if not typed or (isinstance(value, float) and not math.isfinite(value)) or not spec.contains(value):
            problems.append(Problem(name, value, f"must be {spec.describe_range()}, got {shown(value)}"))
    if problems:
        return problems
    if values["min_length"] > values["max_length"]:
        problems.append(Problem("min_length", values["min_length"],
                                f"must be <= max_length ({values['max_length']}), got {values['min_length']}"))
    if values["strategy"] == "greedy" and values["n"] != 1:
        problems.append(Problem("n", values["n"], "greedy decoding gives one candidate: n must be 1 "
                                "(use beam or sample for several)"))
    if values["strategy"] == "beam" and values["n"] > values["num_beams"]:
        problems.append(Problem("n", values["n"], f"beam search returns at most num_beams "
                                f"({values['num_beams']}) candidates, got {values['n']}"))
    return problems


def _typed_ok(spec: FieldSpec, value: Any) -> bool:
    """Whether a bool, list or bias field holds a value of its typed form (a tuple) or its JSON form."""
    if spec.kind is bool:
        return isinstance(value, bool)
    if isinstance(value, list):  # the JSON form (to_dict) holds lists and a bias object
        value = tuple(value)
    elif isinstance(value, dict) and spec.kind is dict:
        value = tuple(value.items())
    if not isinstance(value, tuple):
        return False
    found, _ = _coerce_textual(spec, value)
    return found == value


def text_form(name: str, value: Any) -> str:
    """A field's value as a one-line text field shows it (``from_dict`` reads it back)."""
    spec = FIELDS[name]
    if spec.kind is bool:
        return "on" if value else "off"
    if spec.textual:
        if isinstance(value, Mapping):
            value = tuple(value.items())
        return settings_lists.to_text(tuple(value))
    return "" if value is None else str(value)


# -- presets: the tutorial's runs, by name ------------------------------------------------------
PRESETS: dict[str, dict[str, Any]] = {
    "greedy": {"strategy": "greedy"},
    "beam-3": {"strategy": "beam", "num_beams": 3},
    "no-repeat-3": {"strategy": "greedy", "no_repeat_ngram_size": 3},
    "repetition-1.1": {"strategy": "greedy", "no_repeat_ngram_size": 3, "repetition_penalty": 1.1},
    "repetition-1.2": {"strategy": "greedy", "no_repeat_ngram_size": 3, "repetition_penalty": 1.2},
    "repetition-1.5": {"strategy": "greedy", "no_repeat_ngram_size": 3, "repetition_penalty": 1.5},
    "top-k-50": {"strategy": "sample", "top_k": 50},
    "temperature-0.01": {"strategy": "sample", "top_k": 50, "temperature": 0.01},
    "temperature-1.5": {"strategy": "sample", "top_k": 50, "temperature": 1.5},
    "top-p-0.92": {"strategy": "sample", "top_p": 0.92},
    "top-p-0.8": {"strategy": "sample", "top_p": 0.8},
    "combined": {"strategy": "sample", "repetition_penalty": 1.5, "no_repeat_ngram_size": 3,
                 "temperature": 0.9, "top_k": 50, "top_p": 0.92},
}
DEFAULT_PRESET = "combined"


def preset(name: str, **overrides: Any) -> DecodingSettings:
    """The named preset over the defaults, with overrides applied (all validated)."""
    key = name.strip().lower()
    if key not in PRESETS:
        raise SettingsError([Problem("preset", name, f"unknown preset; one of {', '.join(PRESETS)}")])
    return DecodingSettings.from_dict({**PRESETS[key], **overrides})
