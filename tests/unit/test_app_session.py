"""The playground's Textual-free parts: the prompt's draft context, rhyme colours, report badges."""

from __future__ import annotations

from types import SimpleNamespace

from kolyric.app.session import CandidateState, draft_context
from kolyric.app.widgets.rhyme import group_colours
from kolyric.engine.lyric.report import badge as report_badge
from kolyric.korean import RhymeOptions, analyse


def test_draft_context_keeps_lines_up_to_the_cursor():
    lines = ["바람이 분다", "", "너를 보낸 날", "다시 만날", "아직 안 쓴 줄"]
    assert draft_context(lines, 3) == ("바람이 분다", "너를 보낸 날", "다시 만날")
    assert draft_context(lines, 0) == ("바람이 분다",)


def test_draft_context_leaves_out_section_headers():
    lines = ["[Verse 1]", "바람이 분다", "", "[후렴]", "다시 올 수 있을까"]
    assert draft_context(lines, 4) == ("바람이 분다", "다시 올 수 있을까")
    assert draft_context(lines, 3, "다시") == ("바람이 분다",)  # never a header as the last context line


def test_draft_context_leaves_out_the_prompt_when_it_is_the_cursor_line():
    lines = ["바람이 분다", "다시 만날"]
    assert draft_context(lines, 1, "다시 만날 ") == ("바람이 분다",)
    assert draft_context(lines, 1, "다른 줄") == ("바람이 분다", "다시 만날")
    assert draft_context(lines, 0, "다시 만날") == ("바람이 분다",)  # only the last line is compared


def test_group_colours_skip_lines_that_rhyme_with_nothing():
    analysis = analyse("[A]\n가다\n오고\n나다\n\n[B]\n보고\n하늘", RhymeOptions())
    colours = group_colours(analysis)
    groups = [line.group for line in analysis.lines]
    assert colours == {groups[0]: 0, groups[1]: 1}  # ㅏ (가다, 나다) first, then ㅗ (오고, 보고)
    assert groups[4] not in colours  # 하늘 (ㅡ) is alone


def test_report_badge_and_constrained_joiner():
    from kolyric.engine.lyric.report import check_lines
    from kolyric.korean import RhymeOptions

    one, two = RhymeOptions(), RhymeOptions(syllables=2)
    lines = check_lines(["그대 곁에 있을래", "눈물이 흐르네"], [7, 6], ["ㅐ", "ㅐ"], [None, None], one)
    # each line's own vowel: 네 is ㅔ, though it rhymes (and is checked) as the ㅐ/ㅔ family's ㅐ
    assert [line.rhyme for line in lines] == ["ㅐ", "ㅐ"]
    assert report_badge(SimpleNamespace(satisfied=True, lines=lines)) == "✓ 7 ㅐ / 6 ㅔ"
    assert report_badge(SimpleNamespace(satisfied=False, lines=lines)) == "✗"
    texts = ["하늘 위로 날아가", "구름 따라 흘러가", "넓은 이 세계", "hello world baby"]
    verse = check_lines(texts, [None] * 4, [None] * 4, [None] * 4, two)
    assert report_badge(SimpleNamespace(satisfied=True, lines=verse)) == "✓ 7-7-5-5 ㅏㅏㅖ·"
    state = CandidateState(0, "너를 사랑해", joiner="\n", pieces=["그대", " 곁에"])
    assert state.accepted_text() == "너를 사랑해\n그대 곁에"
    assert CandidateState(0, "너를", pieces=[" 사랑해"]).accepted_text() == "너를 사랑해"
    assert CandidateState(0, "너를", pieces=["는"]).accepted_text() == "너를는"


def test_drafts_round_trip_constraints_and_older_drafts_still_load():
    import json

    import pytest

    from kolyric.app.drafts import Draft

    draft = Draft("바람이 분다", "다시", "긍정", (("syllables", "8"), ("rhyme", "랑")))
    assert Draft.from_json(draft.to_json()) == draft
    old = json.dumps({"format": "kolyric-draft", "version": 1, "text": "가", "prompt": "", "polarity": None})
    assert Draft.from_json(old) == Draft("가")  # saved before constraints existed
    # odd constraint values never cost the lyrics: numbers and switches become field text, the rest is dropped
    odd = {
        "format": "kolyric-draft",
        "text": "바람이 분다",
        "constraints": {"syllables": 8, "strict": True, "rhyme": ["랑"], "lines": None},
    }
    assert Draft.from_json(json.dumps(odd)) == Draft("바람이 분다", constraints=(("syllables", "8"), ("strict", "on")))
    for shape in ([["syllables", "8"]], "8", 3):
        assert Draft.from_json(json.dumps({**odd, "constraints": shape})) == Draft("바람이 분다")
    with pytest.raises(ValueError):
        Draft.from_json(json.dumps({"format": "kolyric-draft", "text": 5}))


