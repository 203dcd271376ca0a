"""Split a lyric draft into sections and analyse each line's syllables and rhyme.

A header is any ``[...]`` alone on its line (``[Verse 1]``, ``[후렴]``, ``[Chorus x2]``).
Known names map to a normalised kind (``verse``, ``chorus``, ``pre-chorus``...); other
headers get kind ``other``.  Lines before the first header form an unnamed section
(name and kind None), kept only when it has a non-blank line.  Blank lines keep their
file line numbers but are not lyric lines: they are left out of the analysed lines,
the syllable pattern and the rhyme scheme.

Rhyme group ids are shared across the whole draft (a chorus rhyming with a verse shows
the same id); scheme letters start again at A in each section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kolyric.korean.hangul import count_syllables, split_lines
from kolyric.korean.rhyme import RhymeOptions, group_keys, rhyme_key, rhyme_label, scheme_letters

_HEADER_RE = re.compile(r"^\s*\[\s*([^\[\]]*?\S[^\[\]]*?)\s*\]\s*$")

_KIND_ALIASES: dict[str, tuple[str, ...]] = {
    "verse": ("verse", "벌스", "버스", "절"),
    "pre-chorus": ("prechorus", "pre", "프리코러스", "프리후렴", "프리"),
    "chorus": ("chorus", "refrain", "후렴", "후렴구", "코러스"),
    "post-chorus": ("postchorus", "포스트코러스"),
    "hook": ("hook", "훅"),
    "bridge": ("bridge", "브릿지", "브리지"),
    "intro": ("intro", "인트로"),
    "outro": ("outro", "ending", "아웃트로", "아웃로", "엔딩"),
    "interlude": ("interlude", "instrumental", "간주", "인터루드"),
    "rap": ("rap", "랩"),
}
_ALIAS_TO_KIND = {alias: kind for kind, aliases in _KIND_ALIASES.items() for alias in aliases}
# Decorations that do not change a header's kind: "x2"/"2x" repeat marks, ordinals,
# numbers ("Verse 1", "1절"), and what follows a colon or parenthesis ("Verse: 지민").
_REPEAT_RE = re.compile(r"[x×]\s*\d+|\d+\s*[x×]|\d+(?:st|nd|rd|th)?")
_NOISE_RE = re.compile(r"[\s\-_.#'’]+")


def header_kind(name: str) -> str:
    """The normalised kind of a header name ("Pre-Chorus 2" -> "pre-chorus"), or "other"."""
    base = re.split(r"[:(（]", name.lower(), maxsplit=1)[0]
    base = _NOISE_RE.sub("", _REPEAT_RE.sub(" ", base))
    return _ALIAS_TO_KIND.get(base, "other")


@dataclass(frozen=True)
class Section:
    """A header (or the unnamed start) and its raw lines as (1-based line number, text)."""

    name: str | None
    kind: str | None
    start_line: int
    lines: tuple[tuple[int, str], ...]


def is_blank(line: str) -> bool:
    return not line.strip()


def is_header(line: str) -> bool:
    """Whether ``line`` is a section header such as ``[Verse 1]`` or ``[후렴]``."""
    return _HEADER_RE.match(line) is not None


def parse_sections(text: str) -> list[Section]:
    """Split a draft into sections at header lines; see the module docstring."""
    text = text.removeprefix("\ufeff")
    sections: list[Section] = []
    name: str | None = None
    kind: str | None = None
    start = 1
    body: list[tuple[int, str]] = []

    def close() -> None:
        if name is not None or any(not is_blank(t) for _, t in body):
            sections.append(Section(name, kind, start, tuple(body)))

    for number, line in enumerate(split_lines(text), start=1):
        match = _HEADER_RE.match(line)
        if match is None:
            body.append((number, line))
            continue
        close()
        name, kind, start, body = match.group(1), header_kind(match.group(1)), number, []
    close()
    return sections


@dataclass(frozen=True)
class LineAnalysis:
    """One lyric line: its file line number, text, syllables and rhyme."""

    number: int
    text: str
    syllables: int
    rhyme_key: str | None
    group: int | None  # rhyme group id across the whole draft
    letter: str  # scheme letter within its section ("x": no rhyme key)
    rhyme_label: str | None = None  # the ending as shown: its own vowels (``rhyme_label``)

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.number,
            "text": self.text,
            "syllables": self.syllables,
            "rhyme_key": self.rhyme_key,
            "rhyme_label": self.rhyme_label,
            "group": self.group,
            "letter": self.letter,
        }


@dataclass(frozen=True)
class SectionAnalysis:
    name: str | None
    kind: str | None
    start_line: int
    lines: tuple[LineAnalysis, ...]

    @property
    def pattern(self) -> str:
        """Syllables per lyric line, e.g. "8-8-7-9"."""
        return "-".join(str(line.syllables) for line in self.lines)

    @property
    def scheme(self) -> str:
        """Rhyme scheme of the lyric lines, e.g. "AABB"."""
        return "".join(line.letter for line in self.lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "start_line": self.start_line,
            "pattern": self.pattern,
            "scheme": self.scheme,
            "lines": [line.to_dict() for line in self.lines],
        }


@dataclass(frozen=True)
class Analysis:
    options: RhymeOptions
    sections: tuple[SectionAnalysis, ...] = field(default_factory=tuple)

    @property
    def lines(self) -> list[LineAnalysis]:
        """Every lyric line of the draft, in order."""
        return [line for section in self.sections for line in section.lines]

    def to_dict(self) -> dict[str, Any]:
        return {
            "options": self.options.to_dict(),
            "syllables": sum(line.syllables for line in self.lines),
            "line_count": len(self.lines),
            "sections": [section.to_dict() for section in self.sections],
        }


def analyse(draft_text: str, options: RhymeOptions | None = None) -> Analysis:
    """Sections, per-line syllable counts and rhyme groups of a whole draft."""
    options = options or RhymeOptions()
    sections = parse_sections(draft_text)
    lyric = [[(n, t) for n, t in s.lines if not is_blank(t)] for s in sections]
    keys = [[rhyme_key(t, options) for _, t in lines] for lines in lyric]
    groups = iter(group_keys([k for section_keys in keys for k in section_keys]))
    out = []
    for section, lines, section_keys in zip(sections, lyric, keys):
        letters = scheme_letters(section_keys)
        analysed = tuple(
            LineAnalysis(n, t, count_syllables(t), key, next(groups), letter, rhyme_label(t, options))
            for (n, t), key, letter in zip(lines, section_keys, letters)
        )
        out.append(SectionAnalysis(section.name, section.kind, section.start_line, analysed))
    return Analysis(options, tuple(out))
