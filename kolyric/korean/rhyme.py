"""Rhyme analysis on the vowels (and optionally final consonants) of line endings.

A line's rhyme is read from its last N Hangul syllables.  Punctuation, spaces, Latin
words, digits, emoji and everything else that is not a Hangul syllable are skipped, wherever
they are: "너를 사랑해 baby!" rhymes on 해, and with N = 2 on 랑-해.  The N syllables
may span words ("사랑 너" with N = 2 reads 랑-너).  A line with fewer than N Hangul
syllables uses all it has; a line with none has no rhyme key (None).

A line ends on its last word, and Korean writes a space after clause punctuation
(, . ! ? ; : … and their full-width forms).  So in the last word holding Hangul, Hangul
glued on after a clause mark that follows a syllable is a stray fragment, not the end of
the line: "가려,-에" rhymes on 려, "지!.에" on 지, "한낱….에" on 낱.  "가려, 에" (with the
space) ends on the word 에.  A mark inside a number or an abbreviation is no clause mark
("3,000원" rhymes on 원, "A.I.가" on 가), nor is a hyphen, a tilde or a bracket
("사랑-해", "사랑해~요" and "사랑해(요)" end on their last syllable).  ``rhyme_syllables``
gives the syllables a line's rhyme is read from.

The key joins one part per syllable with "-": the vowel ("ㅏ-ㅗ"), or vowel + final
consonant in strict mode ("ㅏㄴ-ㅗ").  With ``families`` on, alike sounds share one
representative, which is what the key shows (``rhyme_label`` shows the line's own vowels):

* vowels ㅐ/ㅔ -> ㅐ, ㅒ/ㅖ -> ㅒ, ㅚ/ㅙ/ㅞ -> ㅚ (merged in everyday Seoul speech), and
  ㅢ -> ㅣ, because after a consonant ㅢ is pronounced [ㅣ] (희망 [히망], 무늬 [무니]);
* finals (strict mode only) by the 7 sounds a 받침 is pronounced as at a word's end:
  ㄱ(ㄲㅋㄳㄺ) ㄴ(ㄵㄶ) ㄷ(ㅅㅆㅈㅊㅌㅎ) ㄹ(ㄼㄽㄾㅀ) ㅁ(ㄻ) ㅂ(ㅍㅄㄿ) ㅇ.

Rhyme schemes letter groups A, B, C... in order of first appearance; a line with no
rhyme key is "x" (so "x" is never a group letter).
"""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass

from kolyric.korean.hangul import (
    FINALS,
    MEDIALS,
    SYLLABLE_FIRST,
    SYLLABLE_LAST,
    count_syllables,
    decompose,
    hangul_syllables,
)

MAX_RHYME_SYLLABLES = 3
NO_RHYME = "x"
# A..Z, then lower case without "x" (which marks "no rhyme"); "+" past the 51st group.
_LETTERS = string.ascii_uppercase + string.ascii_lowercase.replace(NO_RHYME, "")
_OVERFLOW_LETTER = "+"


def _index_map(table: str | tuple[str, ...], pairs: dict[str, str]) -> tuple[int, ...]:
    return tuple(table.index(pairs.get(j, j)) for j in table)


# Index -> index of the representative of its family (identity outside the families).
MEDIAL_FAMILY: tuple[int, ...] = _index_map(MEDIALS, {"ㅔ": "ㅐ", "ㅖ": "ㅒ", "ㅙ": "ㅚ", "ㅞ": "ㅚ", "ㅢ": "ㅣ"})
FINAL_SOUND: tuple[int, ...] = _index_map(
    FINALS,
    {
        "ㄲ": "ㄱ",
        "ㅋ": "ㄱ",
        "ㄳ": "ㄱ",
        "ㄺ": "ㄱ",
        "ㄵ": "ㄴ",
        "ㄶ": "ㄴ",
        "ㅅ": "ㄷ",
        "ㅆ": "ㄷ",
        "ㅈ": "ㄷ",
        "ㅊ": "ㄷ",
        "ㅌ": "ㄷ",
        "ㅎ": "ㄷ",
        "ㄼ": "ㄹ",
        "ㄽ": "ㄹ",
        "ㄾ": "ㄹ",
        "ㅀ": "ㄹ",
        "ㄻ": "ㅁ",
        "ㅍ": "ㅂ",
        "ㅄ": "ㅂ",
        "ㄿ": "ㅂ",
    },
)


