"""Request bodies in, ``GenerationRequest`` out: the server's input validation.

A body carries the same fields as ``kolyric generate``: ``prompt``, ``polarity``, ``preset``,
every decoding control by its settings name (``strategy``, ``top_k``, ``seed``, ``n`` …),
``context`` (earlier draft lines, oldest first) and ``constraints`` (the lyric constraints).
A ``settings`` object is accepted too, so the ``settings`` a result reports can be sent back
as they are to reproduce it.

The decoding controls are validated by ``DecodingSettings`` itself (``preset`` /
``from_dict``), the polarity by ``normalize_polarity`` and the constraints by their own
module, so the server answers with exactly the CLI's and the app's messages and ranges. Every
problem is collected before answering, and each names its field, the value given and what is
valid. Problems that are only about size (a prompt over the limit, too many candidates for
this server) answer 413; anything else 422.

Nothing heavy is imported here: parsing runs before, and without, torch.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from kolyric.engine.prompt import normalize_polarity
from kolyric.engine.settings import (
    DEFAULT_PRESET,
    PRESETS,
    DecodingSettings,
    SettingsError,
    json_int,
    preset,
    shown,
)
from kolyric.engine.settings_fields import FIELDS, MAX_SEED
from kolyric.serve.problems import (
    RequestError,
    RequestProblem,
    bad_unicode,
    constraint_problem,
    from_settings_problem,
    json_type,
)

if TYPE_CHECKING:
    from kolyric.engine.lyric.spec import LyricConstraints
    from kolyric.engine.results import GenerationRequest

# Top-level fields a body may carry besides the decoding controls (which are FIELDS' names).
REQUEST_FIELDS: dict[str, str] = {
    "prompt": "the line to continue (may be empty)",
    "polarity": "긍정, 부정 or none (also positive/negative)",
    "preset": f"named settings to start from: {', '.join(PRESETS)} (default {DEFAULT_PRESET})",
    "settings": "an object of decoding controls (as a result's `settings` reports them)",
    "context": "earlier draft lines, oldest first (a list of strings, or one string of lines)",
    "constraints": "lyric constraints (syllables, rhyme, lines, pattern, scheme, strict …), or null",
}


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server, and how many may wait."""

    max_prompt_chars: int = 2000
    """Longest prompt line, in characters."""
    max_context_lines: int = 64
    """Most draft lines sent as context."""
    max_context_chars: int = 8000
    """Longest context, all lines together, in characters."""
    max_n: int = 8
    """Most candidates per request (the settings allow up to 16; a server may allow fewer)."""
    max_new_tokens: int = 512
    """Largest ``max_length`` a request may ask for."""
    max_body_bytes: int = 65536
    """Largest request body."""
    queue_depth: int = 8
    """Requests that may wait while the workers are busy; beyond that: 503 with Retry-After."""
    workers: int = 1
    """Generations run at once (each on its own Generator over the one model in memory)."""
    max_connections: int = 64
    """Open connections served in full; past it: 503 with Retry-After (``/health`` still answers)."""
    header_timeout_s: float = 10.0
    """A request's whole head must arrive within this, however slowly it trickles in (else 408)."""
    body_timeout_s: float = 30.0
    """A request's whole body must arrive within this (else 408)."""

    def __post_init__(self) -> None:
        for name in (
            "max_prompt_chars",
            "max_context_lines",
            "max_context_chars",
            "max_n",
            "max_new_tokens",
            "max_body_bytes",
            "workers",
            "max_connections",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {shown(value)}")
        for name in ("header_timeout_s", "body_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
                raise ValueError(f"{name}: must be a number of seconds in (0, 3600], got {shown(value)}")
        if not isinstance(self.queue_depth, int) or isinstance(self.queue_depth, bool) or self.queue_depth < 0:
            raise ValueError(f"queue_depth: must be an integer >= 0, got {shown(self.queue_depth)}")
        if self.max_n > FIELDS["n"].high:
            raise ValueError(f"max_n: must be at most {int(FIELDS['n'].high)}, got {self.max_n}")
        if self.max_new_tokens > FIELDS["max_length"].high:
            raise ValueError(
                f"max_new_tokens: must be at most {int(FIELDS['max_length'].high)}, got {self.max_new_tokens}"
            )

    def to_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass
class ParsedRequest:
    request: GenerationRequest
    notes: list[str] = field(default_factory=list)


def decode_body(body: bytes) -> object:
    """The JSON document in ``body``; RequestError 400 when it is not JSON."""
    if not body.strip():
        raise RequestError(400, 'malformed JSON: the body is empty; send a JSON object such as {"prompt": "…"}')
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"malformed JSON: the body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        # Integers of any length are valid JSON; past MAX_NUMBER_CHARS digits they become an
        # OversizedNumber, which validation names with its field and range.
        return json.loads(text, parse_constant=_reject_constant, parse_int=json_int)
    except ValueError as exc:
        raise RequestError(400, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise RequestError(400, "malformed JSON: nested too deeply") from None


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def parse_generation(data: object, limits: Limits = Limits()) -> ParsedRequest:
    """Validate a decoded JSON body and build the GenerationRequest it asks for.

    Raises RequestError: 400 when the body is not an object, 413 when the only problems are
    sizes over this server's limits, 422 otherwise, with every problem listed.
    """
    from kolyric.engine.results import GenerationRequest

    if not isinstance(data, dict):
        raise RequestError(400, f"malformed request: the body must be a JSON object, got {json_type(data)}")
    problems: list[RequestProblem] = []
    known = list(REQUEST_FIELDS) + list(FIELDS)
    for key in data:
        if key not in REQUEST_FIELDS and key not in FIELDS:
            problems.append(RequestProblem(str(key), data[key], "unknown field", "one of " + ", ".join(known)))

    prompt = _string(data, "prompt", "", problems)
    if prompt is not None and bad_unicode(prompt):
        problems.append(
            RequestProblem("prompt", prompt, f"must be valid Unicode text: {bad_unicode(prompt)}", "a string")
        )
        prompt = None
    if prompt is not None and len(prompt) > limits.max_prompt_chars:
        problems.append(
            RequestProblem(
                "prompt",
                f"<{len(prompt)} characters>",
                f"the prompt is {len(prompt)} characters; this server allows at most {limits.max_prompt_chars}",
                f"at most {limits.max_prompt_chars} characters",
                limit=limits.max_prompt_chars,
            )
        )

    polarity = None
    raw_polarity = data.get("polarity")
    if raw_polarity is not None and not isinstance(raw_polarity, str):
        problems.append(
            RequestProblem(
                "polarity", raw_polarity, f"must be a string, got {json_type(raw_polarity)}", "긍정, 부정 or none"
            )
        )
    else:
        try:
            polarity = normalize_polarity(raw_polarity)
        except ValueError as exc:
            problems.append(
                RequestProblem("polarity", raw_polarity, _strip_field(str(exc), "polarity"), "긍정, 부정 or none")
            )

    context = _context(data.get("context"), limits, problems)
    settings = _settings(data, limits, problems)
    constraints = _constraints(data.get("constraints"), problems)

    if problems:
        sizes_only = all(p.limit is not None for p in problems)
        if sizes_only:
            raise RequestError(413, "request too large for this server", problems)
        raise RequestError(422, "invalid request", problems)
    assert settings is not None
    if settings.seed is None:  # fixed here so the stream's first event can report it
        settings = replace(settings, seed=secrets.randbelow(MAX_SEED + 1))
    nested = data.get("settings")
    chosen = "max_length" in data or (isinstance(nested, dict) and "max_length" in nested)
    if constraints is not None and not chosen:
        # What the lines need, within this server's limit: the engine's own fit could pass it.
        fitted = min(constraints.length_budget(), limits.max_new_tokens)
        settings, chosen = replace(settings, max_length=max(settings.max_length, fitted)), True
    request = GenerationRequest(
        prompt or "", polarity, settings, context=context, constraints=constraints, max_length_set=chosen
    )
    return ParsedRequest(request, settings.notes())


def _strip_field(message: str, name: str) -> str:
    prefix = f"{name}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _string(data: Mapping[str, object], name: str, default: str, problems: list[RequestProblem]) -> str | None:
    value = data.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        problems.append(RequestProblem(name, value, f"must be a string, got {json_type(value)}", "a string"))
        return None
    return value


def _context(raw: object, limits: Limits, problems: list[RequestProblem]) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        lines = [line for line in raw.splitlines() if line.strip()]
    elif isinstance(raw, list):
        bad = [i for i, line in enumerate(raw) if not isinstance(line, str)]
        if bad:
            problems.append(
                RequestProblem(
                    "context",
                    raw,
                    f"every line must be a string; item {bad[0]} is {json_type(raw[bad[0]])}",
                    "a list of strings, or one string of lines",
                )
            )
            return ()
        lines = [line for line in raw if line.strip()]
    else:
        problems.append(
            RequestProblem(
                "context",
                raw,
                f"must be a list of strings or a string, got {json_type(raw)}",
                "a list of strings, or one string of lines",
            )
        )
        return ()
    for i, line in enumerate(lines):
        why = bad_unicode(line)
        if why:
            problems.append(RequestProblem("context", raw, f"line {i} {why}", "a list of strings"))
            return ()
    if len(lines) > limits.max_context_lines:
        problems.append(
            RequestProblem(
                "context",
                f"<{len(lines)} lines>",
                f"{len(lines)} context lines; this server allows at most {limits.max_context_lines}",
                f"at most {limits.max_context_lines} lines",
                limit=limits.max_context_lines,
            )
        )
    chars = sum(len(line) for line in lines)
    if chars > limits.max_context_chars:
        problems.append(
            RequestProblem(
                "context",
                f"<{chars} characters>",
                f"the context is {chars} characters; this server allows at most {limits.max_context_chars}",
                f"at most {limits.max_context_chars} characters",
                limit=limits.max_context_chars,
            )
        )
    return tuple(lines)


def _settings(data: Mapping[str, object], limits: Limits, problems: list[RequestProblem]) -> DecodingSettings | None:
    """Preset + controls through the settings' own validation; server limits on top."""
    overrides: dict[str, object] = {}
    nested = data.get("settings")
    if nested is not None and not isinstance(nested, dict):
        problems.append(
            RequestProblem(
                "settings", nested, f"must be an object, got {json_type(nested)}", "an object of decoding controls"
            )
        )
    elif nested:
        overrides.update(nested)
    for name in FIELDS:
        if name in data:
            if name in overrides:
                problems.append(
                    RequestProblem(
                        name,
                        data[name],
                        "given both at the top level and in `settings`; give it once",
                        FIELDS[name].describe_range(),
                    )
                )
                continue
            overrides[name] = data[name]

    raw_preset = data.get("preset", DEFAULT_PRESET)
    if raw_preset is None:
        raw_preset = DEFAULT_PRESET
    if not isinstance(raw_preset, str):
        problems.append(
            RequestProblem(
                "preset", raw_preset, f"must be a string, got {json_type(raw_preset)}", "one of " + ", ".join(PRESETS)
            )
        )
        raw_preset = DEFAULT_PRESET
    unknown = {k: v for k, v in overrides.items() if k not in FIELDS}
    if unknown:  # reported with the settings' own message (and kept out of preset()'s keywords)
        try:
            DecodingSettings.from_dict(unknown)
        except SettingsError as exc:
            problems.extend(from_settings_problem(p) for p in exc.problems)
        overrides = {k: v for k, v in overrides.items() if k in FIELDS}
    settings = None
    try:
        settings = preset(raw_preset, **overrides)
    except SettingsError as exc:
        problems.extend(from_settings_problem(p) for p in exc.problems)
        if any(p.field == "preset" for p in exc.problems) and overrides:
            # an unknown preset stops preset(); check the controls too, so every problem is listed
            try:
                DecodingSettings.from_dict(overrides)
            except SettingsError as more:
                problems.extend(from_settings_problem(p) for p in more.problems)
        return None
    if settings.n > limits.max_n:
        problems.append(
            RequestProblem(
                "n",
                settings.n,
                f"{settings.n} candidates; this server allows at most {limits.max_n} per request",
                f"an integer in [1, {limits.max_n}]",
                limit=limits.max_n,
            )
        )
    if settings.max_length > limits.max_new_tokens:
        problems.append(
            RequestProblem(
                "max_length",
                settings.max_length,
                f"{settings.max_length} new tokens; this server allows at most {limits.max_new_tokens}",
                f"an integer in [1, {limits.max_new_tokens}]",
                limit=limits.max_new_tokens,
            )
        )
    return settings


def _constraints(raw: object, problems: list[RequestProblem]) -> LyricConstraints | None:
    """Lyric constraints, validated by ``LyricConstraints.from_dict`` (its messages go back to the client)."""
    from kolyric.engine.lyric.spec import ConstraintError, LyricConstraints

    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append(
            RequestProblem(
                "constraints",
                raw,
                f"must be an object or null, got {json_type(raw)}",
                "an object of lyric constraints, or null",
            )
        )
        return None
    if not raw:
        return None
    try:
        return LyricConstraints.from_dict(raw)
    except ConstraintError as exc:
        problems.extend(constraint_problem(item, raw) for item in exc.problems)
        return None


__all__ = [
    "Limits",
    "ParsedRequest",
    "REQUEST_FIELDS",
    "decode_body",
    "parse_generation",
]
