"""A newcomer's first hour: layouts that hold at 80x24 and 120x40, every candidate shown, a controls
panel that does not move under the pointer, a token inspector that lines up and follows focus, and
honest limits."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from rich.cells import cell_len

from kolyric.app.app import KolyricApp
from kolyric.app.session import CandidateState
from kolyric.app.testing import screen_lines, send_key, wait_for_model, wait_until
from kolyric.app.widgets.candidates import CandidateStrip
from kolyric.app.widgets.inspector import TokenInspector
from kolyric.engine.results import Alternative, TokenInfo
from kolyric.korean import count_syllables

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dirs")]
SMALL, LARGE = (80, 24), (120, 40)
LONG = "너를 보낸 그 날에 나 사랑한다고 말해 눈물이 흐르네 다시 올 수 있을까 돌아와 다오 제발 끝"
DRAFT = f"[Verse 1]\n바람이 분다\n{LONG}\n\n[후렴]\n다시 올 수 있을까"


def new_app(model=None) -> KolyricApp:
    if model is None:
        return KolyricApp(load_on_start=False, cursor_blink=False)
    return KolyricApp(model=str(model), device="cpu", cursor_blink=False)


async def ready(pilot):
    screen = pilot.app.screen
    await wait_until(pilot, lambda: screen.controls.ready, what="the controls")
    rows = [screen.query_one("#ctl-notes"), *screen.controls.all_rows().values()]
    await wait_until(pilot, lambda: all(row.region.height for row in rows), what="the fields laid out")
    return screen


def token(text: str, *alternatives: tuple[str, float]) -> TokenInfo:
    alts = tuple(Alternative(n, t, p) for n, (t, p) in enumerate(alternatives or ((text, 0.5),)))
    return TokenInfo(alts[0].token_id, text, alts[0].prob, alts)


def states(count: int, pieces: list[str], **extra) -> list[CandidateState]:
    return [
        CandidateState(
            slot,
            "다시 만날",
            joiner="\n",
            pieces=list(pieces),
            tokens=[token(p) for p in pieces],
            finish_reason="eos",
            **extra,
        )
        for slot in range(count)
    ]


# -- 80x24 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_labels_footer_and_long_lines_fit(size):
    app = new_app()
    async with app.run_test(size=size) as pilot:
        screen = await ready(pilot)
        screen.editor.load(DRAFT)
        await pilot.pause(0.2)
        lines = screen_lines(app)
        text = "\n".join(lines)
        assert "repetition_penalty " in text and "repetition_pena1" not in text  # labels whole, apart from values
        footer = lines[-1].rstrip()
        assert footer.endswith("^p palette") and footer.count("palette") == 1, footer  # not garbled
        assert "^g Generate" in footer and "^o Accept" in footer and "^q Quit" in footer
        # a long draft line wraps: its last words are on screen, the gutter beside its first row
        assert "제발 끝" in text
        first_row = next(line for line in lines if "너를 보낸" in line)
        assert f"{count_syllables(LONG)} ㅡ" in first_row  # its syllables and rhyme key, on its first row


async def test_resizing_120_to_80_keeps_each_lines_first_cell():
    app = new_app()
    async with app.run_test(size=LARGE) as pilot:
        screen = await ready(pilot)
        screen.editor.load(DRAFT)
        screen.editor.area.move_cursor((2, len(LONG)))  # the end of the long line
        await pilot.pause(0.2)
        await pilot.resize_terminal(*SMALL)
        await pilot.pause(0.3)
        text = "\n".join(screen_lines(app))
        assert "[Verse 1]" in text and "[후렴]" in text and "│ 2  바람이 분다" in text
        assert screen.editor.area.scroll_x == 0


@pytest.mark.parametrize("size, wide", [(SMALL, 24), (LARGE, 40)])
async def test_the_prompt_box_is_wide_enough_to_read(size, wide):
    app = new_app()
    async with app.run_test(size=size) as pilot:
        screen = await ready(pilot)
        assert screen.prompt_input.size.width >= wide, screen.prompt_input.size


# -- candidates ------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_four_candidates_all_reachable_and_said_so(size):
    app = new_app()
    async with app.run_test(size=size) as pilot:
        screen = await ready(pilot)
        strip = screen.query_one(CandidateStrip)
        strip.show(states(4, ["그대", " 곁에"]))
        await pilot.pause(0.2)
        cards = strip.cards()
        assert [str(c.border_title).split(" · ")[0] for c in cards] == [f"#{n} of 4" for n in range(1, 5)]
        # the title follows the layout, which a loaded machine may not have finished in the pause
        heading = screen.query_one("#candidates-title")
        await wait_until(pilot, lambda: "4" in str(heading.render()), timeout=10, what="the candidates' title")
        title = str(heading.render())
        shown = [c for c in cards if strip.region.contains_region(c.region)]
        assert len(shown) >= 2 and all(c.region.width >= 20 for c in shown)
        if len(shown) < 4:
            assert f"1–{len(shown)} of 4" in title and "Tab" in title, title
            cards[3].focus()  # Tab reaches a card out of view: it scrolls into view
            # the scroll is animated, so a loaded machine may take longer than a fixed pause
            await wait_until(pilot, lambda: strip.region.contains_region(cards[3].region), timeout=10, what="card #4")
            assert "of 4" in str(screen.query_one("#candidates-title").render())
        else:
            assert "4" in title


async def test_card_lines_apart_without_a_leading_space_and_the_reason_visible():
    app = new_app()
    async with app.run_test(size=SMALL) as pilot:
        screen = await ready(pilot)
        strip = screen.query_one(CandidateStrip)
        unmet = SimpleNamespace(
            satisfied=False, reasons=["line 2 has 9 syllables, not 7"], lines=[], constraints="7 syllables"
        )
        pieces = [" 그대", " 곁에", "\n", " 너를", " 보낸", " 날", *[" 바람이 분다"] * 12]
        strip.show(states(3, pieces, report=unmet))
        await pilot.pause(0.2)
        card = strip.cards()[0]
        shown = card.render().plain.split("\n")
        assert shown[0] == "다시 만날" and shown[1].startswith("그대 곁에") and shown[2].startswith("너를")
        assert not any(line.startswith(" ") for line in shown)
        assert len(shown) <= card.content_size.height  # the text is cut to fit ...
        assert shown[-1].startswith("✗ line 2 has 9") or "✗" in "".join(shown[-2:])  # ... the reason is not


async def test_a_long_reason_leaves_room_for_the_lyrics_and_no_blank_first_row():
    app = new_app()
    async with app.run_test(size=SMALL) as pilot:
        screen = await ready(pilot)
        strip = screen.query_one(CandidateStrip)
        reasons = [
            f"line {n}: ends mid-word on '걸': after it the model gives a word break 35%, under the 50% "
            f"the whole-word rule asks"
            for n in range(1, 5)
        ]
        unmet = SimpleNamespace(satisfied=False, reasons=reasons, lines=[], constraints="9 syllables")
        for state in states(2, ["\n", " 그대", " 곁에", "\n", " 너를", " 보낸"], report=unmet):
            state.prompt = ""
            strip.show([state])
        await pilot.pause(0.2)
        card = strip.cards()[0]
        shown = card.render().plain.split("\n")
        assert shown[0].startswith("그대 곁에"), shown  # the stream's first line break is no blank row
        lyric_rows = [line for line in shown if not line.startswith("✗") and "…" not in line and "word" not in line]
        assert lyric_rows and len(shown) <= card.content_size.height
        assert any(line.startswith("✗") for line in shown) and shown[-1].endswith("…")


async def test_a_short_candidates_reason_takes_the_rows_its_text_leaves():
    """A card whose text is short shows the whole reason in the rows below it, not two."""
    app = new_app()
    async with app.run_test(size=LARGE) as pilot:
        screen = await ready(pilot)
        strip = screen.query_one(CandidateStrip)
        reason = (
            "the break after the prompt line: every token that fits was ruled out by the other decoding "
            "controls (min_length, no_repeat_ngram_size); loosen them, or the constraints, and try again"
        )
        unmet = SimpleNamespace(satisfied=False, reasons=[reason], lines=[], constraints="7 · 네")
        state = states(1, [" 그대"], report=unmet)[0]
        state.prompt = ""
        strip.show([state])
        await pilot.pause(0.2)
        card = strip.cards()[0]
        shown = card.render().plain.split("\n")
        assert len(shown) <= card.content_size.height and shown[0] == "그대"
        assert "".join(shown[1:]).replace(" ", "") == f"✗ {reason}".replace(" ", ""), shown


async def test_accepting_does_not_write_the_prompt_line_twice():
    app = new_app()
    async with app.run_test(size=LARGE) as pilot:
        screen = await ready(pilot)
        screen.editor.load("바람이 분다\n다시 만날\n")
        screen.editor.area.move_cursor((2, 0))  # the blank line under the prompt line
        screen.prompt_input.value = "다시 만날"
        state = states(1, ["그대", " 곁에"])[0]
        state.full_text = "다시 만날\n그대 곁에"
        screen.stream.show([state], {})
        screen.accept(0)
        assert screen.editor.lines() == ["바람이 분다", "다시 만날", "그대 곁에", ""]
        # continue mode: the completed line replaces the prompt line
        screen.editor.load("바람이 분다\n다시 만날")
        screen.editor.area.move_cursor((1, 2))
        state.full_text = "다시 만날 그날까지"
        screen.accept(0)
        assert screen.editor.lines() == ["바람이 분다", "다시 만날 그날까지"]


async def test_generated_candidates_show_every_card_with_a_real_model(tiny_model_dir):
    app = new_app(tiny_model_dir)
    async with app.run_test(size=LARGE) as pilot:
        screen = await ready(pilot)
        await wait_for_model(pilot)
        screen.prompt_input.value = "다시"
        screen.controls.set_values(strategy="sample", n=4, max_length=12, seed=3)
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: not screen.streaming, what="the stream")
        cards = screen.query_one(CandidateStrip).cards()
        assert len(cards) == 4 and all("of 4" in str(c.border_title) for c in cards)
        for card in cards:
            assert not any(line.startswith(" ") for line in card.render().plain.split("\n"))


# -- the controls panel ----------------------------------------------------------------------------
async def test_a_bad_value_does_not_move_the_rows_under_the_pointer():
    """A bad value is reported without growing an error line under its field, which would push
    every row below down."""
    app = new_app()
    async with app.run_test(size=LARGE) as pilot:
        screen = await ready(pilot)
        rows = dict(screen.controls.all_rows())
        before = {name: row.region.y for name, row in rows.items()}
        screen.controls.set_values(min_length=30, max_length=20)  # a cross-field problem on min_length
        await pilot.pause(0.2)
        assert rows["min_length"].invalid
        assert {name: row.region.y for name, row in rows.items()} == before
        assert "min_length: must be <= max_length (20)" in str(screen.query_one("#ctl-problems").render())
        screen.controls.set_values(min_length=0)
        screen.query_one("#ctl-top_p").value = "1.5"
        await pilot.pause(0.2)
        assert rows["top_p"].invalid and not rows["min_length"].invalid
        assert {name: row.region.y for name, row in rows.items()} == before
        problems = str(screen.query_one("#ctl-problems").render())
        assert "top_p" in problems and "(0, 1]" in problems and "min_length" not in problems


async def test_keyboard_focus_scrolls_the_panel_only_as_far_as_it_must():
    app = new_app()
    async with app.run_test(size=SMALL) as pilot:
        screen = await ready(pilot)
        controls = screen.controls
        field = screen.query_one("#ctl-max_length")
        assert not controls.region.contains_region(field.region)  # below the panel's view
        field.focus()
        await wait_until(pilot, lambda: controls.scroll_y > 0 and app.focused is field, what="the scroll")
        await pilot.pause(0.2)
        assert controls.scrollable_content_region.contains_region(field.region)
        # the field is the last row in view: not centred (which moves every row under the pointer)
        assert field.region.bottom == controls.scrollable_content_region.bottom


async def test_clicks_land_on_the_row_under_the_pointer():
    app = new_app()
    async with app.run_test(size=SMALL) as pilot:
        screen = await ready(pilot)
        controls = screen.controls
        for name in ("max_length", "seed", "n", "syllables", "lines"):
            field = screen.query_one(f"#ctl-{name}")

            def in_view() -> bool:
                if controls.scrollable_content_region.contains_region(field.region):
                    return True
                controls.scroll_to_widget(field, animate=False, top=False, immediate=True)
                return False

            await wait_until(pilot, in_view, what=f"{name} in view")
            await pilot.pause(0.1)
            region = field.region
            await pilot.click(offset=(region.x + 1, region.y))
            await pilot.pause(0.2)
            assert app.focused is field, (name, app.focused)
            assert field.region == region  # nothing moved under the pointer


# -- the token inspector ---------------------------------------------------------------------------
async def test_inspector_columns_line_up_with_hangul():
    app = new_app()
    async with app.run_test(size=LARGE) as pilot:
        screen = await ready(pilot)
        inspector = screen.query_one(TokenInspector)
        inspector.show(
            0, 0, token("사랑", ("사랑", 0.4), ("a", 0.3), ("해요해요해요해요", 0.2), (" ", 0.05), ("눈", 0.05))
        )
        await pilot.pause()
        options = inspector.query_one("#alternatives")
        labels = [options.get_option_at_index(k).prompt.plain for k in range(5)]
        assert len({cell_len(label) for label in labels}) == 1, labels
        bars = [cell_len(label[: label.index("%") - 5]) for label in labels]
        assert len(set(bars)) == 1, labels


async def test_inspector_follows_focus_to_another_card():
    app = new_app()
    async with app.run_test(size=LARGE) as pilot:
        screen = await ready(pilot)
        strip = screen.query_one(CandidateStrip)
        screen.stream.show(states(2, ["그대", " 곁에"]), {})
        await pilot.pause()
        first, second = strip.cards()
        first.focus()
        await pilot.press("right")
        inspector = screen.query_one(TokenInspector)
        assert inspector.slot == 0 and "#1 token 1" in str(inspector.query_one("#inspector-title").render())
        second.focus()
        await pilot.pause()
        assert inspector.slot is None and "#1" not in str(inspector.query_one("#inspector-title").render())
        await pilot.press("right")
        assert inspector.slot == 1
        first.focus()  # back: its selected token again
        await pilot.pause()
        assert inspector.slot == 0


# -- honest limits ---------------------------------------------------------------------------------
async def test_max_length_beyond_the_window_says_the_window_is_the_limit(tiny_model_dir):
    app = new_app(tiny_model_dir)  # n_positions 128
    async with app.run_test(size=LARGE) as pilot:
        screen = await ready(pilot)
        await wait_for_model(pilot)
        screen.prompt_input.value = "다시"
        screen.controls.set_values(strategy="greedy", n=1, max_length=1000, min_length=1000)
        await pilot.pause()
        assert "window of 128 tokens" in str(screen.query_one("#ctl-notes").render())
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: not screen.streaming, timeout=60, what="the stream")
        card = screen.query_one(CandidateStrip).cards()[0]
        assert card.state.finish_reason == "length" and len(card.state.tokens) < 128
        assert "window full" in str(card.border_title)
        assert "window of 128 tokens" in card.render().plain


async def test_status_bar_says_the_draft_was_restored():
    app = new_app()
    async with app.run_test(size=SMALL) as pilot:
        assert app.status_draft == "draft: new"
        await ready(pilot)
        await pilot.press(*"바람이 분다")
        await wait_until(pilot, lambda: app.status_draft == "draft saved", what="the autosave")
    again = new_app()
    seen = []
    async with again.run_test(size=SMALL) as pilot:
        pilot.app.watch(pilot.app, "status_draft", lambda value: seen.append(value))
        await ready(pilot)
        assert again.status_draft == "draft restored", (
            seen,
            again.screen.autosave.last_written,
            again.screen.current_draft(),
        )
        assert again.screen.editor.text == "바람이 분다"


async def test_history_records_which_settings_made_which_tokens(tiny_model_dir):
    app = new_app(tiny_model_dir)
    async with app.run_test(size=LARGE) as pilot:
        screen = await ready(pilot)
        await wait_for_model(pilot)
        screen.controls.set_values(strategy="sample", n=1, max_length=120, min_length=120, seed=5, temperature=1.0)
        send_key(pilot, "ctrl+g")
        run = await wait_until(pilot, lambda: screen.run, what="the stream to start")
        card = screen.query_one(CandidateStrip).cards()[0]
        await wait_until(pilot, lambda: len(card.state.tokens) >= 3, interval=0.002, what="some tokens")
        screen.controls.set_values(temperature=0.5)
        await wait_until(pilot, lambda: not screen.streaming, timeout=60, what="the end")
        entry = screen.history[-1]
        assert entry.settings["temperature"] == 1.0 and entry.settings["seed"] == 5  # what began it
        (change,) = entry.settings_changes
        assert 3 <= change["from_token"] < len(card.state.tokens) and change["changed"] == {"temperature": 0.5}
        assert f"from token {change['from_token'] + 1}: temperature 0.5" in entry.summary
        assert run.controls.marks()[-1][1].temperature == 0.5
        record = screen.export_record()
        assert record["accepted"] == []  # nothing accepted yet; the entry's own record holds the change
        assert json.loads(json.dumps(entry.to_dict()))["settings_changes"][0]["changed"] == {"temperature": 0.5}


async def test_the_candidates_title_follows_a_resize():
    app = new_app()
    async with app.run_test(size=SMALL) as pilot:
        screen = await ready(pilot)
        strip = screen.query_one(CandidateStrip)
        strip.show(states(4, ["그대", " 곁에"]))
        await pilot.pause(0.2)
        for size in (LARGE, SMALL, LARGE):
            await pilot.resize_terminal(*size)
            await pilot.pause(0.3)
            shown = [c for c in strip.cards() if strip.region.contains_region(c.region)]
            title = str(screen.query_one("#candidates-title").render())
            if len(shown) < 4:
                assert f"1–{len(shown)} of 4" in title, (size, title)
            else:
                assert "of 4" not in title, (size, title)


@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_f1_lists_the_keys_of_the_screen_its_cards_and_the_draft(size):
    """F1 opens the keys, read from the bindings themselves (the hidden ones too: 1-9/0 on a
    card, Ctrl+Z in the draft); the list scrolls within the dialog at 80x24; Esc closes it."""
    from kolyric.app.screens.help import HelpScreen

    app = new_app()
    async with app.run_test(size=size) as pilot:
        screen = await ready(pilot)
        send_key(pilot, "f1")
        help_screen = await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen) and app.screen, what="help")
        text = str(help_screen.query_one("#help-keys").render())
        for shown in ("Everywhere", "This screen", "On a candidate card", "In the draft", "1-9, 0", "Generate"):
            assert shown in text, shown
        assert "Ctrl+Z" in text and "F8" in text and "Esc" in text
        assert help_screen.query_one(".dialog").region.bottom <= size[1]  # the dialog fits; the list scrolls
        send_key(pilot, "escape")
        await wait_until(pilot, lambda: app.screen is screen, what="help closed")
