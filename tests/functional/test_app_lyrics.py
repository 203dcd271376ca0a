"""Lyric craft in the playground: rhyme keys and colours in the gutter, the sections panel,
the constraint controls, Ctrl+T (this line as the target) and constrained generation."""

from __future__ import annotations

import pytest
from rich.style import Style

from kolyric.app.app import KolyricApp
from kolyric.app.testing import wait_for_model, wait_until
from kolyric.app.widgets.rhyme import rhyme_palette
from kolyric.korean import RhymeOptions, count_syllables, rhyme_label, rhymes_with

SIZE = (120, 36)
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dirs")]

# AABB in the verse (다/나 share ㅏ; 해/네 share ㅐ by the ㅐ/ㅔ family), 5-8-7-6;, a chorus whose second
# line rhymes with the verse's first pair, and a line that rhymes with nothing (ㅗ).
DRAFT = """[Verse 1]
바람이 분다
너를 보낸 그 날에 나
사랑한다고 말해
눈물이 흐르네

[후렴]
다시 올 수 있을까
돌아와 다오
"""


def new_app(**kwargs) -> KolyricApp:
    return KolyricApp(cursor_blink=False, **kwargs)


async def controls_ready(pilot):
    screen = pilot.app.screen
    await wait_until(pilot, lambda: screen.controls.ready, what="the controls")
    return screen


def rhyme_cells(screen) -> list[str]:
    gutter = screen.editor.lyric_gutter
    return [gutter.cells(i)[1] for i in range(screen.editor.area.document.line_count)]


def rhyme_colours(screen) -> list[int | None]:
    column = screen.editor.lyric_gutter.columns[1]
    return [column.colour(i) for i in range(screen.editor.area.document.line_count)]


