"""Decoding controls that hold text: lists of strings (stop strings, banned phrases, DRY's
sequence breakers) and phrase biases (phrase -> number), read from every form they arrive in.

A list arrives as a JSON array or a Python sequence (the server, a draft, ``to_dict``), as
repeated CLI flags (``--stop A --stop B``), or as one line of text (the app's field, a TOML
string): items separated by ``|``. In text, ``\\n`` is a line break, ``\\t`` a tab, ``\\|`` a
literal bar and ``\\\\`` a backslash; ``to_text`` writes that form back, so a value survives
a field edit unchanged. A bias is ``phrase=number`` (the last ``=`` divides), or an object
``{"사랑": -2.0}``, or ``[phrase, number]`` pairs.

Nothing here imports anything heavy: the app builds its controls from it before torch loads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

SEPARATOR = "|"
_ESCAPES = {"n": "\n", "t": "\t", "|": "|", "\\": "\\", "r": "\r"}
_WRITE = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "|": "\\|"}

Scalar = str | int | float | bool | None
Raw = Scalar | Sequence["Raw"] | Mapping[str, "Raw"]


def split_text(text: str) -> list[str]:
    """``a|b\\|c`` -> ["a", "b|c"]; escapes as the module says. Empty text is no item."""
    items: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPES:
            current.append(_ESCAPES[text[i + 1]])
            i += 2
            continue
        if ch == SEPARATOR:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    items.append("".join(current))
    if items == [""]:
        return []
    return items


def unescape(text: str) -> str:
    """One item as typed on a command line: the escapes of ``split_text``, no splitting."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPES:
            out.append(_ESCAPES[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def escape(item: str) -> str:
    return "".join(_WRITE.get(ch, ch) for ch in item)


def _bad_text(item: str) -> str | None:
    if not item:
        return "an empty string"
    try:
        item.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"a string with an unpaired surrogate at character {exc.start + 1}"
    if "\x00" in item:
        return "a string holding a NUL character"
    return None


def coerce_strings(raw: Raw, max_items: int, max_chars: int) -> tuple[tuple[str, ...] | None, str]:
    """(the strings, "") or (None, what is wrong)."""
    if raw is None:
        return (), ""
    if isinstance(raw, str):
        items: list[Raw] = list(split_text(raw))
    elif isinstance(raw, (list, tuple)):
        items = list(raw)
    else:
        return None, f"got {type(raw).__name__}"
    if len(items) > max_items:
        return None, f"got {len(items)} items"
    out: list[str] = []
    for n, item in enumerate(items, start=1):
        if not isinstance(item, str):
            return None, f"item {n} is {type(item).__name__}, not a string"
        why = _bad_text(item)
        if why:
            return None, f"item {n} is {why}"
        if len(item) > max_chars:
            return None, f"item {n} has {len(item)} characters"
        out.append(item)
    return tuple(dict.fromkeys(out)), ""  # each once, in the order given


def _number(raw: Raw) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str):
        text = raw.strip()
        if not text or len(text) > 40:
            return None
        try:
            raw = float(text)
        except ValueError:
            return None
    if isinstance(raw, (int, float)):
        try:
            value = float(raw)
        except OverflowError:
            return None
        return value if math.isfinite(value) else None
    return None


def coerce_bias(
    raw: Raw, max_items: int, max_chars: int, low: float, high: float
) -> tuple[tuple[tuple[str, float], ...] | None, str]:
    """(phrase, bias) pairs, or (None, what is wrong). A phrase given twice keeps its last bias."""
    if raw is None:
        return (), ""
    pairs: list[tuple[Raw, Raw]] = []
    if isinstance(raw, Mapping):
        pairs = list(raw.items())
    else:
        if isinstance(raw, str):
            entries: list[Raw] = list(split_text(raw))
        elif isinstance(raw, (list, tuple)):
            entries = list(raw)
        else:
            return None, f"got {type(raw).__name__}"
        for n, entry in enumerate(entries, start=1):
            if isinstance(entry, str):
                phrase, eq, value = entry.rpartition("=")
                if not eq:
                    return None, f"item {n} ({entry[:40]!r}) has no '=': write phrase=number"
                pairs.append((phrase, value))
            elif isinstance(entry, (list, tuple)) and len(entry) == 2:
                pairs.append((entry[0], entry[1]))
            else:
                return None, f"item {n} is not phrase=number"
    if len(pairs) > max_items:
        return None, f"got {len(pairs)} phrases"
    out: dict[str, float] = {}
    for n, (phrase, value) in enumerate(pairs, start=1):
        if not isinstance(phrase, str):
            return None, f"phrase {n} is {type(phrase).__name__}, not a string"
        phrase = phrase.strip()  # a phrase is matched wherever it is spelled, spaced or not
        why = _bad_text(phrase)
        if why:
            return None, f"phrase {n} is {why}"
        if len(phrase) > max_chars:
            return None, f"phrase {n} has {len(phrase)} characters"
        number = _number(value)
        if number is None or not low <= number <= high:
            shown_value = value if isinstance(value, (int, float)) else str(value)[:40]
            return None, f"the bias of {phrase[:40]!r} is {shown_value!r}"
        out.pop(phrase, None)
        out[phrase] = number
    return tuple(out.items()), ""


def to_text(value: tuple[str, ...] | tuple[tuple[str, float], ...]) -> str:
    """A list or bias value as the one line ``split_text`` / ``coerce_bias`` read back."""
    parts = []
    for item in value:
        if isinstance(item, tuple):
            phrase, number = item
            parts.append(f"{escape(phrase)}={int(number) if float(number).is_integer() else repr(float(number))}")
        else:
            parts.append(escape(item))
    return SEPARATOR.join(parts)


__all__ = ["coerce_bias", "coerce_strings", "escape", "split_text", "to_text", "unescape"]
