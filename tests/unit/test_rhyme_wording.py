"""What a writer reads about a rhyme: a line's own vowels (네 ends on ㅔ) where the key that
groups and checks lines is its family's (ㅐ), and every vowel that would meet a rhyme (ㅐ/ㅔ)."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
import torch

from kolyric.cli.lyrics import print_analysis
from kolyric.engine.lyric.explain import ConstraintExplanations
from kolyric.engine.lyric.plan import PlannedLine, Row
from kolyric.engine.lyric.report import check_lines
from kolyric.korean import RhymeOptions, analyse, family_label, rhyme_key
from kolyric.korean.hangul import MEDIALS


@pytest.mark.parametrize(
    ("key", "families", "shown"),
    [
        ("ㅐ", True, "ㅐ/ㅔ"),
        ("ㅣ", True, "ㅣ/ㅢ"),
        ("ㅚ", True, "ㅚ/ㅙ/ㅞ"),
        ("ㅒ-ㅏ", True, "ㅒ/ㅖ-ㅏ"),
        ("ㅐㄴ", True, "ㅐㄴ/ㅔㄴ"),
        ("ㅏ", True, "ㅏ"),
        ("ㅐ", False, "ㅐ"),
        (None, True, None),
    ],
)
def test_family_label(key: str | None, families: bool, shown: str | None) -> None:
    assert family_label(key, families) == shown


def test_family_label_lists_exactly_the_vowels_whose_key_it_is() -> None:
    options = RhymeOptions()
    for medial in MEDIALS:
        syllable = chr(0xAC00 + MEDIALS.index(medial) * 28)  # 가, 개, 갸 …
        key = rhyme_key(syllable, options)
        assert medial in family_label(key).split("/")
        for other in family_label(key).split("/"):
            assert rhyme_key(chr(0xAC00 + MEDIALS.index(other) * 28), options) == key


def test_a_line_reason_shows_its_own_vowel_and_the_vowels_that_would_do() -> None:
    one = RhymeOptions()
    ne, ga = check_lines(["눈물이 흐르네", "하늘 위로 날아가"], [None, None], ["ㅏ", "ㅐ"], [None, None], one)
    assert ne.problem == "ends on rhyme ㅔ, not ㅏ"
    assert ne.rhyme == "ㅐ"  # the key stays the family's
    assert ga.problem == "ends on rhyme ㅏ, not ㅐ/ㅔ"
    apart = RhymeOptions(families=False)
    (ne,) = check_lines(["눈물이 흐르네"], [None], ["ㅐ"], [None], apart)
    assert ne.problem == "ends on rhyme ㅔ, not ㅐ"


def test_a_scheme_reason_names_the_family_of_the_first_line() -> None:
    texts = ["그대 곁에 있을래", "하늘 위로 날아가"]
    lines = check_lines(texts, [None, None], [None, None], ["A", "A"], RhymeOptions())
    assert lines[1].problem == "ends on rhyme ㅏ, not ㅐ/ㅔ"


def test_the_explanation_of_a_rhyme_no_token_reaches_lists_its_family() -> None:
    holder = type("Holder", (ConstraintExplanations,), {})()
    ae = ((MEDIALS.index("ㅐ"), -1),)
    holder.lines = [PlannedLine(5, "A", ae)]
    holder.counted = True
    holder.spec = SimpleNamespace(families=True)
    holder._key = lambda row, j: holder.lines[j].key
    why = holder.explain(Row(line=0, count=2), torch.zeros(4, dtype=torch.bool))
    assert why == (
        "line 1 of 1, 2 of 5 syllables: no token in the vocabulary can continue the line ending on the rhyme ㅐ/ㅔ"
    )
    holder.spec = SimpleNamespace(families=False)
    assert holder.explain(Row(line=0, count=2), torch.zeros(4, dtype=torch.bool)).endswith("the rhyme ㅐ")


def test_a_rhyme_the_vocabulary_cannot_end_on_is_named_with_its_family() -> None:
    from kolyric.engine.lyric.state import ConstraintState

    state = ConstraintState.__new__(ConstraintState)  # only what the check before generating reads
    state.lines = [PlannedLine(None, "A", ((MEDIALS.index("ㅐ"), -1),))]
    state.counted, state.newline = False, True
    state.bank = SimpleNamespace(ends_in=lambda key: False)
    state.spec = SimpleNamespace(families=True)
    assert state._impossible(Row(line=-1)) == "line 1: no token in the vocabulary ends in a syllable rhyming ㅐ/ㅔ"
    state.spec = SimpleNamespace(families=False)
    assert state._impossible(Row(line=-1)).endswith("rhyming ㅐ")


def test_the_lyrics_check_table_shows_the_line_own_vowels_and_groups_by_family() -> None:
    out = io.StringIO()
    print_analysis(analyse("[Verse]\n그대 곁에 있을래\n눈물이 흐르네\n"), out)
    rows = [line.split() for line in out.getvalue().splitlines() if line.strip()[:1].isdigit()]
    assert [row[2:4] for row in rows[:2]] == [["ㅐ", "A"], ["ㅔ", "A"]]