@dataclass(frozen=True)
class RhymeOptions:
    """How two line endings are compared."""

    syllables: int = 1  # how many trailing syllables must match, 1..3
    strict: bool = False  # also compare the final consonant (종성)
    families: bool = True  # treat alike vowels (and finals' sounds) as equal

    def __post_init__(self) -> None:
        n = self.syllables
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_RHYME_SYLLABLES:
            raise ValueError(f"RhymeOptions.syllables must be an integer in [1, {MAX_RHYME_SYLLABLES}], got {n!r}")

    def to_dict(self) -> dict[str, object]:
        return {"syllables": self.syllables, "strict": self.strict, "families": self.families}


def medial_class(index: int, families: bool = True) -> int:
    """The medial index used for comparison: its family representative when ``families``."""
    return MEDIAL_FAMILY[index] if families else index


def final_class(index: int, families: bool = True) -> int:
    """The final index used for comparison: its pronounced sound when ``families``."""
    return FINAL_SOUND[index] if families else index


# Clause punctuation, after which Korean writes a space (see the module docstring).
CLAUSE_MARKS = ",.!?;:\u2026\u2025\u22ef\u3001\u3002\uff0c\uff0e\uff01\uff1f\uff1b\uff1a"
# A run of punctuation or symbols right after a syllable, holding a clause mark, with Hangul
# later in the same word: where a stray fragment starts. [^\w\s] leaves letters and digits out,
# so a mark inside "3,000" or "A.I." never starts one.
_STRAY_RE = re.compile(rf"(?<=[\uac00-\ud7a3])[^\w\s]*[{re.escape(CLAUSE_MARKS)}][^\w\s]*(?=\S*[\uac00-\ud7a3])")


# How Hangul would join the last word of a line so far ("glue" states, for generating a line
# token by token): 0 a fresh word or one that no stray fragment can start in, 1 after a syllable
# (and punctuation without a clause mark), 2 after a clause mark that follows a syllable. One
# representative text per state, so a token's effect can be tabled once per state.
GLUE_PREFIXES = ("", "가", "가,")
_GLUE_AFTER_MARK = re.compile(rf"[\uac00-\ud7a3][^\w\s]*[{re.escape(CLAUSE_MARKS)}][^\w\s]*[^\s\uac00-\ud7a3]*\Z")
_GLUE_AFTER_SYLLABLE = re.compile(r"[\uac00-\ud7a3][^\w\s]*\Z")


def glue_state(text: str) -> int:
    """The glue state (0, 1 or 2, see ``GLUE_PREFIXES``) of a line so far."""
    text = unicodedata.normalize("NFC", text)
    word = re.split(r"\s", text)[-1]
    if _GLUE_AFTER_MARK.search(word):
        return 2
    return 1 if _GLUE_AFTER_SYLLABLE.search(word) else 0


def glue_step(state: int, text: str) -> tuple[int, bool]:
    """The glue state after ``text`` follows a line in ``state``, and whether ``text`` glues a
    stray fragment on (Hangul right after clause punctuation, in any word: a later word with no
    Hangul would leave that one the line's ending)."""
    joined = unicodedata.normalize("NFC", GLUE_PREFIXES[state] + text)
    return glue_state(joined), _STRAY_RE.search(joined) is not None


def rhyme_syllables(line: str) -> str:
    """The Hangul syllables a line's rhyme is read from, in order: all of them but a stray
    fragment glued after clause punctuation in the last word that holds Hangul (module doc)."""
    words = unicodedata.normalize("NFC", line).split()
    for i in range(len(words) - 1, -1, -1):
        if hangul_syllables(words[i]):
            stray = _STRAY_RE.search(words[i])
            last = words[i][: stray.start()] if stray else words[i]
            return hangul_syllables("".join(words[:i])) + hangul_syllables(last)
    return ""


def last_syllables(line: str, n: int) -> str:
    """The last ``n`` syllables of ``rhyme_syllables(line)`` (fewer if it has fewer)."""
    if n < 1:
        return ""
    return rhyme_syllables(line)[-n:]


def rhyme_key(line: str, options: RhymeOptions | None = None) -> str | None:
    """The rhyme key of a line ending, e.g. "ㅏ" or "ㅏ-ㅗ"; None for a line with no Hangul."""
    options = options or RhymeOptions()
    tail = last_syllables(line, options.syllables)
    if not tail:
        return None
    parts = []
    for ch in tail:
        jamo = decompose(ch)
        assert jamo is not None  # last_syllables returns Hangul syllables only
        part = MEDIALS[medial_class(jamo.medial_index, options.families)]
        if options.strict:
            part += FINALS[final_class(jamo.final_index, options.families)]
        parts.append(part)
    return "-".join(parts)


def rhyme_label(line: str, options: RhymeOptions | None = None) -> str | None:
    """A line's ending as shown to the writer: its ``rhyme_key`` with the line's own vowels
    (``own_vowels``), so 네 shows ㅔ where its key is ㅐ."""
    return own_vowels(rhyme_key(line, options), line)


