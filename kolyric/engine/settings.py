"""Decoding settings: one typed object, its validation and the named presets.

The valid ranges are in ``kolyric.engine.settings_fields.FIELDS``; ``DecodingSettings``
checks every value against them, so an instance is always valid. Lengths count **new
tokens**; the tutorial's `min_length`/`max_length` counted the prompt too.

This module imports nothing heavy: the app builds its controls from it before torch loads.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

from kolyric.engine import settings_lists
from kolyric.engine.fields import (
    _SHOWN_CHARS,
    MAX_NUMBER_CHARS,
    FieldSpec,
    OversizedNumber,
    coerce,
    json_int,
    parse_float,
    parse_int,
    shown,
)
from kolyric.engine.settings_fields import FIELDS, Strategy


@dataclass(frozen=True)
class Problem:
    """One invalid value: the field, what was given and what is valid."""

    field: str
    value: object
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        spec = FIELDS.get(self.field)
        value = self.value if isinstance(self.value, (int, float, str, bool, type(None))) else shown(self.value)
        if isinstance(value, float) and not math.isfinite(value):
            value = repr(value)
        elif (isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64) or (
            isinstance(value, str) and len(value) > _SHOWN_CHARS
        ):
            value = shown(value)
        return {
            "field": self.field,
            "value": value,
            "message": self.message,
            "valid": spec.describe_range() if spec else None,
        }


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
    min_p: float = 0.0
    """Min-p: tokens below min_p times the best token's probability are removed; 0 turns it off."""
    typical_p: float = 1.0
    """Locally typical sampling's mass; 1 turns it off."""
    epsilon: float = 0.0
    """Epsilon cutoff (an absolute probability floor); 0 turns it off."""
    eta: float = 0.0
    """Eta cutoff (an entropy-scaled floor); 0 turns it off."""
    top_n_sigma: float = 0.0
    """Top-nσ: scores more than n standard deviations below the best are removed; 0 turns it off."""
    xtc_probability: float = 0.0
    """XTC: the chance per token of excluding the top choices; 0 turns it off."""
    xtc_threshold: float = 0.1
    """XTC: the probability that makes a token a top choice."""
    dry_multiplier: float = 0.0
    """DRY's penalty multiplier; 0 turns it off."""
    dry_base: float = 1.75
    """DRY: growth of the penalty per token of a repeat beyond the allowed length."""
    dry_allowed_length: int = 2
    """DRY: the longest repeat (in tokens) left unpenalised."""
    dry_breakers: tuple[str, ...] = ("\n", ":", '"', "*")
    """DRY: a repeat is never matched across a token whose text holds one of these."""
    dynatemp_range: float = 0.0
    """Dynamic temperature: the temperature spans temperature ± this; 0 turns it off."""
    dynatemp_exponent: float = 1.0
    """Dynamic temperature: the exponent on the normalised entropy."""
    mirostat_tau: float = 0.0
    """Mirostat v2's target surprise (bits per token); 0 turns it off."""
    mirostat_eta: float = 0.1
    """Mirostat v2's learning rate."""
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
    def from_dict(cls, values: Mapping[str, object], base: DecodingSettings | None = None) -> DecodingSettings:
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
                    # what is wrong first: a narrow panel shows the message's start
                    problems.append(Problem(key, raw, f"{why}; must be {spec.describe_range()}"))
                    continue
                merged[key] = value
                continue
            ok, value = coerce(spec, raw)
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

    def replace(self, **changes: object) -> DecodingSettings:
        return DecodingSettings.from_dict(changes, base=self)

    def to_dict(self) -> dict[str, object]:
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
            defaults = _defaults()
            for name in SAMPLING_ONLY:
                if getattr(self, name) != defaults[name]:
                    out.append(f"{name} only applies to sampling; strategy is {self.strategy}")
        return out


SAMPLING_ONLY = (
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "epsilon",
    "eta",
    "top_n_sigma",
    "xtc_probability",
    "dynatemp_range",
    "mirostat_tau",
)
"""Controls that only the sampling strategy reads (the penalties, bias, stop and ban apply to all)."""


