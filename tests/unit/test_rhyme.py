"""Rhyme keys, vowel families, strict finals, groups, schemes and the vocabulary profile."""

from __future__ import annotations

import dataclasses
import random
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kolyric.korean.hangul import FINALS, MEDIALS
from kolyric.korean.rhyme import (
    RhymeOptions,
    final_class,
    group_letter,
    group_rhymes,
    last_syllables,
    medial_class,
    own_vowels,
    rhyme_key,
    rhyme_label,
    rhyme_scheme,
    rhymes_with,
    syllable_profile,
)

# Rhymes on 가/가, then 고/고.
AABB_VERSE = [
    "하늘 위로 날아가",
    "구름 따라 흘러가",
    "밤이 오면 잠이 들고",
    "꿈을 꾸며 노래하고",
]
# Rhymes on 에서/에서 and 러요/러요 (so also with two syllables).
ABAB_VERSE = [
    "너의 눈빛 속에서",
    "나는 길을 잃어요",
    "어둠이 내린 거리에서",
    "혼자 너를 불러요",
]

DEFAULT = RhymeOptions()
STRICT = RhymeOptions(strict=True)
NO_FAMILIES = RhymeOptions(families=False)
STRICT_NO_FAMILIES = RhymeOptions(strict=True, families=False)


@pytest.mark.parametrize("bad", [0, 4, -1, True, 1.5, "2"])
def test_options_validate_syllables(bad: object) -> None:
    with pytest.raises(ValueError, match=r"syllables.*\[1, 3\]"):
        RhymeOptions(syllables=bad)  # type: ignore[arg-type]


def test_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT.strict = True  # type: ignore[misc]


@pytest.mark.parametrize(
    ("line", "n", "tail"),
    [
        ("사랑해요!!  ", 1, "요"),
        ("너를 사랑해 baby", 1, "해"),  # a trailing Latin word is skipped
        ("오늘은 24", 1, "은"),  # and so are trailing digits
        ("사랑 너", 2, "랑너"),  # the tail may span words
        ("가", 3, "가"),
        ("hello 123", 1, ""),
        ("ㅋㅋㅋ", 1, ""),
    ],
)
def test_last_syllables(line: str, n: int, tail: str) -> None:
    assert last_syllables(line, n) == tail


@pytest.mark.parametrize(
    ("line", "options", "key"),
    [
        ("날아가", DEFAULT, "ㅏ"),
        ("날아가", RhymeOptions(syllables=2), "ㅏ-ㅏ"),
        ("노래하고", RhymeOptions(syllables=3), "ㅐ-ㅏ-ㅗ"),
        ("사랑", STRICT, "ㅏㅇ"),
        ("사랑", RhymeOptions(syllables=2, strict=True), "ㅏ-ㅏㅇ"),
        ("네", DEFAULT, "ㅐ"),
        ("네", NO_FAMILIES, "ㅔ"),
        ("예", DEFAULT, "ㅒ"),
        ("돼", DEFAULT, "ㅚ"),
        ("웨", DEFAULT, "ㅚ"),
        ("웨", NO_FAMILIES, "ㅞ"),
        ("희", DEFAULT, "ㅣ"),
        ("낮", STRICT, "ㅏㄷ"),
        ("낫", STRICT, "ㅏㄷ"),
        ("낮", STRICT_NO_FAMILIES, "ㅏㅈ"),
        ("닭", STRICT, "ㅏㄱ"),
        ("닭", STRICT_NO_FAMILIES, "ㅏㄺ"),
        ("값", STRICT, "ㅏㅂ"),
        ("앉", STRICT, "ㅏㄴ"),
        ("hello", DEFAULT, None),
        ("ㅋㅋㅋ", STRICT, None),
        ("", DEFAULT, None),
    ],
)
def test_rhyme_key(line: str, options: RhymeOptions, key: str | None) -> None:
    assert rhyme_key(line, options) == key


@pytest.mark.parametrize(
    ("a", "b", "options", "expected"),
    [
        ("사랑해", "함께해", DEFAULT, True),
        ("노래해", "말해요", DEFAULT, False),
        ("내", "네", DEFAULT, True),
        ("내", "네", NO_FAMILIES, False),
        ("밤", "방", DEFAULT, True),
        ("밤", "방", STRICT, False),
        ("밤", "감", STRICT, True),
        ("꽃", "봇", STRICT, True),  # both end in the sound ㄷ
        ("꽃", "봇", STRICT_NO_FAMILIES, False),
        ("hello", "world", DEFAULT, False),  # no key on either side never rhymes
    ],
)
def test_rhymes_with(a: str, b: str, options: RhymeOptions, expected: bool) -> None:
    assert rhymes_with(a, b, options) is expected


