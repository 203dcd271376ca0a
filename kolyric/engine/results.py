"""What a generation is asked (``GenerationRequest``) and what it gives back: a ``TokenEvent`` per
streamed token, then a ``DoneEvent`` holding the ``GenerationResult`` and its candidates.

Plain data, no torch: the app, the server and the CLI build requests and read results before a
model loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kolyric.engine.lyric.report import ConstraintReport
from kolyric.engine.lyric.spec import LyricConstraints
from kolyric.engine.settings import DecodingSettings


@dataclass(frozen=True)
class GenerationRequest:
    """What to continue and how."""

    prompt: str
    """The line the user typed (may be empty)."""
    polarity: str | None = None
    """긍정, 부정 or None: the training-time prefix put before the text."""
    settings: DecodingSettings = field(default_factory=DecodingSettings)
    """Decoding controls."""
    context: tuple[str, ...] = ()
    """Earlier draft lines, oldest first; as many as fit the context window are kept, newest first."""
    forced_ids: tuple[int, ...] = ()
    """Generated token ids to force first (branching from a chosen alternative), then continue."""
    constraints: LyricConstraints | None = None
    """Lyric constraints, or None."""
    max_length_set: bool | None = None
    """Whether the user chose ``settings.max_length``. When not, a constrained run gets a
    max_length that fits its lines (``LyricConstraints.length_budget``, within the model's
    window), if that is more. None (a caller that cannot tell): chosen unless it is
    DecodingSettings' default."""


@dataclass(frozen=True)
class Alternative:
    token_id: int
    text: str
    prob: float


@dataclass(frozen=True)
class TokenInfo:
    """One generated token, its probability under the model and the model's k likeliest tokens there
    (the *alternatives* setting, 5 by default)."""

    token_id: int
    text: str
    prob: float
    alternatives: tuple[Alternative, ...]


@dataclass(frozen=True)
class TokenEvent:
    candidate: int
    step: int
    text: str
    """New display text released by this token (may be empty while a character is incomplete)."""
    token: TokenInfo
    line_break: bool = False
    """Whether ``text`` holds a line break: the token ends a line (``\n``, a stanza ``\n\n``),
    or begins the next line of a vocabulary with no newline token."""


@dataclass
class Candidate:
    text: str
    """The continuation, cleaned for display (no prefix, no specials)."""
    token_ids: list[int]
    tokens: list[TokenInfo]
    finish_reason: str
    """eos | length | cancelled | constraint | stop (a stop string) | banned (nothing left that
    completes no banned phrase: ``note`` says so)"""
    constraint_report: ConstraintReport | None = None
    full_text: str = ""
    """The prompt line and the continuation, joined as the model spaced them."""
    note: str | None = None
    """Why the candidate ended, where its finish reason needs a word (``banned``)."""


@dataclass
class GenerationResult:
    candidates: list[Candidate]
    settings: DecodingSettings
    """The settings in force at the end, with the seed actually used."""
    prompt_text: str
    """The exact text fed to the model (prefix and context included)."""
    prompt_tokens: int
    elapsed_s: float
    new_tokens: int
    """Tokens the model generated, over all candidates: a candidate's end token counts (it took a
    decoding step, so ``tokens_per_s`` counts it), though its ``token_ids`` leave it out."""

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "candidates": [
                {
                    "text": c.text,
                    "full_text": c.full_text,
                    "finish_reason": c.finish_reason,
                    "token_ids": c.token_ids,
                    "constraints": c.constraint_report.to_dict() if c.constraint_report is not None else None,
                    **({"note": c.note} if c.note else {}),
                }
                for c in self.candidates
            ],
            "settings": self.settings.to_dict(),
            "prompt_text": self.prompt_text,
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "elapsed_s": round(self.elapsed_s, 4),
            "tokens_per_s": round(self.tokens_per_s, 2),
        }


@dataclass(frozen=True)
class DoneEvent:
    result: GenerationResult


__all__ = ["Alternative", "Candidate", "DoneEvent", "GenerationRequest", "GenerationResult", "TokenEvent", "TokenInfo"]