def summary(values: Mapping[str, object]) -> str:
    """The settings a candidate was made with, as a preview line: the strategy, then every
    control set away from its default that the strategy reads ("strategy sample, temperature
    0.9, min_p 0.1, dry_multiplier 0.8, ban 밤"). ``values``: a stored settings mapping (older
    files may lack fields)."""
    defaults = _defaults()
    strategy = values.get("strategy", defaults["strategy"])
    core = {"sample": ("temperature", "top_k", "top_p"), "beam": ("num_beams",)}.get(str(strategy), ())
    shown = [f"strategy {strategy}"]
    for name, default in defaults.items():
        if name in ("strategy", "seed", "n", "alternatives") or name not in values or name not in FIELDS:
            continue
        if (name in SAMPLING_ONLY and strategy != "sample") or (name == "num_beams" and strategy != "beam"):
            continue
        value = values[name]
        if isinstance(value, list) and isinstance(default, tuple):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        unchanged = value == default or (isinstance(value, Mapping) and tuple(value.items()) == default)
        if unchanged and name not in core:  # the strategy's own knobs are always shown
            continue
        shown.append(f"{name} {text_form(name, value) if FIELDS[name].textual else value}")
    return ", ".join(shown)


def _defaults() -> dict[str, object]:
    return {f.name: f.default for f in dataclasses.fields(DecodingSettings)}


def _coerce_textual(spec: FieldSpec, raw: object) -> tuple[tuple | None, str]:
    """A list or bias field's value from any of its forms; (None, what is wrong) when it cannot be."""
    if spec.kind is dict:
        return settings_lists.coerce_bias(raw, spec.max_items, spec.max_chars, spec.low, spec.high)
    return settings_lists.coerce_strings(raw, spec.max_items, spec.max_chars)


def check(values: Mapping[str, object]) -> list[Problem]:
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
        problems.append(
            Problem(
                "min_length",
                values["min_length"],
                f"must be <= max_length ({values['max_length']}), got {values['min_length']}",
            )
        )
    if values["strategy"] == "greedy" and values["n"] != 1:
        problems.append(
            Problem(
                "n", values["n"], "greedy decoding gives one candidate: n must be 1 (use beam or sample for several)"
            )
        )
    if values["strategy"] == "beam" and values["n"] > values["num_beams"]:
        problems.append(
            Problem(
                "n",
                values["n"],
                f"beam search returns at most num_beams ({values['num_beams']}) candidates, got {values['n']}",
            )
        )
    return problems


def _typed_ok(spec: FieldSpec, value: object) -> bool:
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


def text_form(name: str, value: object) -> str:
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
PRESETS: dict[str, dict[str, object]] = {
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
    "combined": {
        "strategy": "sample",
        "repetition_penalty": 1.5,
        "no_repeat_ngram_size": 3,
        "temperature": 0.9,
        "top_k": 50,
        "top_p": 0.92,
    },
    # for lyrics: min-p keeps sampling coherent at a temperature that makes word choices fresh
    "lyrics-min-p": {"strategy": "sample", "top_k": 0, "temperature": 1.3, "min_p": 0.1},
    # DRY instead of a hard no-repeat rule: a word or a short refrain may come back, a line looping
    # on does not (a line break is no breaker here, so a repeat is followed across lines)
    "lyrics-dry": {
        "strategy": "sample",
        "temperature": 0.9,
        "top_k": 50,
        "top_p": 0.92,
        "repetition_penalty": 1.1,
        "dry_multiplier": 0.8,
        "dry_base": 1.75,
        "dry_allowed_length": 3,
        "dry_breakers": (":", '"', "*"),
    },
    "lyrics-xtc": {
        "strategy": "sample",
        "top_k": 0,
        "temperature": 1.0,
        "min_p": 0.05,
        "xtc_probability": 0.5,
        "xtc_threshold": 0.1,
        "dry_multiplier": 0.8,
    },
    "mirostat": {"strategy": "sample", "top_k": 0, "mirostat_tau": 5.0, "mirostat_eta": 0.1},
}
DEFAULT_PRESET = "combined"


def preset(name: str, **overrides: object) -> DecodingSettings:
    """The named preset over the defaults, with overrides applied (all validated)."""
    key = name.strip().lower()
    if key not in PRESETS:
        raise SettingsError([Problem("preset", name, f"unknown preset; one of {', '.join(PRESETS)}")])
    return DecodingSettings.from_dict({**PRESETS[key], **overrides})


__all__ = [
    "DEFAULT_PRESET",
    "MAX_NUMBER_CHARS",
    "PRESETS",
    "SAMPLING_ONLY",
    "DecodingSettings",
    "FieldSpec",
    "OversizedNumber",
    "Problem",
    "SettingsError",
    "check",
    "json_int",
    "parse_float",
    "parse_int",
    "preset",
    "shown",
    "summary",
    "text_form",
]