def test_aabb_verse() -> None:
    assert group_rhymes(AABB_VERSE) == [0, 0, 1, 1]
    assert rhyme_scheme(AABB_VERSE) == "AABB"
    assert rhyme_scheme(AABB_VERSE, STRICT) == "AABB"


@pytest.mark.parametrize("options", [DEFAULT, RhymeOptions(syllables=2), STRICT, NO_FAMILIES])
def test_abab_verse(options: RhymeOptions) -> None:
    assert rhyme_scheme(ABAB_VERSE, options) == "ABAB"
    assert group_rhymes(ABAB_VERSE, options) == [0, 1, 0, 1]


def test_three_syllables_break_the_abab_verse() -> None:
    # 속에서 (ㅗ-ㅔ-ㅓ) vs 리에서 (ㅣ-ㅔ-ㅓ), 잃어요 vs 불러요: no pair matches any more.
    assert rhyme_scheme(ABAB_VERSE, RhymeOptions(syllables=3)) == "ABCD"


def test_families_switch() -> None:
    lines = ["그대 곁에 있을래", "바람 부는 이 거리에"]
    assert rhyme_scheme(lines, DEFAULT) == "AA"
    assert rhyme_scheme(lines, NO_FAMILIES) == "AB"


def test_lines_without_hangul_are_x() -> None:
    lines = ["사랑해", "oh yeah", "함께해", "...", "날 봐"]
    assert group_rhymes(lines) == [0, None, 0, None, 1]
    assert rhyme_scheme(lines) == "AxAxB"
    assert rhyme_scheme([]) == ""


def test_group_letters_skip_x_and_overflow() -> None:
    letters = [group_letter(i) for i in range(51)]
    assert letters[0] == "A" and letters[25] == "Z" and letters[26] == "a"
    assert "x" not in letters and len(set(letters)) == 51
    assert group_letter(51) == group_letter(500) == "+"
    assert group_letter(None) == "x"


def test_class_helpers_match_keys() -> None:
    assert MEDIALS[medial_class(MEDIALS.index("ㅔ"))] == "ㅐ"
    assert MEDIALS[medial_class(MEDIALS.index("ㅔ"), families=False)] == "ㅔ"
    assert FINALS[final_class(FINALS.index("ㅄ"))] == "ㅂ"
    assert final_class(0) == 0


@pytest.mark.parametrize(
    ("text", "profile"),
    [
        ("▁사랑", (2, MEDIALS.index("ㅏ"), FINALS.index("ㅇ"), False)),
        ("해\n", (1, MEDIALS.index("ㅐ"), 0, True)),
        ("요!\n그대", (1, MEDIALS.index("ㅛ"), 0, True)),  # only what precedes the break
        ("\n그대", (0, -1, -1, True)),
        ("닭!", (1, MEDIALS.index("ㅏ"), FINALS.index("ㄺ"), False)),
        ("abc", (1, -1, -1, False)),
        ("24", (3, -1, -1, False)),
        ("", (0, -1, -1, False)),
        ("\u1112\u1161\u11ab", (1, MEDIALS.index("ㅏ"), FINALS.index("ㄴ"), False)),  # NFD 한
    ],
)
def test_syllable_profile(text: str, profile: tuple[int, int, int, bool]) -> None:
    assert syllable_profile(text) == profile


def test_syllable_profile_is_fast_over_a_vocabulary() -> None:
    rng = random.Random(7)
    pool = [chr(rng.randint(0xAC00, 0xD7A3)) for _ in range(800)] + list("▁abcxyz .,!?\n0123456789ㅋ")
    vocab = ["".join(rng.choices(pool, k=rng.randint(1, 8))) for _ in range(51_200)]
    start = time.perf_counter()
    for token in vocab:
        syllable_profile(token)
    assert time.perf_counter() - start < 1.0


PUNCTUATION = st.text(alphabet=" \t.,!?~…'\"-()", max_size=8)


@given(st.text(), PUNCTUATION, st.integers(1, 3), st.booleans(), st.booleans())
def test_trailing_punctuation_does_not_change_the_key(
    line: str, tail: str, n: int, strict: bool, families: bool
) -> None:
    options = RhymeOptions(syllables=n, strict=strict, families=families)
    assert rhyme_key(line + tail, options) == rhyme_key(line, options)


