"""Section headers, unnamed leading sections, blank lines, and the whole-draft analysis."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kolyric.korean.hangul import count_syllables
from kolyric.korean.rhyme import RhymeOptions
from kolyric.korean.sections import analyse, header_kind, parse_sections

SONG = """\
오늘도 나는 길을 걸어
[Verse 1]
하늘 위로 날아가
구름 따라 흘러가

밤이 오면 잠이 들고
꿈을 꾸며 노래하고

[후렴]
너의 눈빛 속에서
나는 길을 잃어요
어둠이 내린 거리에서
혼자 너를 불러요

[Bridge]
oh yeah
멀리 날아가
"""


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("Verse 1", "verse"),
        ("verse2", "verse"),
        ("Chorus", "chorus"),
        ("Chorus x2", "chorus"),
        ("Pre-Chorus", "pre-chorus"),
        ("Pre Chorus 2", "pre-chorus"),
        ("Post-Chorus", "post-chorus"),
        ("Bridge", "bridge"),
        ("Intro", "intro"),
        ("Outro", "outro"),
        ("Hook", "hook"),
        ("Verse 2: 지민", "verse"),
        ("2nd Verse", "verse"),
        ("후렴", "chorus"),
        ("후렴 ×2", "chorus"),
        ("벌스 2", "verse"),
        ("1절", "verse"),
        ("브릿지", "bridge"),
        ("브리지", "bridge"),
        ("인트로", "intro"),
        ("아웃트로", "outro"),
        ("프리코러스", "pre-chorus"),
        ("랩", "rap"),
        ("Guitar Solo", "other"),
        ("가사", "other"),
    ],
)
def test_header_kind(name: str, kind: str) -> None:
    assert header_kind(name) == kind


def test_parse_sections_names_kinds_and_line_numbers() -> None:
    sections = parse_sections(SONG)
    assert [(s.name, s.kind, s.start_line) for s in sections] == [
        (None, None, 1),
        ("Verse 1", "verse", 2),
        ("후렴", "chorus", 9),
        ("Bridge", "bridge", 15),
    ]
    verse = sections[1]
    assert verse.lines[0] == (3, "하늘 위로 날아가")
    assert (5, "") in verse.lines  # blank lines keep their place


@pytest.mark.parametrize(
    ("line", "is_header"),
    [
        ("[Verse]", True),
        ("  [ 후렴 ]  ", True),
        ("[Chorus x2]", True),
        ("[]", False),
        ("[ ]", False),
        ("[Verse] 가사", False),
        ("[[Verse]]", False),
        ("가사 [Verse]", False),
    ],
)
def test_what_counts_as_a_header(line: str, is_header: bool) -> None:
    sections = parse_sections(line + "\n노래")
    assert (sections[0].name is not None) is is_header


def test_header_name_is_stripped() -> None:
    assert parse_sections("  [ 후렴 ]  \n노래")[0].name == "후렴"


def test_leading_blank_lines_make_no_unnamed_section() -> None:
    sections = parse_sections("\n\n[Intro]\n시작")
    assert [s.name for s in sections] == ["Intro"]
    assert sections[0].start_line == 3


def test_empty_header_section_is_kept() -> None:
    sections = parse_sections("[Intro]\n[Verse]\n가")
    assert [s.name for s in sections] == ["Intro", "Verse"]
    assert analyse("[Intro]\n").sections[0].pattern == ""


def test_analyse_song() -> None:
    analysis = analyse(SONG)
    unnamed, verse, chorus, bridge = analysis.sections
    assert unnamed.pattern == "9" and unnamed.scheme == "A"
    assert [line.number for line in verse.lines] == [3, 4, 6, 7]  # blank line 5 skipped
    assert verse.pattern == "7-7-8-8"
    assert verse.scheme == "AABB"
    assert chorus.pattern == "7-7-9-7"
    assert chorus.scheme == "ABAB"
    assert bridge.scheme == "xA"
    assert bridge.lines[0].rhyme_key is None and bridge.lines[0].group is None
    # Group ids are shared across the draft: the bridge's 날아가 rhymes with the verse.
    assert bridge.lines[1].group == verse.lines[0].group
    assert bridge.lines[1].letter == "A"


def test_analyse_options_are_used() -> None:
    analysis = analyse(SONG, RhymeOptions(syllables=3))
    assert analysis.sections[2].scheme == "ABCD"
    assert analysis.options.syllables == 3


def test_line_syllables_use_count_syllables() -> None:
    analysis = analyse("[Verse]\n24시간 너를 생각해 baby ㅋㅋ")
    line = analysis.lines[0]
    assert line.syllables == count_syllables(line.text) == 5 + 2 + 3 + 2


def test_to_dict_is_json() -> None:
    data = json.loads(json.dumps(analyse(SONG).to_dict(), ensure_ascii=False))
    assert data["options"] == {"syllables": 1, "strict": False, "families": True}
    assert data["line_count"] == 11
    verse = data["sections"][1]
    assert verse["name"] == "Verse 1" and verse["kind"] == "verse"
    assert verse["pattern"] == "7-7-8-8" and verse["scheme"] == "AABB"
    assert verse["lines"][0] == {
        "line": 3,
        "text": "하늘 위로 날아가",
        "syllables": 7,
        "rhyme_key": "ㅏ",
        "group": 1,
        "letter": "A",
        "rhyme_label": "ㅏ",
    }


def test_bom_and_crlf() -> None:
    plain = analyse(SONG).to_dict()
    assert analyse("\ufeff" + SONG.replace("\n", "\r\n")).to_dict() == plain


def test_empty_draft() -> None:
    assert analyse("").sections == ()
    assert analyse("\n  \n").to_dict()["line_count"] == 0


@given(st.text())
def test_analyse_never_raises(text: str) -> None:
    analysis = analyse(text)
    assert all(line.syllables >= 0 for line in analysis.lines)
    for section in analysis.sections:
        assert len(section.scheme) == len(section.lines)


@given(st.lists(st.sampled_from(["[Verse]", "[후렴]", "", "가나다", "hello", "[x]", "24"])))
def test_every_lyric_line_is_analysed_once(lines: list[str]) -> None:
    analysis = analyse("\n".join(lines))
    numbers = [line.number for line in analysis.lines]
    expected = [i for i, t in enumerate(lines, 1) if t.strip() and not t.startswith("[")]
    assert numbers == expected