def test_the_app_defaults_to_the_measured_precision_and_checks_the_setting(tmp_path):
    from kolyric.app.config import AppConfig, load_config
    from kolyric.engine.loading import PRECISIONS

    assert AppConfig().precision == "auto" and "auto" in PRECISIONS
    path = tmp_path / "settings.toml"
    path.write_text('precision = "int8"\n', encoding="utf-8")
    assert load_config(path)[0].precision == "int8"
    path.write_text('precision = "int4"\n', encoding="utf-8")
    assert load_config(path)[0].precision == "int4"
    path.write_text('precision = "int3"\n', encoding="utf-8")
    config, notices = load_config(path)
    assert config.precision == "auto" and "precision: must be auto, fp32" in notices[0] and "int4" in notices[0]


def test_constrained_lines_streamed_with_spaces_are_broken_where_the_report_says():
    lines = [SimpleNamespace(text=t) for t in ("보려주던게", "해도 있는거", "같아요 꼭")]
    report = SimpleNamespace(lines=lines, satisfied=True)
    state = CandidateState(
        0,
        "너를",
        joiner="\n",
        pieces=["보려", "주던게", " 해도", " 있는거", " 같아요", " 꼭"],
        finish_reason="eos",
        report=report,
    )
    assert state.line_breaks() == [len("보려주던게 "), len("보려주던게 해도 있는거 ")]
    with_newlines = CandidateState(
        0, "", pieces=["보려주던게", "\n해도 있는거", "\n같아요 꼭"], finish_reason="eos", report=report
    )
    assert with_newlines.line_breaks() == []  # the stream already breaks them
    state.pieces = ["딴말"]
    assert state.line_breaks() == []  # text and report disagree: shown as streamed


def test_settings_changes_say_from_which_token_which_values_applied():
    from kolyric.app.session import changes_summary, settings_changes
    from kolyric.engine.settings import DecodingSettings

    start = DecodingSettings(strategy="sample", temperature=1.0, seed=5)
    hotter = start.replace(temperature=1.5, seed=None)  # the controls' own seed is not the run's
    beam = hotter.replace(strategy="beam", n=1)
    timeline = [(0, start), (4, hotter), (9, beam)]
    assert settings_changes(timeline) == ({"from_token": 4, "changed": {"temperature": 1.5}},)  # beam: not live
    assert settings_changes(timeline, tokens=4) == ()  # the change came after its last token
    assert settings_changes([(0, start)]) == ()
    assert changes_summary(settings_changes(timeline)) == "from token 5: temperature 1.5"


def test_recording_controls_mark_reads_on_the_stream_thread_only():
    import threading

    from kolyric.app.live import RecordingControls
    from kolyric.engine.settings import DecodingSettings

    controls = RecordingControls(DecodingSettings(seed=None))
    controls.stream_thread = threading.get_ident()
    _ = controls.current  # the stream starts
    controls.update(DecodingSettings(seed=3))  # the seed it picked, at the same step
    _ = controls.current
    controls.steps_done = 6
    controls.update(DecodingSettings(seed=3, temperature=0.5))
    reader = threading.Thread(target=lambda: controls.current)  # the UI reading: no mark
    reader.start()
    reader.join()
    _ = controls.current
    assert [(step, s.seed, s.temperature) for step, s in controls.marks()] == [(0, 3, 1.0), (6, 3, 0.5)]


def test_a_draft_field_that_cannot_be_read_is_left_out_not_the_draft():
    import json

    import pytest

    from kolyric.app.drafts import Draft

    huge = "9" * 5000
    raw = json.dumps(
        {
            "format": "kolyric-draft",
            "text": "가사",
            "prompt": "다시",
            "polarity": "긍정",
            "constraints": {"syllables": "7", "lines": "2"},
        }
    )
    draft, left_out = Draft.read(raw.replace('"7"', huge).replace('"\\uae0d\\uc815"', '"neutral"'))
    assert draft == Draft("가사", "다시", None, (("lines", "2"),))
    assert left_out == [
        "polarity: must be 긍정, 부정 or none, got 'neutral'",
        "constraints.syllables: a number of 5,000 digits",
    ]
    with pytest.raises(ValueError, match="syllables"):
        Draft.from_json(raw.replace('"7"', huge))  # the strict reading names the field
    with pytest.raises(ValueError, match="5,000 digits"):
        Draft.read(raw.replace('"\\uac00\\uc0ac"', huge))  # no lyrics: not a draft to restore


def test_a_card_shows_one_space_where_pieces_bring_two():
    """A card's text reads as the final text does: a run of spaces across (or within) streamed
    pieces is one space, and a line's first word loses the tokenizer's space before it."""
    from rich.style import Style
    from rich.text import Text

    from kolyric.app.widgets.candidates import _append_lines

    def shown(pieces):
        text, line_start = Text(), True
        for piece in pieces:
            line_start = _append_lines(text, piece, Style(), line_start)
        return text.plain

    assert shown(["사랑도", " 사랑을 ", " 뗄"]) == "사랑도 사랑을 뗄"
    assert shown([" 그대", "   없는", " 밤\n", " 바람"]) == "그대 없는 밤\n바람"
    assert shown(["a ", "", " ", "b"]) == "a b"
