"""What the server says about its inputs: every decoding control with its range and default,
the presets, the lyric constraints' fields and this server's limits (``GET /settings/schema``
and ``GET /presets``). Validation itself is ``kolyric.serve.schema``'s.
"""

from __future__ import annotations

import dataclasses

from kolyric.engine.settings import DEFAULT_PRESET, PRESETS, DecodingSettings, preset
from kolyric.engine.settings_fields import FIELDS
from kolyric.serve.schema import REQUEST_FIELDS, Limits

_JSON_TYPES: dict[type, str] = {
    int: "integer",
    float: "number",
    str: "string",
    bool: "boolean",
    tuple: "array of strings",
    dict: "object of phrase: number",
}
"""How each kind of control is written in a request body."""


def constraint_fields() -> dict[str, object]:
    """The lyric constraint fields and their defaults."""
    from kolyric.engine.lyric.spec import LyricConstraints

    out: dict[str, object] = {}
    for f in dataclasses.fields(LyricConstraints):
        if not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        out[f.name] = default if isinstance(default, (str, int, float, bool, type(None))) else repr(default)
    return out


def settings_schema(limits: Limits | None = None) -> dict[str, object]:
    """FIELDS with their ranges, the defaults, the request's other fields and this server's limits."""
    defaults = DecodingSettings().to_dict()
    out: dict[str, object] = {
        "settings": {
            name: {
                "type": _JSON_TYPES.get(spec.kind, spec.kind.__name__),
                "help": spec.help,
                "valid": spec.describe_range(),
                "low": spec.low,
                "high": spec.high,
                "low_open": spec.low_open,
                "choices": list(spec.choices) if spec.choices else None,
                "optional": spec.optional,
                "default": defaults.get(name),
                **({"max_items": spec.max_items, "max_chars": spec.max_chars} if spec.textual else {}),
            }
            for name, spec in FIELDS.items()
        },
        "request_fields": dict(REQUEST_FIELDS),
        "default_preset": DEFAULT_PRESET,
        "constraints": constraint_fields(),
    }
    if limits is not None:
        out["limits"] = limits.to_dict()
    return out


def presets_listing() -> dict[str, object]:
    """Every preset: the controls it sets and the full settings it gives."""
    return {
        "default": DEFAULT_PRESET,
        "presets": {
            name: {"sets": dict(values), "settings": preset(name).to_dict()} for name, values in PRESETS.items()
        },
    }


__all__ = ["constraint_fields", "presets_listing", "settings_schema"]