async def test_gutter_shows_rhyme_keys_and_colours_groups():
    app = new_app(load_on_start=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await controls_ready(pilot)
        screen.editor.load(DRAFT)
        await pilot.pause()
        gutter = screen.editor.lyric_gutter
        assert [gutter.cells(i)[0] for i in range(10)] == ["", "5", "8", "7", "6", "", "", "7", "5", ""]
        # each line's own vowel: 네 shows ㅔ, in the colour it shares with 해 (the ㅐ/ㅔ family)
        assert rhyme_cells(screen) == ["", "ㅏ", "ㅏ", "ㅐ", "ㅔ", "", "", "ㅏ", "ㅗ", ""]
        colours = rhyme_colours(screen)
        # the ㅏ group (lines 2, 3 and the chorus's first) shares one colour, ㅐ/ㅔ another;
        # the lone ㅗ line and the headers have none
        assert colours[1] == colours[2] == colours[7] == 0
        assert colours[3] == colours[4] == 1
        assert colours[8] is None and colours[0] is None and colours[6] is None
        palette = rhyme_palette(app)
        column = gutter.columns[1]
        assert Style.parse(column.style(screen.editor.lines()[1], 1)).color == Style.parse(palette[0]).color
        assert Style.parse(column.style(screen.editor.lines()[3], 3)).color == Style.parse(palette[1]).color
        assert [c.lower() for c in palette[:2]] == ["#8ab4f8", "#7bc97b"]  # the theme's rhyme-1 and rhyme-2
        # editing a line regroups at once: 다오 -> 다시 (ㅣ) still rhymes with nothing
        screen.editor.area.replace("다시", (8, 4), (8, 6))
        await pilot.pause()
        assert rhyme_cells(screen)[8] == "ㅣ"
        # and a line that now ends in ㅗ gets no colour until another line shares it
        screen.editor.area.insert("\n그대 오오", (8, len(screen.editor.lines()[8])))
        await pilot.pause()
        assert rhyme_cells(screen)[9] == "ㅗ" and rhyme_colours(screen)[9] is None


async def test_rhyme_options_in_the_controls_change_the_keys():
    app = new_app(load_on_start=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await controls_ready(pilot)
        screen.editor.load(DRAFT)
        gutter = screen.editor.lyric_gutter
        width = gutter.columns[1].width
        screen.controls.set_values(strict=True, rhyme_syllables=2)
        await pilot.pause()
        keys = rhyme_cells(screen)
        assert keys[1] == "ㅜㄴ-ㅏ"  # 분다: two syllables, finals compared
        assert keys[2] == "ㅔ-ㅏ"  # 에 나: ㅔ shows as itself, though it rhymes as the ㅐ/ㅔ family
        assert gutter.columns[1].width > width
        # strict two-syllable keys split the old ㅏ group: no line of the verse shares 분다's
        assert rhyme_colours(screen)[1] is None
        screen.controls.set_values(rhyme_syllables=9)  # invalid: the gutter keeps the last valid options
        await pilot.pause()
        assert rhyme_cells(screen)[1] == "ㅜㄴ-ㅏ"
        assert screen.controls.constraint_rows["rhyme_syllables"].invalid


async def test_sections_panel_shows_scheme_and_pattern_and_follows_the_cursor():
    app = new_app(load_on_start=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await controls_ready(pilot)
        screen.editor.load(DRAFT)
        screen.editor.area.move_cursor((2, 0))
        await pilot.pause()
        panel = screen.sections
        rows = str(panel.render()).splitlines()
        assert len(rows) == 2
        assert rows[0].startswith("▸ Verse 1") and "AABB" in rows[0] and rows[0].endswith("5-8-7-6")
        assert rows[1].lstrip().startswith("후렴") and "AB" in rows[1] and rows[1].endswith("7-5")
        assert panel.border_subtitle == "line 3: 8 syl · rhyme ㅏ (A)"
        screen.editor.area.move_cursor((8, 0))
        await pilot.pause()
        rows = str(panel.render()).splitlines()
        assert rows[1].startswith("▸ 후렴") and not rows[0].startswith("▸")
        assert panel.border_subtitle == "line 9: 5 syl · rhyme ㅗ (B)"
        screen.editor.area.move_cursor((4, 0))  # 눈물이 흐르네: rhymes with 말해 (B), ends on ㅔ
        await pilot.pause()
        assert panel.border_subtitle == "line 5: 6 syl · rhyme ㅔ (B)"


def panel_rows(panel) -> list[str]:
    """The content rows as painted on screen, not the text's logical lines."""
    return [panel.render_line(y).text.rstrip() for y in range(panel.size.height)]


async def test_sections_panel_rows_never_wrap_and_grow_with_the_sections():
    app = new_app(load_on_start=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await controls_ready(pilot)
        long_verse = "\n".join(["[Verse 1]"] + ["그대여 다시 한번 돌아와 줄래요 나에게로 바람이 분다"] * 8)
        screen.editor.load(long_verse + "\n\n[후렴]\n다시 올 수 있을까\n돌아와 다오")
        screen.editor.area.move_cursor((11, 0))
        await pilot.pause()
        panel = screen.sections
        rows = panel_rows(panel)
        assert len(rows) == 2  # one row per section, however long its pattern
        assert rows[0].startswith("  Verse 1") and rows[0].endswith("…") and rows[1].startswith("▸ 후렴")
        screen.editor.area.insert("\n[Bridge]\n너를 보낸 날", (12, len(screen.editor.lines()[12])))
        await pilot.pause()
        rows = panel_rows(panel)
        assert len(rows) == 3 and rows[1].startswith("▸ 후렴")  # the cursor did not move
        assert rows[2].lstrip().startswith("Bridge") and rows[2].endswith("5")
        screen.editor.load("[Verse 1]\n[후렴]")  # headers only: the sections, each without lines
        await pilot.pause()
        assert [r.split()[-1] for r in panel_rows(panel)] == ["—", "—"]


async def test_theme_change_recolours_gutter_and_panel_alike():
    app = new_app(load_on_start=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await controls_ready(pilot)
        screen.editor.load(DRAFT)
        await pilot.pause()

        def letter_colour() -> str:
            text = screen.sections.render()
            span = next(s for s in text.spans if text.plain[s.start : s.end] == "A")
            return Style.parse(str(span.style)).color.get_truecolor()

        night = letter_colour()
        app.theme = "textual-light"  # a theme with no rhyme-N colours: the fallback palette
        await pilot.pause()
        palette = rhyme_palette(app)
        assert len(set(palette)) == len(palette) >= 3  # distinct colours, none of them repeated
        assert letter_colour() == Style.parse(palette[0]).color.get_truecolor() != night
        gutter_style = screen.editor.lyric_gutter.columns[1].style(screen.editor.lines()[1], 1)
        assert Style.parse(gutter_style).color == Style.parse(palette[0]).color


async def test_rhyme_options_reach_the_gutter_while_another_field_is_wrong():
    app = new_app(load_on_start=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await controls_ready(pilot)
        screen.editor.load(DRAFT)
        screen.controls.set_values(temperature="abc", syllables="99")
        await pilot.pause()
        screen.controls.set_values(rhyme_syllables="2")
        await pilot.pause()
        assert screen.query_one("#generate").disabled  # generation still waits for the fixes
        assert rhyme_cells(screen)[1] == "ㅜ-ㅏ"  # … but the gutter shows two-syllable keys at once


async def test_constraint_fields_are_validated_and_block_generation():
    app = new_app(load_on_start=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await controls_ready(pilot)
        screen.controls.set_values(syllables="99", rhyme="abc")
        await pilot.pause()
        rows = screen.controls.constraint_rows
        assert rows["syllables"].invalid and "[1, 40]" in rows["syllables"].message
        assert rows["rhyme"].invalid and "Hangul" in rows["rhyme"].message
        problems = str(screen.query_one("#ctl-problems").render())  # each message shown by its field's name
        assert "syllables/line: " in problems and "rhyme with: " in problems
        assert screen.query_one("#generate").disabled
        assert {p.field for p in screen.controls.problems} == {"syllables", "rhyme"}
        screen.controls.set_values(syllables="7", rhyme="랑")
        await pilot.pause()
        assert not screen.query_one("#generate").disabled
        assert screen.controls.constraints.syllables == 7 and screen.controls.constraints.rhyme == "랑"
        assert "constrained: 7 syllables · rhyme 랑" in str(screen.query_one("#ctl-notes").render())
        screen.controls.set_values(syllables="", rhyme="")
        await pilot.pause()
        assert screen.controls.constraints is None  # nothing asked: generation is unconstrained


async def test_target_line_then_constrained_generation_and_accept(trained_tiny_dir):
    # a trained model: lines end on whole words only where the model itself would end a word,
    # and random weights never would (their word break is one token of 1,200)
    app = new_app(model=str(trained_tiny_dir), device="cpu")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_model(pilot)
        screen = await controls_ready(pilot)
        screen.editor.load(DRAFT)
        screen.editor.area.move_cursor((3, 2))  # 사랑한다고 말해: 7 syllables, ends in 해
        await pilot.press("ctrl+t")
        values = screen.controls.raw_constraints()
        assert (values["syllables"], values["rhyme"]) == ("7", "해")
        screen.controls.set_values(strategy="sample", n=3, seed=11, max_length=40)
        screen.prompt_input.value = "사랑한다고 말해"
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: not screen.streaming, what="the constrained stream")
        cards = screen.query_one("#candidates").cards()
        assert len(cards) == 3
        met = 0
        for card in cards:
            state = card.state
            assert state.report is not None
            line = state.accepted_text().split("\n")[-1]
            if state.report.satisfied:
                met += 1
                assert "✓" in str(card.border_title)
                assert count_syllables(line) == 7, line  # recounted here, not taken from the report
                assert rhymes_with(line, "해", RhymeOptions()), line
            else:
                assert "✗" in str(card.border_title)
        assert met >= 1
        # the cursor is on the prompt line: accepting adds only the new line, below it
        card = next(c for c in cards if c.state.report.satisfied)
        before = screen.editor.lines()
        screen.accept(card.slot)
        lines = screen.editor.lines()
        new_line = card.state.accepted_text().split("\n")[-1]
        assert lines == before[:4] + [new_line] + before[4:]
        entry = next(h for h in screen.history if h.accepted)
        # the badge shows the line's own vowel (ㅐ, or ㅔ of the same family)
        label = rhyme_label(new_line)
        assert label in ("ㅐ", "ㅔ")
        assert entry.text == card.state.accepted_text() and f"7 syllables · rhyme 해 ✓ 7 {label}" in entry.summary
        # elsewhere in the draft, the prompt line comes with it
        screen.editor.area.move_cursor((len(lines) - 1, 0))
        screen.accept(card.slot)
        assert screen.editor.lines()[-2:] == card.state.accepted_text().split("\n")


async def test_an_unmet_constraint_is_reported_on_the_card(tiny_model_dir):
    app = new_app(model=str(tiny_model_dir), device="cpu")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_model(pilot)
        screen = await controls_ready(pilot)
        # 30 syllables cannot fit in 4 new tokens of the tiny vocabulary
        screen.controls.set_values(strategy="greedy", syllables="30", max_length=4)
        screen.prompt_input.value = "너를"
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: not screen.streaming, what="the stream")
        card = screen.query_one("#candidates").cards()[0]
        assert card.state.report is not None and not card.state.report.satisfied
        assert "✗" in str(card.border_title)
        assert "✗ " in str(card.render()) and "max_length" in str(card.render())  # the reason, under the text


async def test_target_line_on_a_header_or_empty_line_explains():
    app = new_app(load_on_start=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await controls_ready(pilot)
        screen.editor.load(DRAFT)
        for row in (0, 5):  # [Verse 1], then the blank line before [후렴]
            app.clear_notifications()
            screen.editor.area.move_cursor((row, 0))
            await pilot.press("ctrl+t")
            await pilot.pause()
            assert screen.controls.raw_constraints()["syllables"] == ""
            assert any("lyric line" in str(n.message) for n in app._notifications)


async def test_constraint_fields_are_saved_with_the_draft_and_restored():
    app = new_app(load_on_start=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await controls_ready(pilot)
        screen.controls.set_values(syllables="8", rhyme="랑", strict=True, scheme="AABB", lines="4")
        await wait_until(pilot, lambda: app.status_draft == "draft saved", what="the autosave")
    app = new_app(load_on_start=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await controls_ready(pilot)
        await pilot.pause()
        values = screen.controls.raw_constraints()
        assert (values["syllables"], values["rhyme"], values["strict"], values["scheme"], values["lines"]) == (
            "8",
            "랑",
            "on",
            "AABB",
            "4",
        )
        made = screen.controls.constraints
        assert made is not None and (made.syllables, made.rhyme, made.strict, made.n_lines) == (8, "랑", True, 4)
        assert screen.editor.rhyme_options.strict  # the gutter follows the restored options


async def test_export_writes_how_each_accepted_line_was_made(tiny_model_dir, dirs):
    import json

    from kolyric.engine.loading import load_model
    from kolyric.engine.lyric.spec import LyricConstraints
    from kolyric.engine.results import GenerationRequest
    from kolyric.engine.settings import DecodingSettings
    from kolyric.engine.stream import Generator

    app = new_app(model=str(tiny_model_dir), device="cpu")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_model(pilot)
        screen = await controls_ready(pilot)
        screen.editor.load("바람이 분다\n너를 보낸 날")
        screen.editor.area.move_cursor((1, 0))
        screen.controls.set_values(strategy="sample", n=2, seed=5, max_length=12, syllables="6")
        screen.prompt_input.value = "다시 만날"
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: not screen.streaming, what="the stream")
        screen.editor.area.move_cursor((1, 0))
        screen.accept(1)  # the second candidate: sampled with seed 5 + 1
        await pilot.press("ctrl+s")
        screen_export = app.screen
        screen_export.query_one("#export-path").value = str(dirs / "song")
        await pilot.press("enter")
        accepted_text = screen.history[-1].text if screen.history[-1].accepted else None
    assert (dirs / "song.txt").read_text(encoding="utf-8").startswith("바람이 분다\n너를 보낸 날\n")
    record = json.loads((dirs / "song.kolyric.json").read_text(encoding="utf-8"))
    assert record["format"] == "kolyric-export" and record["model"] == str(tiny_model_dir)
    [line] = record["accepted"]
    assert line["candidate"] == 1 and line["settings"]["seed"] == 5 and line["settings"]["n"] == 2
    assert line["context"] == ["바람이 분다", "너를 보낸 날"] and line["constraints"]["syllables"] == 6
    assert accepted_text is not None and line["text"] == accepted_text
    # the record is enough to make the same line again, outside the app
    generator = Generator(load_model(record["model"], device="cpu"))
    again = generator.generate(
        GenerationRequest(
            line["prompt"],
            line["polarity"],
            DecodingSettings.from_dict(line["settings"]),
            context=tuple(line["context"]),
            constraints=LyricConstraints.from_dict(line["constraints"]),
        )
    )
    assert again.candidates[line["candidate"]].full_text == line["text"]


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_whole_words_is_a_lyric_constraint_saved_with_the_draft(size):
    app = new_app(load_on_start=False)
    async with app.run_test(size=size) as pilot:
        screen = await controls_ready(pilot)
        controls = screen.controls
        row = controls.constraint_rows["whole_words"]
        # with the other lyric constraints, on by default, as the CLI and the server have it
        assert list(controls.constraint_rows).index("whole_words") > list(controls.constraint_rows).index("syllables")
        assert row.raw_value == "on" and row.label_text == "whole words"
        controls.set_values(syllables="5")
        await pilot.pause()
        assert controls.constraints.whole_words is True
        select = row.control
        select.focus()  # the field scrolls into view, and the keys choose "off"
        await pilot.pause()
        await pilot.press("enter", "down", "enter")
        await wait_until(pilot, lambda: row.raw_value == "off", what="whole words off")
        assert controls.constraints.whole_words is False and not controls.problems
        region = controls.content_region
        assert region.y <= select.region.y < region.bottom  # visible, not scrolled away
        assert screen.current_draft().constraints == (("syllables", "5"), ("whole_words", "off"))
        assert app.is_running and not app.errors.reported
    again = new_app(load_on_start=False)
    async with again.run_test(size=size) as pilot:
        screen = await controls_ready(pilot)
        assert screen.controls.constraint_rows["whole_words"].raw_value == "off"
        assert screen.controls.constraints.whole_words is False


async def test_whole_words_off_reaches_generation(tiny_model_dir):
    # random weights never end a word by their own choice: with the rule on, counted lines say
    # they end mid-word; with it off, the count alone decides and no line says so
    app = new_app(model=str(tiny_model_dir), device="cpu")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_model(pilot)
        screen = await controls_ready(pilot)
        screen.prompt_input.value = "바람이 분다"
        problems = {}
        for value in ("on", "off"):
            screen.controls.set_values(
                strategy="greedy", max_length=24, syllables="4", whole_words=value, families=value
            )
            await pilot.press("ctrl+g")
            await wait_until(pilot, lambda: not screen.streaming, what="the constrained stream")
            [card] = screen.query_one("#candidates").cards()
            assert screen.stream.last_request.constraints.whole_words is (value == "on")
            assert screen.stream.last_request.constraints.families is (value == "on")
            problems[value] = [line.problem or "" for line in card.state.report.lines]
        assert any("mid-word" in p for p in problems["on"]), problems
        assert not any("mid-word" in p for p in problems["off"]), problems


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_vowel_families_is_a_rhyme_option_saved_with_the_draft(size):
    app = new_app(load_on_start=False)
    async with app.run_test(size=size) as pilot:
        screen = await controls_ready(pilot)
        screen.editor.load(DRAFT)
        controls = screen.controls
        row = controls.constraint_rows["families"]
        # beside strict rhyme, on by default, as the CLI's --no-families and the server's families
        names = list(controls.constraint_rows)
        assert names.index("families") == names.index("strict") + 1
        assert row.raw_value == "on" and row.label_text == "vowel families"
        await pilot.pause()
        assert rhyme_colours(screen)[3] == rhyme_colours(screen)[4] is not None  # 말해 and 흐르네: ㅐ/ㅔ
        controls.set_values(syllables="5")
        await pilot.pause()
        assert controls.constraints.families is True
        select = row.control
        select.focus()  # the field scrolls into view, and the keys choose "off"
        await pilot.pause()
        await pilot.press("enter", "up", "enter")
        await wait_until(pilot, lambda: row.raw_value == "off", what="vowel families off")
        assert controls.constraints.families is False and not controls.problems
        region = controls.content_region
        assert region.y <= select.region.y < region.bottom  # visible, not scrolled away
        # the gutter follows: ㅐ and ㅔ no longer rhyme, each is alone in the verse
        await pilot.pause()
        assert rhyme_cells(screen)[3:5] == ["ㅐ", "ㅔ"]
        assert rhyme_colours(screen)[3] is None and rhyme_colours(screen)[4] is None
        assert screen.current_draft().constraints == (("syllables", "5"), ("families", "off"))
        assert app.is_running and not app.errors.reported
    again = new_app(load_on_start=False)
    async with again.run_test(size=size) as pilot:
        screen = await controls_ready(pilot)
        assert screen.controls.constraint_rows["families"].raw_value == "off"
        assert screen.controls.constraints.families is False
        assert screen.controls.rhyme_options.families is False
