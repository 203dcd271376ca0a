"""Hangul jamo decomposition and the one syllable-counting rule kolyric uses.

A precomposed Hangul syllable (U+AC00..U+D7A3) is split into its jamo by arithmetic on
the code point: ``index = cp - 0xAC00``, ``initial = index // 588``,
``medial = (index % 588) // 28``, ``final = index % 28`` (final 0 means no 받침).

Counting rule (``count_syllables``), applied everywhere a syllable count is shown:

* Text is first NFC-normalised, so decomposed (conjoining-jamo) Hangul counts like
  precomposed Hangul.
* Each Hangul syllable counts 1.
* Each run of digits counts the syllables of its Sino-Korean reading: "2" = 이 = 1,
  "10" = 십 = 1, "24" = 이십사 = 3, "10000" = 만 = 1, "2024" = 이천이십사 = 5.
  Integers up to 10^20 - 1 (through 경) are read this way.  A run with a leading zero
  ("007") or longer than 20 digits is read digit by digit (공공칠 = 3).  A thousands
  separator ("1,000" = 천) and a decimal point ("3.5" = 삼점오 = 3) are understood.
  Fullwidth digits (０-９) count like ASCII digits; other scripts' digits count 0.
* Each Latin word (a run of ASCII letters; apostrophes between letters allowed) counts
  its groups of vowels (a, e, i, o, u, y), at least 1; a silent trailing "e" is not
  counted when the word has another vowel group, unless the word ends in
  consonant + "le" ("little" = 2).  This is an approximation of English syllables.
* Everything else counts 0: lone jamo such as ㅋㅋ or ㅠㅠ, punctuation, spaces,
  symbols (%, &), emoji, and other scripts (Hanja, kana, accented Latin letters).
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

SYLLABLE_FIRST = 0xAC00
SYLLABLE_LAST = 0xD7A3
_PER_INITIAL = 21 * 28  # 588 syllables share one initial consonant
_PER_MEDIAL = 28

INITIALS = "ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ"
MEDIALS = "ㅏㅐㅑㅒㅓㅔㅕㅖㅗㅘㅙㅚㅛㅜㅝㅞㅟㅠㅡㅢㅣ"
# Index 0 is "no final consonant"; a tuple because that entry is the empty string.
FINALS: tuple[str, ...] = ("",) + tuple("ㄱㄲㄳㄴㄵㄶㄷㄹㄺㄻㄼㄽㄾㄿㅀㅁㅂㅄㅅㅆㅇㅈㅊㅋㅌㅍㅎ")

assert len(INITIALS) == 19 and len(MEDIALS) == 21 and len(FINALS) == 28


class Jamo(NamedTuple):
    """The three parts of one Hangul syllable, as compatibility jamo and as indices."""

    initial: str
    medial: str
    final: str  # "" when the syllable has no 받침
    initial_index: int
    medial_index: int
    final_index: int  # 0 when the syllable has no 받침


def is_hangul_syllable(ch: str) -> bool:
    """True for one precomposed Hangul syllable character (가..힣)."""
    return len(ch) == 1 and SYLLABLE_FIRST <= ord(ch) <= SYLLABLE_LAST


def decompose(ch: str) -> Jamo | None:
    """Split one Hangul syllable into initial, medial and final; None for anything else."""
    if not is_hangul_syllable(ch):
        return None
    index = ord(ch) - SYLLABLE_FIRST
    i, m, f = index // _PER_INITIAL, (index % _PER_INITIAL) // _PER_MEDIAL, index % _PER_MEDIAL
    return Jamo(INITIALS[i], MEDIALS[m], FINALS[f], i, m, f)


def hangul_syllables(text: str) -> str:
    """The Hangul syllables of ``text`` in order (after NFC), everything else dropped."""
    return "".join(ch for ch in unicodedata.normalize("NFC", text) if is_hangul_syllable(ch))


# --- numbers -------------------------------------------------------------------------

_DIGITS = "영일이삼사오육칠팔구"
_SMALL_UNITS = ((3, "천"), (2, "백"), (1, "십"))
_BIG_UNITS = ("", "만", "억", "조", "경")  # each one 10^4 times the previous
_MAX_READ_DIGITS = 4 * len(_BIG_UNITS)  # 20 digits: up to 10^20 - 1
_FULLWIDTH = str.maketrans("０１２３４５６７８９", "0123456789")


def _read_group(value: int) -> str:
    """Reading of 1..9999; "일" is dropped before 천/백/십 (천 not 일천)."""
    out = []
    for power, unit in _SMALL_UNITS:
        digit = value // 10**power % 10
        if digit:
            out.append(("" if digit == 1 else _DIGITS[digit]) + unit)
    if value % 10:
        out.append(_DIGITS[value % 10])
    return "".join(out)


def number_reading(digits: str) -> str:
    """The Sino-Korean reading of a run of digits, in Hangul ("24" -> "이십사").

    Leading zeros or more than 20 digits: digit by digit, with 공 for zero ("007" -> 공공칠).
    """
    digits = digits.translate(_FULLWIDTH)
    if not digits or not digits.isascii() or not digits.isdigit():
        raise ValueError(f"digits must be a non-empty run of 0-9, got {digits!r}")
    if digits == "0":
        return "영"
    if digits[0] == "0" or len(digits) > _MAX_READ_DIGITS:
        return "".join("공" if d == "0" else _DIGITS[int(d)] for d in digits)
    value, out = int(digits), []
    for level in range(len(_BIG_UNITS) - 1, -1, -1):
        group = value // 10 ** (4 * level) % 10000
        if not group:
            continue
        # 10000 is "만", not "일만"; 억 and above keep the 일 ("일억").
        out.append(("" if (group == 1 and level == 1) else _read_group(group)) + _BIG_UNITS[level])
    return "".join(out)


# --- counting ------------------------------------------------------------------------

# One pass over the text finds every unit that can carry syllables; order matters:
# numbers with separators before plain digit runs.
_UNIT_RE = re.compile(
    r"(?P<num>[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+\.[0-9]+|[0-9]+)"
    r"|(?P<latin>[A-Za-z]+(?:'[A-Za-z]+)*)"
    r"|(?P<hangul>[\uac00-\ud7a3]+)"
)
_VOWEL_GROUP_RE = re.compile(r"[aeiouy]+")


def number_syllables(number: str) -> int:
    """Syllables of one number as matched by the counter ("1,000" = 1, "3.14" = 4)."""
    number = number.translate(_FULLWIDTH)
    whole, _, fraction = number.replace(",", "").partition(".")
    count = len(number_reading(whole))
    if fraction:
        count += 1 + len(fraction)  # 점, then the fraction digit by digit
    return count


def latin_syllables(word: str) -> int:
    """Approximate English syllables of one word by counting vowel groups (min 1)."""
    w = word.lower().replace("'", "")
    groups = _VOWEL_GROUP_RE.findall(w)
    n = len(groups)
    if n > 1 and groups[-1] == "e" and w.endswith("e"):
        consonant_le = w.endswith("le") and len(w) > 2 and w[-3] not in "aeiouy"
        if not consonant_le:
            n -= 1  # "love", "smile": the final e is silent
    return max(n, 1)


def count_syllables(text: str) -> int:
    """Syllables of ``text`` by the rule in this module's docstring; never negative."""
    text = unicodedata.normalize("NFC", text).translate(_FULLWIDTH)
    total = 0
    for match in _UNIT_RE.finditer(text):
        kind = match.lastgroup
        if kind == "hangul":
            total += match.end() - match.start()
        elif kind == "num":
            total += number_syllables(match.group())
        else:
            total += latin_syllables(match.group())
    return total


_LINE_BREAK_RE = re.compile(r"\r\n|\r|\n")


def split_lines(text: str) -> list[str]:
    """Split on \\n, \\r\\n or \\r only, so line numbers match what editors show."""
    return _LINE_BREAK_RE.split(text)
