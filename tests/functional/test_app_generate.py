"""The playground with a tiny local model: streaming, stopping, accepting, controls, branching."""

from __future__ import annotations

import pytest

from kolyric.app.app import KolyricApp
from kolyric.app.screens.history import HistoryScreen
from kolyric.app.testing import send_key, wait_for_model, wait_until
from kolyric.app.widgets.fields import FieldRow

SIZE = (120, 36)
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dirs")]


def new_app(model_dir) -> KolyricApp:
    return KolyricApp(model=str(model_dir), device="cpu", cursor_blink=False)


async def ready(pilot):
    """Wait for the model and the controls; returns the playground screen."""
    await wait_for_model(pilot)
    screen = pilot.app.screen
    await wait_until(pilot, lambda: screen.controls.ready, what="the controls")
    return screen


async def test_type_generate_stream_stop_and_accept(tiny_model_dir):
    app = new_app(tiny_model_dir)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await pilot.press(*"사랑해")  # the editor has focus at start
        assert screen.editor.text == "사랑해"
        screen.prompt_input.value = "너를"
        # sampling, long enough to be caught mid-stream; seed fixed for a stable run
        screen.controls.set_values(
            strategy="sample", max_length=120, seed=7, n=1, repetition_penalty=1.0, no_repeat_ngram_size=0
        )
        send_key(pilot, "ctrl+g")  # Pilot.press would wait for the app to be idle: the stream's end
        await wait_until(pilot, lambda: screen.streaming, what="the stream to start")
        card = screen.query_one("#candidates").cards()[0]
        counts = set()
        await wait_until(
            pilot,
            lambda: counts.add(len(card.state.tokens)) or len(counts - {0}) >= 2,
            interval=0.005,
            what="tokens arriving in more than one step",
        )
        send_key(pilot, "escape")
        await wait_until(pilot, lambda: not screen.streaming, timeout=3, interval=0.001, what="the stop")
        assert card.state.finish_reason == "stopped"  # stopped at once, not at the end of the stream
        frozen = len(card.state.tokens)
        await pilot.pause(0.3)
        assert len(card.state.tokens) == frozen < 120  # late tokens of the stopped run are dropped
        assert "stopped" in str(card.border_title)
        text = card.state.accepted_text()
        assert text.startswith("너를")
        await pilot.press("ctrl+o")
        assert screen.editor.lines() == ["사랑해", text]
        assert card.has_class("-accepted")


async def test_several_candidates_side_by_side_then_regenerate(tiny_model_dir):
    app = new_app(tiny_model_dir)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        screen.prompt_input.value = "오늘"
        screen.controls.set_values(strategy="sample", n=3, max_length=8, seed=1)
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: not screen.streaming, what="the stream to end")
        cards = list(screen.query_one("#candidates").cards())
        assert [c.slot for c in cards] == [0, 1, 2]
        assert all(c.state.finish_reason in ("eos", "length") and c.state.tokens for c in cards)
        first = [c.state.text for c in cards]
        screen.controls.set_values(seed="")  # random seed: regenerating gives new candidates
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: not screen.streaming, what="the regenerated stream")
        assert len(screen.query_one("#candidates").cards()) == 3
        assert [c.state.text for c in screen.query_one("#candidates").cards()] != first
        assert len(screen.history) == 6


async def test_invalid_control_is_marked_and_blocks_generation(tiny_model_dir):
    app = new_app(tiny_model_dir)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        top_p = screen.query_one("#ctl-top_p")
        top_p.focus()
        top_p.value = "0"
        await pilot.pause()
        row = screen.query_one("#ctl-row-top_p", FieldRow)
        assert row.invalid
        message = row.message
        assert "(0, 1]" in message and "got 0" in message
        assert f"top_p: {message}" in str(screen.query_one("#ctl-problems").render())
        assert screen.query_one("#generate").disabled
        await pilot.press("ctrl+g")
        assert not screen.streaming and not screen.query_one("#candidates").cards()
        assert any("Generation waits" in str(n.message) for n in app._notifications)
        top_p.value = "0.9"
        await pilot.pause()
        assert not row.invalid and not screen.query_one("#generate").disabled
        # a cross-field rule marks the field it names
        screen.controls.set_values(strategy="greedy", n=2)
        assert screen.query_one("#ctl-row-n", FieldRow).invalid
        assert "greedy" in screen.query_one("#ctl-row-n", FieldRow).message


async def test_change_while_streaming_applies_live(tiny_model_dir):
    app = new_app(tiny_model_dir)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        screen.controls.set_values(strategy="sample", max_length=120, seed=3, n=1)
        send_key(pilot, "ctrl+g")
        run = await wait_until(pilot, lambda: screen.run, what="the stream to start")
        screen.controls.set_values(temperature=0.5)
        await pilot.pause()
        assert run.controls.current.temperature == 0.5 and run.controls.version >= 1
        send_key(pilot, "escape")
        await wait_until(pilot, lambda: not screen.streaming, timeout=3)


async def test_choosing_an_alternative_rewrites_the_candidate(tiny_model_dir):
    app = new_app(tiny_model_dir)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        screen.prompt_input.value = "노래"
        screen.controls.set_values(strategy="greedy", n=1, max_length=6, seed=2)
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: not screen.streaming)
        card = screen.query_one("#candidates").cards()[0]
        before = [t.token_id for t in card.state.tokens]
        card.focus()
        await pilot.press("right", "right", "right")  # the third token
        inspector = screen.query_one("#inspector")
        assert inspector.index == 2 and len(inspector.token.alternatives) == 5
        assert "%" in str(inspector.query_one("#alternatives").get_option_at_index(0).prompt)
        chosen = next(a for a in card.state.tokens[2].alternatives if a.token_id != before[2])
        k = card.state.tokens[2].alternatives.index(chosen)
        await pilot.press(str(k + 1))
        await wait_until(pilot, lambda: not screen.streaming and card.state.tokens, what="the rewrite")
        after = [t.token_id for t in card.state.tokens]
        assert after[:2] == before[:2] and after[2] == chosen.token_id
        # the inspector shows the token chosen, as the rewritten card has it
        await wait_until(pilot, lambda: inspector.index == 2, what="the chosen token in the inspector")
        assert inspector.slot == 0 and inspector.token.token_id == chosen.token_id
        assert inspector.border_title.startswith("Token · top")
        inspector.clear()
        assert inspector.border_title == "Token · alternatives"  # no stale "top 5" over an empty list


async def test_history_can_be_browsed_and_reaccepted(tiny_model_dir):
    app = new_app(tiny_model_dir)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        screen.prompt_input.value = "밤"
        screen.controls.set_values(strategy="greedy", n=1, max_length=5)
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: not screen.streaming)
        text = screen.query_one("#candidates").cards()[0].state.accepted_text()
        await pilot.press("f5")
        assert isinstance(app.screen, HistoryScreen)
        await pilot.press("enter")
        assert app.screen is screen
        assert screen.editor.lines()[-1] == text
        assert screen.history[0].accepted
