"""What a constrained candidate reports: each line checked from its text (``check_lines``), and
whether the whole candidate meets its constraints (``ConstraintReport``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from kolyric.korean.hangul import FINALS, MEDIALS, count_syllables
from kolyric.korean.rhyme import RhymeOptions, family_label, own_vowels, rhyme_key


@dataclass
class LineReport:
    """One generated line, checked with ``count_syllables`` and ``rhyme_key`` on its text."""

    text: str
    syllables: int
    target: int | None
    rhyme: str | None
    target_rhyme: str | None
    group: str | None
    ok: bool
    problem: str | None = None
    word_end: float | None = None
    """The model's probability of a word break right after the line's last token (the whole-word
    rule's measure); None where it was not measured (no count, the typed line, a forced token)."""

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass
class ConstraintReport:
    """Whether a candidate meets its constraints, line by line, and why not."""

    satisfied: bool
    constraints: str
    reasons: list[str] = field(default_factory=list)
    lines: list[LineReport] = field(default_factory=list)
    line_end: str = "newline"
    """How lines are separated: "newline", or "word boundary" for a vocabulary with no newline token."""
    notes: list[str] = field(default_factory=list)
    """Remarks that do not make the result fail (e.g. scheme letters with no draft line to match)."""
    text: str | None = None
    """The generated lines joined by newlines (continue mode: line 1 without the typed part)."""
    full_text: str | None = None
    """The prompt line and the generated lines, one per line."""

    @property
    def display(self) -> tuple[str, str] | None:
        return (self.text, self.full_text) if self.text is not None and self.full_text is not None else None

    def __str__(self) -> str:
        if self.satisfied:
            return f"constraints met ({self.constraints})"
        return f"constraints not met ({self.constraints}): " + "; ".join(self.reasons or ["unknown reason"])

    def to_dict(self) -> dict[str, object]:
        return {
            "satisfied": self.satisfied,
            "constraints": self.constraints,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "line_end": self.line_end,
            "lines": [line.to_dict() for line in self.lines],
        }


def badge(report: ConstraintReport | None) -> str:
    """A constraint report in a few cells, as a card's title and the command line end a
    candidate: "✓ 7 ㅏ", "✓ 6 ㅣ / 6 ㅣ", for more lines the pattern and the endings
    ("✓ 8-8-7-9 ㅏㅏㅓㅓ"), "✓" with no lines, "✗" when unmet, "" without constraints."""
    if report is None:
        return ""
    if not report.satisfied:
        return "✗"
    lines = list(report.lines or [])
    if not lines:
        return "✓"
    # each line's own vowels: a line ending on 네 shows ㅔ, though its key (the ㅐ/ㅔ family's) is ㅐ
    labels = [own_vowels(line.rhyme, line.text) for line in lines]
    if len(lines) > 2:  # short: the pattern, then one ending per line
        keys = "".join((label or "·").split("-")[-1] for label in labels)
        return f"✓ {'-'.join(str(line.syllables) for line in lines)} {keys}"
    return "✓ " + " / ".join(f"{line.syllables}" + (f" {label}" if label else "") for line, label in zip(lines, labels))


def key_text(key: tuple[tuple[int, int], ...] | None) -> str | None:
    """A comparison key written as ``rhyme_key`` writes it ("ㅏ", "ㅏㅇ-ㅗ")."""
    if not key:
        return None
    return "-".join(MEDIALS[m] + (FINALS[f] if f >= 0 else "") for m, f in key)


def check_lines(
    texts: list[str], targets: list[int | None], keys: list[str | None], groups: list[str | None], options: RhymeOptions
) -> list[LineReport]:
    """Check finished lines against their counts and rhymes from their text alone; lines of a
    group with no given rhyme must share the first such line's key."""
    first: dict[str, str | None] = {}
    out = []
    for text, target, key, group in zip(texts, targets, keys, groups):
        syllables = count_syllables(text)
        actual = rhyme_key(text, options)
        want = key if key is not None else (first.get(group) if group else None)
        if group and group not in first:
            first[group] = key if key is not None else actual
        problems = []
        if target is not None and syllables != target:
            problems.append(f"{syllables} syllables, not {target}")
        if want is not None and actual != want:
            # The line's own vowels, and every ending that would have met the rhyme (네 is ㅐ's key).
            problems.append(f"ends on rhyme {own_vowels(actual, text)}, not {family_label(want, options.families)}")
        out.append(LineReport(text, syllables, target, actual, want, group, not problems, "; ".join(problems) or None))
    return out


__all__ = ["ConstraintReport", "LineReport", "badge", "check_lines", "key_text"]
