"""Prompts in, clean text out.

The polarity word is the training-time prefix (``긍정 …`` / ``부정 …``), exactly as the
tutorial and ``kolyric train`` put it before each review. Output shown to a person never
holds the prefix, ``</s>`` or padding; ``<unk>`` is shown as ``⁇`` so a gap is visible.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

POLARITIES = ("긍정", "부정")
POLARITY_ALIASES = {
    "긍정": "긍정", "positive": "긍정", "pos": "긍정", "+": "긍정",
    "부정": "부정", "negative": "부정", "neg": "부정", "-": "부정",
    "none": None, "": None, "없음": None,
}
UNK_SHOWN = "⁇"


def normalize_polarity(value: str | None) -> str | None:
    """``긍정``/``부정``/None from the forms users type; ValueError naming the field otherwise."""
    if value is None:
        return None
    key = str(value).strip().lower()
    if key not in POLARITY_ALIASES:
        raise ValueError(f"polarity: must be 긍정, 부정 or none, got {value!r}")
    return POLARITY_ALIASES[key]


def prefix_text(polarity: str | None) -> str:
    """The text put before the line: ``"긍정 "``, ``"부정 "`` or nothing."""
    polarity = normalize_polarity(polarity)
    return f"{polarity} " if polarity else ""


def line_separator(tokenizer: Any) -> str:
    """How draft lines are joined in a prompt: a newline if the vocabulary knows it, else a space.

    A model trained only on single-line reviews maps ``\\n`` to ``<unk>``; a space keeps the
    context readable to it.
    """
    ids = tokenizer.encode("가\n나", add_special_tokens=False)
    return "\n" if tokenizer.unk_token_id not in ids else " "


def prompt_body(line: str, context: Sequence[str] = (), separator: str = "\n") -> str:
    """The draft lines before the prompt line (oldest first), then the line itself."""
    parts = [c.strip() for c in context if c.strip()]
    if line.strip():
        parts.append(line.strip())
    return separator.join(parts)


_SPECIALS_RE = re.compile(r"</s>|<s>|<pad>|<usr>|<sys>|<mask>")
# Control characters (escape sequences!) from a model's byte tokens must not reach a terminal.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_piece(text: str, unk_token: str | None = "<unk>") -> str:
    """A streamed piece with special tokens removed and ``<unk>`` made visible."""
    if unk_token:
        text = text.replace(unk_token, UNK_SHOWN)
    return _CONTROL_RE.sub("", _SPECIALS_RE.sub("", text))


def clean_output(text: str, unk_token: str | None = "<unk>") -> str:
    """Final display text: specials removed, ``<unk>`` visible, runs of spaces folded, ends trimmed."""
    text = clean_piece(text, unk_token)
    text = re.sub(r"[ \t\u00a0]+", " ", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()