def own_vowels(key: str | None, line: str) -> str | None:
    """``key``, a rhyme key of ``line``, with each syllable's own vowel in place of its
    family's representative: a key compares, a label tells the writer what the line ends on
    (네 shows ㅔ, not ㅐ; lines of one family then show their own vowels in one rhyme colour).
    A final (strict mode) stays as the key compares it, its sound at a word's end (닭: ㄱ).
    A key that is not the line's comes back unchanged."""
    if not key:
        return key
    parts = key.split("-")
    tail = last_syllables(line, len(parts))
    if len(tail) != len(parts):
        return key
    out = []
    for ch, part in zip(tail, parts):
        jamo = decompose(ch)
        assert jamo is not None  # last_syllables returns Hangul syllables only
        if part[:1] not in (jamo.medial, MEDIALS[medial_class(jamo.medial_index)]):
            return key
        out.append(jamo.medial + part[1:])
    return "-".join(out)


def family_label(key: str | None, families: bool = True) -> str | None:
    """``key`` as the endings that meet it, for a message about a rhyme to reach: with
    ``families`` each part lists its family's vowels ("ㅐ" -> "ㅐ/ㅔ", "ㅐㄴ-ㅏ" -> "ㅐㄴ/ㅔㄴ-ㅏ"),
    since a representative alone reads as if 네 would not do. Finals stay as compared."""
    if not key or not families:
        return key
    out = []
    for part in key.split("-"):
        head, rest = part[:1], part[1:]
        if head not in MEDIALS:
            return key
        rep = MEDIAL_FAMILY[MEDIALS.index(head)]
        members = [MEDIALS[rep]] + [m for i, m in enumerate(MEDIALS) if MEDIAL_FAMILY[i] == rep and i != rep]
        out.append("/".join(m + rest for m in members))
    return "-".join(out)


def rhymes_with(a: str, b: str, options: RhymeOptions | None = None) -> bool:
    """True when both lines have a rhyme key and the keys are equal."""
    key_a = rhyme_key(a, options)
    return key_a is not None and key_a == rhyme_key(b, options)


def group_keys(keys: list[str | None]) -> list[int | None]:
    """Group ids 0, 1, 2... by first appearance of each key; None stays None."""
    ids: dict[str, int] = {}
    return [None if k is None else ids.setdefault(k, len(ids)) for k in keys]


def group_rhymes(lines: list[str], options: RhymeOptions | None = None) -> list[int | None]:
    """Rhyme group id per line: lines with equal keys share an id; no key -> None."""
    return group_keys([rhyme_key(line, options) for line in lines])


def group_letter(group: int | None) -> str:
    """Scheme letter for a group id counted from 0 within one scheme ("x" for None)."""
    if group is None:
        return NO_RHYME
    return _LETTERS[group] if group < len(_LETTERS) else _OVERFLOW_LETTER


def scheme_letters(keys: list[str | None]) -> list[str]:
    """One scheme letter per key, A for the first key seen, B for the next new one..."""
    return [group_letter(g) for g in group_keys(keys)]


def rhyme_scheme(lines: list[str], options: RhymeOptions | None = None) -> str:
    """The rhyme scheme of ``lines``, e.g. "AABB" or "ABAB"; "x" for lines with no key."""
    return "".join(scheme_letters([rhyme_key(line, options) for line in lines]))


_LINE_BREAK_RE = re.compile(r"[\r\n]")


def syllable_profile(text: str) -> tuple[int, int, int, bool]:
    """What a piece of text (e.g. one vocabulary token) adds to the line being written.

    Returns ``(count, medial, final, ends_line)``.  ``ends_line`` is True when the text
    contains a line break (\\n or \\r); then ``count`` and the last syllable are taken
    from the text before the first break, since what follows belongs to the next line.
    ``count`` uses ``count_syllables``.  ``medial``/``final`` are the raw indices into
    MEDIALS/FINALS of the last Hangul syllable (-1, -1 when there is none); map them
    with ``medial_class``/``final_class`` to compare by family.
    """
    brk = _LINE_BREAK_RE.search(text)
    ends_line = brk is not None
    if brk is not None:
        text = text[: brk.start()]
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)  # decomposed Hangul: rare, slow path
    medial = final = -1
    # A direct scan rather than decompose(): this runs once per vocabulary entry.
    for ch in reversed(text):
        cp = ord(ch)
        if SYLLABLE_FIRST <= cp <= SYLLABLE_LAST:
            index = cp - SYLLABLE_FIRST
            medial, final = (index % 588) // 28, index % 28
            break
    return count_syllables(text), medial, final, ends_line
