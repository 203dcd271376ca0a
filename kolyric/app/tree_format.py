"""The stored parts of the tree-of-versions file (``kolyric.app.tree``'s versioned format).

The format's name and version, the node kinds, and the records a node keeps: its tokens with
the alternatives ranked at each (named tuples: a big tree holds a million of them, built as it
loads), its constraint report, and the columns its tokens are written as (ids, probabilities,
alternatives, and each token id's text once). Reading is forgiving of a hand-edited file: a
column of the wrong shape gives a node without tokens, never a token id that is not a number.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

FORMAT = "kolyric-tree"
VERSION = 1
PROB_DIGITS = 7  # probabilities are stored to 1e-7: the inspector shows 0.1%, and the file stays small
KINDS = ("generate", "branch", "edit", "continue", "step", "compare")


class AlternativeLike(Protocol):
    token_id: int
    text: str
    prob: float


class TokenLike(Protocol):
    token_id: int
    text: str
    prob: float

    @property
    def alternatives(self) -> Sequence[AlternativeLike]: ...


class Alt(NamedTuple):
    """One alternative the model ranked at a token (the engine's ``Alternative``, as stored).
    A named tuple: a big tree holds a million of them, and they are built as it loads."""

    token_id: int
    text: str
    prob: float


class Token(NamedTuple):
    """One token as stored: the engine's ``TokenInfo`` fields."""

    token_id: int
    text: str
    prob: float
    alternatives: tuple[Alt, ...]


@dataclass(frozen=True)
class StoredLine:
    text: str
    syllables: int
    rhyme: str | None = None
    target: int | None = None
    ok: bool = True
    problem: str | None = None


@dataclass(frozen=True)
class StoredReport:
    """A constraint report as saved: what the cards, badges and history read from one."""

    satisfied: bool
    constraints: str
    reasons: tuple[str, ...] = ()
    lines: tuple[StoredLine, ...] = ()
    notes: tuple[str, ...] = ()
    line_end: str = "newline"
    text: str | None = None
    full_text: str | None = None

    @property
    def display(self) -> tuple[str, str] | None:
        return (self.text, self.full_text) if self.text is not None and self.full_text is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "satisfied": self.satisfied,
            "constraints": self.constraints,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "line_end": self.line_end,
            "text": self.text,
            "full_text": self.full_text,
            "lines": [
                {
                    "text": ln.text,
                    "syllables": ln.syllables,
                    "rhyme": ln.rhyme,
                    "target": ln.target,
                    "ok": ln.ok,
                    "problem": ln.problem,
                }
                for ln in self.lines
            ],
        }

    @classmethod
    def from_report(cls, report: Any) -> StoredReport:
        """From the engine's ``ConstraintReport`` (or a stored one)."""
        lines = tuple(
            StoredLine(
                ln.text,
                int(ln.syllables),
                getattr(ln, "rhyme", None),
                getattr(ln, "target", None),
                bool(getattr(ln, "ok", True)),
                getattr(ln, "problem", None),
            )
            for ln in report.lines
        )
        return cls(
            bool(report.satisfied),
            str(report.constraints),
            tuple(report.reasons),
            lines,
            tuple(getattr(report, "notes", ())),
            str(getattr(report, "line_end", "newline")),
            getattr(report, "text", None),
            getattr(report, "full_text", None),
        )

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StoredReport:
        lines = tuple(
            StoredLine(
                str(ln.get("text", "")),
                int(ln.get("syllables", 0)),
                ln.get("rhyme"),
                ln.get("target"),
                bool(ln.get("ok", True)),
                ln.get("problem"),
            )
            for ln in raw.get("lines", [])
            if isinstance(ln, dict)
        )
        return cls(
            bool(raw.get("satisfied")),
            str(raw.get("constraints", "")),
            tuple(str(r) for r in raw.get("reasons", [])),
            lines,
            tuple(str(n) for n in raw.get("notes", [])),
            str(raw.get("line_end", "newline")),
            raw.get("text"),
            raw.get("full_text"),
        )


def opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_INTS, _NUMBERS = {int}, {int, float}


def tokens_from(columns: dict[str, Any], texts: dict[str, str]) -> tuple[Token, ...]:
    """A loaded node's token columns as Tokens. A column of the wrong shape or type (a hand-edited
    file) gives a node without tokens, never a token id that is not a number."""
    ids, probs = columns.get("ids") or [], columns.get("probs") or []
    alt_ids, alt_probs = columns.get("alt_ids") or [], columns.get("alt_probs") or []
    if not all(isinstance(c, list) for c in (ids, probs, alt_ids, alt_probs)):
        return ()
    if not set(map(type, ids)) <= _INTS or not set(map(type, probs)) <= _NUMBERS:
        return ()
    out = []
    for n, (tid, prob) in enumerate(zip(ids, probs)):
        a_ids = alt_ids[n] if n < len(alt_ids) else []
        a_probs = alt_probs[n] if n < len(alt_probs) else []
        if (
            not isinstance(a_ids, list)
            or not isinstance(a_probs, list)
            or not set(map(type, a_ids)) <= _INTS
            or not set(map(type, a_probs)) <= _NUMBERS
        ):
            return ()
        alts = tuple([Alt(a, texts.get(str(a), ""), p) for a, p in zip(a_ids, a_probs)])
        out.append(Token(tid, texts.get(str(tid), ""), prob, alts))
    return tuple(out)


def stored_tokens(tokens: Iterable[TokenLike]) -> tuple[Token, ...]:
    """Engine ``TokenInfo``s (or stored ones) as the tree keeps them."""
    return tuple(
        t
        if isinstance(t, Token)
        else Token(
            int(t.token_id),
            t.text,
            float(t.prob),
            tuple(Alt(int(a.token_id), a.text, float(a.prob)) for a in t.alternatives),
        )
        for t in tokens
    )


def token_columns(tokens: Sequence[Token]) -> tuple[dict[str, list[Any]], dict[str, str]]:
    """Tokens as the file's columns (without ``pieces``, which the node keeps) and the text of
    each token id met, stored once."""
    texts: dict[str, str] = {}
    alt_ids, alt_probs = [], []
    for tok in tokens:
        texts[str(tok.token_id)] = tok.text
        ids = []
        for alt in tok.alternatives:
            texts[str(alt.token_id)] = alt.text
            ids.append(alt.token_id)
        alt_ids.append(ids)
        alt_probs.append([round(alt.prob, PROB_DIGITS) for alt in tok.alternatives])
    columns: dict[str, list[Any]] = {
        "ids": [t.token_id for t in tokens],
        "probs": [round(t.prob, PROB_DIGITS) for t in tokens],
        "alt_ids": alt_ids,
        "alt_probs": alt_probs,
    }
    return columns, texts
