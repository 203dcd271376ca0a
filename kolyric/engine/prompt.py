"""Prompts in, clean text out.

The polarity word is the training-time prefix (``긍정 …`` / ``부정 …``), exactly as the
tutorial and ``kolyric train`` put it before each review. Output shown to a person never
holds the prefix, ``</s>`` or padding; ``<unk>`` is shown as ``⁇`` so a gap is visible.

Line breaks are text: a model whose vocabulary has ``\n`` (line) and ``\n\n`` (stanza) tokens
writes lines by itself, and they reach the screen as written, except that a run of three or
more newlines is folded to a stanza break and a line never starts with spaces. Every other
control character (a byte-level model can write escape sequences) is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

POLARITIES = ("긍정", "부정")
POLARITY_ALIASES = {
    "긍정": "긍정",
    "positive": "긍정",
    "pos": "긍정",
    "+": "긍정",
    "부정": "부정",
    "negative": "부정",
    "neg": "부정",
    "-": "부정",
    "none": None,
    "": None,
    "없음": None,
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


def line_separator(tokenizer: PreTrainedTokenizerBase) -> str:
    """How draft lines are joined in a prompt: a newline if the vocabulary knows it, else a space.

    A model trained only on single-line reviews maps ``\\n`` to ``<unk>``; a space keeps the
    context readable to it.
    """
    ids = tokenizer.encode("\n", add_special_tokens=False)
    known = bool(ids) and tokenizer.unk_token_id not in ids
    return "\n" if known and "\n" in tokenizer.decode(ids, skip_special_tokens=False) else " "


def line_break_ids(tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """The vocabulary's tokens for one, two or three newlines alone (``\n``, ``\n\n`` …; a
    byte-level ``Ċ``): where a line may end. Found by encoding, not by a pass over the vocabulary."""
    found = set()
    for text in ("\n", "\n\n", "\n\n\n"):
        ids = tokenizer.encode(text, add_special_tokens=False)
        if (
            len(ids) == 1
            and ids[0] != tokenizer.unk_token_id
            and tokenizer.decode(ids, skip_special_tokens=False) == text
        ):
            found.add(int(ids[0]))
    return frozenset(found)


def prompt_body(line: str, context: Sequence[str] = (), separator: str = "\n") -> str:
    """The draft lines before the prompt line (oldest first), then the line itself. With no line
    typed, a line break ends the text (where the vocabulary has one), so the model starts the
    next line instead of finishing the draft's last."""
    parts = [c.strip() for c in context if c.strip()]
    if line.strip():
        parts.append(line.strip())
    elif parts and separator == "\n":
        parts.append("")
    return separator.join(parts)


_SPECIALS_RE = re.compile(r"</s>|<s>|<pad>|<usr>|<sys>|<mask>")
# Control characters (escape sequences!) from a model's byte tokens must not reach a terminal;
# tab and newline are text. \r goes too: a lone carriage return would overwrite the line.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
STANZA = "\n\n"
"""The longest run of newlines shown: a stanza break."""


def clean_piece(text: str, unk_token: str | None = "<unk>") -> str:
    """A streamed piece with special tokens removed and ``<unk>`` made visible."""
    if unk_token:
        text = text.replace(unk_token, UNK_SHOWN)
    return _CONTROL_RE.sub("", _SPECIALS_RE.sub("", text))


def clean_output(text: str, unk_token: str | None = "<unk>") -> str:
    """Final display text: specials removed, ``<unk>`` visible, runs of spaces folded, ends trimmed."""
    text = clean_piece(text, unk_token)
    text = re.sub(r"[ \t\u00a0]+", " ", text)
    text = "\n".join(line.strip() for line in text.split("\n")).strip()
    return re.sub(r"\n{3,}", STANZA, text)


