"""What the constraint state tracks: the plan of the lines to write and one sequence's progress.

The plan fixes, before generating, each line's syllable count, scheme letter and, where it is
known up front (the rhyme target, or a draft line the scheme binds to), the rhyme it must end on.
A ``Row`` is one token sequence's progress through that plan; ``ConstraintState``
(``kolyric.engine.lyric.state``) derives it token by token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kolyric.engine.lyric.spec import LyricConstraints
from kolyric.engine.lyric.vocab_profile import Key, key_parts
from kolyric.korean.rhyme import rhyme_syllables


@dataclass(frozen=True)
class PlannedLine:
    target: int | None
    """Syllables, or None on uncounted lines."""
    group: str | None
    """Scheme letter, or None: no rhyme required."""
    key: Key | None
    """The rhyme it must end on, when known before generating (the rhyme target or a draft line)."""


@dataclass(frozen=True)
class Row:
    """One sequence's progress through the lines (immutable; each token makes a new one)."""

    line: int = 0
    """Index of the line being written; -1 while the prompt's line still has to be closed."""
    count: int = 0
    tail: tuple[tuple[int, int], ...] = ()
    """Raw (medial, final) of the line's last Hangul syllables, oldest first (at most 3)."""
    zero_run: int = 0
    glue: int = 0
    """How Hangul would join the line's last word (``kolyric.korean.rhyme.glue_state``): after a
    clause mark glued to a syllable, Hangul would be a stray fragment, never the line's end."""
    keys: tuple[tuple[str, Key], ...] = ()
    """Rhymes set by this sequence's finished lines, per scheme letter."""
    starts: tuple[int, ...] = ()
    """Token index where each line begins."""
    broken: str | None = None
    done: bool = False
    ended: bool = False
    end_pos: int | None = None
    word_ends: tuple[int, ...] = ()
    """Per counted line whose count is complete: the position of the token that completed it, or
    -1 when no generated token's word end is in question (the token's own text breaks the line,
    or the typed line had the count)."""


def plan_lines(spec: LyricConstraints, prompt: str, context: Sequence[str], notes: list[str]) -> list[PlannedLine]:
    """Each generated line's count, scheme letter and known rhyme. ``prompt``/``context``: the
    request's (stripped) line and non-empty earlier draft lines; what cannot be used of the scheme
    is appended to ``notes``."""
    k, n = spec.n_lines, spec.rhyme_syllables
    targets = spec.targets or (None,) * k
    letters = spec.scheme[-k:] if spec.scheme else ("A" if spec.rhyme else "x") * k
    before = spec.scheme[:-k] if spec.scheme and len(spec.scheme) > k else ""
    preceding = list(context) + ([prompt] if spec.mode == "next" and prompt else [])
    aligned = preceding[-len(before) :] if before else []
    if len(aligned) < len(before):
        notes.append(
            f"scheme: {len(before)} letter(s) for draft lines, but only {len(aligned)} "
            "draft line(s) precede; the first letters are not used"
        )
        before = before[len(before) - len(aligned) :]
    fixed: dict[str, Key] = {}
    for letter, text in zip(before, aligned):
        syllables = rhyme_syllables(text)  # a stray fragment glued after punctuation is no ending
        if letter == "x":
            continue
        if len(syllables) >= n:
            fixed[letter] = key_parts(syllables[-n:], spec.strict, spec.families)
        else:
            notes.append(f"scheme: draft line {text!r} (letter {letter}) has no rhyme to match")
    if spec.rhyme:
        first = next((c for c in letters if c != "x"), None)
        if first:
            fixed[first] = key_parts(rhyme_syllables(spec.rhyme)[-n:], spec.strict, spec.families)
    return [PlannedLine(t, None if c == "x" else c, fixed.get(c)) for t, c in zip(targets, letters)]


__all__ = ["PlannedLine", "Row", "plan_lines"]
