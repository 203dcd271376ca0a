"""Jamo decomposition, Sino-Korean number readings and the syllable-counting rule."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kolyric.korean.hangul import (
    FINALS,
    INITIALS,
    MEDIALS,
    count_syllables,
    decompose,
    hangul_syllables,
    is_hangul_syllable,
    latin_syllables,
    number_reading,
    split_lines,
)


@pytest.mark.parametrize(
    ("ch", "initial", "medial", "final"),
    [
        ("가", "ㄱ", "ㅏ", ""),
        ("한", "ㅎ", "ㅏ", "ㄴ"),
        ("꽃", "ㄲ", "ㅗ", "ㅊ"),
        ("뛰", "ㄸ", "ㅟ", ""),
        ("의", "ㅇ", "ㅢ", ""),
        ("닭", "ㄷ", "ㅏ", "ㄺ"),
        ("값", "ㄱ", "ㅏ", "ㅄ"),
        ("앉", "ㅇ", "ㅏ", "ㄵ"),
        ("삶", "ㅅ", "ㅏ", "ㄻ"),
        ("많", "ㅁ", "ㅏ", "ㄶ"),
        ("있", "ㅇ", "ㅣ", "ㅆ"),
        ("힣", "ㅎ", "ㅣ", "ㅎ"),
    ],
)
def test_decompose_known_syllables(ch: str, initial: str, medial: str, final: str) -> None:
    jamo = decompose(ch)
    assert jamo is not None
    assert (jamo.initial, jamo.medial, jamo.final) == (initial, medial, final)
    assert INITIALS[jamo.initial_index] == initial
    assert MEDIALS[jamo.medial_index] == medial
    assert FINALS[jamo.final_index] == final


def test_decompose_indices_at_the_ends_of_the_block() -> None:
    first, last = decompose("가"), decompose("힣")
    assert first is not None and last is not None
    assert first[3:] == (0, 0, 0)
    assert last[3:] == (18, 20, 27)


def test_every_syllable_matches_unicode_nfd() -> None:
    # NFD splits a syllable into conjoining jamo U+1100+i, U+1161+m, U+11A7+f; an
    # independent check of the arithmetic over all 11,172 syllables.
    for cp in range(0xAC00, 0xD7A4):
        jamo = decompose(chr(cp))
        assert jamo is not None
        parts = [ord(c) for c in unicodedata.normalize("NFD", chr(cp))]
        assert parts[0] - 0x1100 == jamo.initial_index
        assert parts[1] - 0x1161 == jamo.medial_index
        assert (parts[2] - 0x11A7 if len(parts) == 3 else 0) == jamo.final_index


@pytest.mark.parametrize("text", ["a", "ㅋ", "ㅏ", "", "가나", "1", " ", "漢", "\u1100"])
def test_decompose_rejects_non_syllables(text: str) -> None:
    assert decompose(text) is None
    assert not is_hangul_syllable(text)


@pytest.mark.parametrize(
    ("digits", "reading"),
    [
        ("0", "영"),
        ("2", "이"),
        ("10", "십"),
        ("11", "십일"),
        ("24", "이십사"),
        ("100", "백"),
        ("1000", "천"),
        ("2024", "이천이십사"),
        ("10000", "만"),
        ("11000", "만천"),
        ("30500", "삼만오백"),
        ("100000000", "일억"),
        ("123456789012", "천이백삼십사억오천육백칠십팔만구천십이"),
        ("1000000000000", "일조"),
        ("007", "공공칠"),
        ("０２", "공이"),
    ],
)
def test_number_reading(digits: str, reading: str) -> None:
    assert number_reading(digits) == reading


def test_number_reading_of_long_runs_is_digit_by_digit() -> None:
    assert number_reading("1" * 21) == "일" * 21
    assert len(number_reading("9" * 5000)) == 5000  # no int() of a huge string


@pytest.mark.parametrize("bad", ["", "12a", "-1", "٣"])
def test_number_reading_rejects_non_digits(bad: str) -> None:
    with pytest.raises(ValueError, match="digits"):
        number_reading(bad)


@pytest.mark.parametrize(
    ("word", "count"),
    [
        ("love", 1),
        ("smile", 1),
        ("the", 1),
        ("I", 1),
        ("yeah", 1),
        ("you're", 1),
        ("don't", 1),
        ("baby", 2),
        ("little", 2),
        ("apple", 2),
        ("agree", 2),
        ("hello", 2),
        ("beautiful", 3),
        ("rock'n'roll", 2),
        ("DJ", 1),
    ],
)
def test_latin_syllables(word: str, count: int) -> None:
    assert latin_syllables(word) == count


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("", 0),
        ("사랑해", 3),
        ("사랑해요!!", 4),
        ("  너를   사랑해  ", 5),
        ("ㅋㅋㅋ", 0),
        ("ㅠㅠ 슬퍼", 2),
        ("2", 1),
        ("10", 1),
        ("24", 3),
        ("24시간", 5),
        ("2024년", 6),
        ("1,000원", 2),
        ("3.5", 3),
        ("007", 3),
        ("100%", 1),
        ("２４", 3),
        ("사랑해 baby", 5),
        ("Hello world", 3),
        ("oh-oh-oh", 3),
        ("🙂🎵♥", 0),
        ("…!?~·「」", 0),
        ("漢字 かな", 0),
        ("café", 1),  # é is not ASCII: only "caf" counts
        (unicodedata.normalize("NFD", "한국어"), 3),
    ],
)
def test_count_syllables(text: str, count: int) -> None:
    assert count_syllables(text) == count


def test_hangul_syllables_normalises_first() -> None:
    assert hangul_syllables(unicodedata.normalize("NFD", "a한b글!")) == "한글"


def test_split_lines_counts_like_an_editor() -> None:
    assert split_lines("a\r\nb\rc\nd") == ["a", "b", "c", "d"]
    assert split_lines("a\u2028b") == ["a\u2028b"]


PUNCTUATION = st.text(alphabet=" \t.,!?~…'\"-()", max_size=8)


@given(st.text())
def test_count_never_raises_and_is_not_negative(text: str) -> None:
    assert count_syllables(text) >= 0


@given(st.text(), PUNCTUATION)
def test_trailing_punctuation_does_not_change_the_count(text: str, tail: str) -> None:
    assert count_syllables(text + tail) == count_syllables(text)