class Detokenizer:
    """Incremental decoding that releases text only when it is complete.

    Decoding each token alone would lose the spaces a Metaspace/byte-level decoder derives from
    neighbouring tokens, and would show half of a syllable's bytes; decoding everything each
    step costs O(n²). So each step decodes a short window ending at the new token and releases
    the part past what the window's prefix already produced, unless it ends in U+FFFD (bytes of
    an unfinished character).

    Line breaks pass through, with the released text kept as ``clean_output`` would show it
    across pieces: no spaces at the start of a line (a metaspace decoder gives ``"\n 봄"``) and
    at most two newlines in a row. ``push(..., new_line=True)`` starts a line before the token's
    text: the lines of a vocabulary with no newline token are separated by the constraint, and
    the stream then shows them as the final text does.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt: Sequence[int], unk_token: str | None):
        self.tokenizer = tokenizer
        self.ids = list(prompt[-4:])  # a little prompt context for the first token's spacing
        self.prefix_offset = 0
        self.read_offset = len(self.ids)
        self.unk_token = unk_token
        self.newlines = 0
        """Newlines at the end of the text released so far."""
        self.spaced = False
        """Whether the text released so far ends in a space (a run of spaces shows as one)."""
        self._decode = _window_decoder(tokenizer)

    def push(self, token_id: int, new_line: bool = False) -> str:
        self.ids.append(token_id)
        decode = self._decode
        prefix = decode(self.ids[self.prefix_offset : self.read_offset])
        full = decode(self.ids[self.prefix_offset :])
        pending = len(self.ids) - self.read_offset
        # A UTF-8 character spans at most 4 byte tokens: past that the bytes are invalid, not
        # unfinished, and are released (as U+FFFD, as the final text shows them).
        if len(full) <= len(prefix) or (full.endswith("\ufffd") and pending < 4):
            if not new_line:
                return ""
            self.spaced = False
            return "\n" * self._break(1)
        piece = full[len(prefix) :]
        self.prefix_offset = self.read_offset
        self.read_offset = len(self.ids)
        piece = clean_piece(piece, self.unk_token)
        if new_line:
            piece = "\n" + piece.lstrip(" \t\u00a0")
        return self._lines(piece)

    def _break(self, n: int) -> int:
        """How many of ``n`` newlines to release (at most two in a row), counting them."""
        keep = max(0, min(n, 2 - self.newlines))
        self.newlines += keep
        return keep

    def _lines(self, piece: str) -> str:
        if "\n" not in piece:  # most tokens: no split into lines
            piece = _SPACE_RUN.sub(" ", piece)
            if self.newlines or self.spaced:  # a line's start, or a space already shown
                piece = piece.lstrip(" \t\u00a0")
            if piece:
                self.newlines = 0
                self.spaced = piece[-1] in " \t\u00a0"
            return piece
        out = []
        for part in re.split(r"(\n+)", piece):
            if not part:
                continue
            if part[0] == "\n":
                if out:  # spaces before a break end a line: not shown
                    out[-1] = out[-1].rstrip(" \t\u00a0")
                out.append("\n" * self._break(len(part)))
                self.spaced = False
                continue
            part = _SPACE_RUN.sub(" ", part)
            if self.newlines or self.spaced:
                part = part.lstrip(" \t\u00a0")
                if not part:
                    continue
            self.newlines = 0
            self.spaced = part[-1] in " \t\u00a0"
            out.append(part)
        return "".join(out)


_SPACE_RUN = re.compile(r"[ \t\u00a0]{2,}")
"""Spaces in a row: the final text (``clean_output``) shows them as one."""


def _window_decoder(tokenizer: PreTrainedTokenizerBase) -> Callable[[list[int]], str]:
    """``tokenizer.decode(ids, skip_special_tokens=False)``. For a fast tokenizer that neither
    overrides decoding nor cleans up spaces that is its Rust decoder's answer, asked directly:
    the Python layers around it cost ~20 µs a call in the decoding loop, two calls a token."""
    backend = getattr(tokenizer, "_tokenizer", None)
    cls = type(tokenizer)
    if not cls.__module__.startswith("transformers"):
        return lambda ids: tokenizer.decode(ids, skip_special_tokens=False)
    from transformers import PreTrainedTokenizerFast
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase as Base

    if (
        backend is not None
        and cls.decode is Base.decode
        and cls._decode is PreTrainedTokenizerFast._decode
        and not getattr(tokenizer, "clean_up_tokenization_spaces", True)
    ):
        return lambda ids: backend.decode(ids, skip_special_tokens=False)
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=False)