@pytest.mark.parametrize(
    ("line", "n", "tail"),
    [
        # Hangul glued on after clause punctuation is a stray fragment, not the line's end
        ("가슴으로 가려,-에", 1, "려"),
        ("가슴으로 가려,-에", 2, "가려"),
        ("꽃도 입가에 지!.에", 1, "지"),
        ("당신은 꽃이 나!…해", 1, "나"),
        ("사랑이라 한낱….에", 1, "낱"),
        ("그렇게 보신지,.에", 1, "지"),
        ("불에 기름은, 꾀!'네", 1, "꾀"),
        ("가려，에", 1, "려"),  # full-width comma
        ("가려;에 baby!", 1, "려"),  # the last word holding Hangul, Latin after it skipped
        ("가려,에 💕 2024", 1, "려"),
        # a space after the mark starts a word of its own
        ("가려, 에", 1, "에"),
        ("그래. 너", 2, "래너"),
        # a mark inside a number or an abbreviation, and hyphens, tildes, brackets, emoji
        ("가격은 3,000원", 1, "원"),
        ("총3,000원", 1, "원"),
        ("나의 A.I.가", 1, "가"),
        ("사랑-해", 1, "해"),
        ("사랑해~요", 1, "요"),
        ("사랑해(요)", 1, "요"),
        ("사랑해💕해", 1, "해"),
        ("가려,", 1, "려"),
        ("…에", 1, "에"),  # nothing before the mark: 에 is the line's only word
        (",에", 1, "에"),
        ("사랑해,baby", 1, "해"),
    ],
)
def test_stray_fragments_after_clause_punctuation_are_not_the_ending(line: str, n: int, tail: str) -> None:
    assert last_syllables(line, n) == tail


def test_a_stray_fragment_does_not_make_a_rhyme() -> None:
    assert not rhymes_with("가슴으로 가려,-에", "너에게")
    assert rhymes_with("가슴으로 가려,-에", "멀리 떠나가려")
    assert rhyme_scheme(["가슴으로 가려,-에", "꽃도 입가에 지!.에", "그렇게 보신지,.에"]) == "ABB"


@given(st.text(), st.text(alphabet=",.!?…;:", min_size=1, max_size=3), st.text(alphabet="에해네가", max_size=3))
def test_a_glued_fragment_never_changes_a_hangul_ending(word: str, marks: str, fragment: str) -> None:
    line = "바람이 분다" + word.replace(" ", "").replace("\n", "")
    if not line[-1:] or not "\uac00" <= line[-1] <= "\ud7a3":
        line += "다"
    assert rhyme_key(line + marks + fragment) == rhyme_key(line)


@pytest.mark.parametrize(
    ("line", "options", "label", "key"),
    [
        ("눈물이 흐르네", DEFAULT, "ㅔ", "ㅐ"),  # its own vowel, though it rhymes with 내
        ("너에게 줄래", DEFAULT, "ㅐ", "ㅐ"),
        ("예", DEFAULT, "ㅖ", "ㅒ"),
        ("웨", DEFAULT, "ㅞ", "ㅚ"),
        ("희", DEFAULT, "ㅢ", "ㅣ"),
        ("그대 곁에", RhymeOptions(syllables=2), "ㅕ-ㅔ", "ㅕ-ㅐ"),
        ("닭", STRICT, "ㅏㄱ", "ㅏㄱ"),  # a final shows as it sounds, as it is compared
        ("세상", RhymeOptions(syllables=2, strict=True), "ㅔ-ㅏㅇ", "ㅐ-ㅏㅇ"),
        ("네", NO_FAMILIES, "ㅔ", "ㅔ"),
        ("hello", DEFAULT, None, None),
    ],
)
def test_rhyme_label_shows_the_lines_own_vowels(line: str, options: RhymeOptions, label: str | None, key) -> None:
    assert rhyme_label(line, options) == label
    assert rhyme_key(line, options) == key


def test_own_vowels_leaves_a_key_of_another_line_alone() -> None:
    assert own_vowels("ㅏ", "흐르네") == "ㅏ"
    assert own_vowels("ㅐ-ㅐ", "네") == "ㅐ-ㅐ"
    assert own_vowels(None, "네") is None
    assert own_vowels("ㅐ", "흐르네") == "ㅔ"
