"""Undo and redo through the saved journal: random edits, accepts and cursor moves at 80x24 and
120x40 never crash, undo goes all the way back, redo all the way forward, and after a restart."""

from __future__ import annotations

import random

import pytest

from kolyric.app.app import KolyricApp
from kolyric.app.session import CandidateState
from kolyric.app.testing import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dirs")]
WORDS = ["바람이 분다", "너를 보낸 날", "가나다라마바사아자차카타파하 " * 4, "\n", "[후렴]\n", "사랑해"]


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_random_edits_accepts_and_undos_never_crash(size):
    rng = random.Random(size[0])
    app = KolyricApp(load_on_start=False, cursor_blink=False)
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.controls.ready, what="the controls")
        area = screen.editor.area
        area.focus()
        seen = [screen.editor.text]
        for step in range(40):
            action = rng.choice(["type", "type", "accept", "move", "undo", "redo", "enter"])
            if action == "type":
                await pilot.press(*rng.choice(WORDS).replace("\n", "").replace(" ", "")[:12])
            elif action == "enter":
                await pilot.press("enter")
            elif action == "accept":
                state = CandidateState(0, "", pieces=[rng.choice(WORDS)], finish_reason="eos")
                state.full_text = rng.choice(WORDS).strip() or "가"
                screen.stream.show([state], {})
                screen.accept(0)
                area.focus()
            elif action == "move":
                lines = screen.editor.lines()
                row = rng.randrange(len(lines))
                area.move_cursor((row, rng.randrange(len(lines[row]) + 1)))
            else:
                await pilot.press("ctrl+z" if action == "undo" else "ctrl+y")
            await pilot.pause()
            assert app.is_running and not app.errors.reported, (step, action)
            seen.append(screen.editor.text)
        final = screen.editor.text
        journal = screen.journal
        for _ in range(len(journal.states)):
            await pilot.press("ctrl+z")
        assert screen.editor.text == journal.states[0] and not app.errors.reported
        for _ in range(len(journal.states)):
            await pilot.press("ctrl+y")
        assert screen.editor.text == journal.states[-1]
        states = list(journal.states)
    again = KolyricApp(load_on_start=False, cursor_blink=False)
    async with again.run_test(size=size) as pilot:
        screen = again.screen
        await wait_until(pilot, lambda: screen.controls.ready, what="the controls")
        assert screen.journal.states == states and screen.editor.text == states[-1]
        screen.editor.area.focus()
        await pilot.press("ctrl+z")
        assert screen.editor.text == states[-2] if len(states) > 1 else states[0]
        assert not again.errors.reported
    assert final in seen


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_undo_and_redo_work_while_a_card_is_focused(size):
    from kolyric.app.widgets.candidates import CandidateStrip

    app = KolyricApp(load_on_start=False, cursor_blink=False)
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.controls.ready, what="the controls")
        await pilot.press(*"바람이 분다")
        state = CandidateState(0, "", pieces=["너를 보낸 날"], finish_reason="eos")
        state.full_text = "너를 보낸 날"
        screen.stream.show([state], {})
        await pilot.pause()
        card = screen.query_one(CandidateStrip).card(0)
        card.focus()
        await pilot.pause()
        await pilot.press("enter")  # accepted from the card, which keeps the focus
        both = "바람이 분다\n너를 보낸 날"
        assert screen.editor.text == both and app.focused is card
        await pilot.press("ctrl+z")
        assert screen.editor.text == "바람이 분다" and app.focused is card
        await pilot.press("ctrl+y")
        assert screen.editor.text == both
        screen.query_one("#generate").focus()  # a button: the draft's undo too
        await pilot.press("ctrl+z")
        assert screen.editor.text == "바람이 분다"
        await pilot.press("ctrl+y")
        # in a one-line field Ctrl+Z is that field's: the draft elsewhere is left alone
        screen.prompt_input.focus()
        await pilot.press("ctrl+z")
        assert screen.editor.text == both
        assert app.is_running and not app.errors.reported
