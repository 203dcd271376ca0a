"""Step mode with a tiny real model: tokens are picked one at a time, the constraints' exclusions
are shown and refused, and the line still meets its syllable count."""

from __future__ import annotations

import pytest

from kolyric.app.app import KolyricApp
from kolyric.app.testing import wait_for_model, wait_until
from kolyric.app.widgets.candidates import CandidateStrip
from kolyric.korean import count_syllables

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dirs")]


async def pending(pilot, screen):
    await wait_until(
        pilot,
        lambda: (
            screen.steps.step is not None
            and not screen.steps.busy
            and (screen.steps.step.pending is not None or screen.steps.step.finished)
        ),
        what="a step",
    )
    return screen.steps.step


async def test_step_mode_picks_tokens_and_keeps_the_syllable_count(tiny_model_dir):
    app = KolyricApp(model=str(tiny_model_dir), device="cpu", cursor_blink=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_model(pilot)
        screen = app.screen
        await wait_until(pilot, lambda: screen.controls.ready, what="the controls")
        screen.prompt_input.value = ""
        screen.controls.set_values(strategy="greedy", n=1, syllables=4, alternatives=20)
        await pilot.pause()
        await pilot.press("f8")
        step = await pending(pilot, screen)
        card = screen.query_one(CandidateStrip).cards()[0]
        card.focus()
        inspector = screen.query_one("#inspector")
        assert inspector.token is step.pending and len(step.pending.alternatives) == 20
        await pilot.pause()
        # the first pick's alternatives the constraints rule out are marked, after the card's focus too
        assert step.excluded, "4 syllables rule some of the first token's 20 alternatives out"
        for k, alternative in enumerate(step.pending.alternatives):
            label = str(inspector.query_one("#alternatives").get_option_at_index(k).prompt)
            assert ("✗" in label) == (alternative.token_id in step.excluded), (k, label)
        # an alternative the constraints allow, other than the model's pick, by its key
        k = next(
            k
            for k, a in enumerate(step.pending.alternatives[:9])
            if a.token_id not in step.excluded and a.token_id != step.pending.token_id
        )
        chosen = step.pending.alternatives[k].token_id
        await pilot.press(str(k + 1))
        step = await pending(pilot, screen)
        assert [t.token_id for t in step.chosen] == [chosen]
        excluded_seen = set(step.excluded)
        if step.excluded:  # refused, and marked in the inspector
            bad = next(k for k, a in enumerate(step.pending.alternatives) if a.token_id in step.excluded)
            assert screen.steps.pick(step.pending.alternatives[bad].token_id) is not None
            assert "✗" in str(inspector.query_one("#alternatives").get_option_at_index(bad).prompt)
        while step.pending is not None and len(step.chosen) < 12:
            await pilot.press("space")  # the model's pick
            step = await pending(pilot, screen) if screen.steps.step is not None else step
            excluded_seen |= step.excluded
        assert excluded_seen  # a 4-syllable count rules tokens out at some step
        await pilot.press("f8")  # on to the end as a stream (nothing left, or the rest of the line)
        await wait_until(pilot, lambda: not screen.streaming and screen.slot_nodes, what="the end")
        state = screen.states[0]
        assert state.tokens[0].token_id == chosen
        assert count_syllables(state.accepted_text()) == 4, state.accepted_text()
        node = screen.versions.nodes[screen.slot_nodes[0]]
        assert node.kind == "step" and node.tokens[0].token_id == chosen


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
async def test_step_mode_takes_its_keys_on_the_card_whatever_had_the_focus(tiny_model_dir, size):
    app = KolyricApp(model=str(tiny_model_dir), device="cpu", cursor_blink=False)
    async with app.run_test(size=size) as pilot:
        await wait_for_model(pilot)
        screen = app.screen
        await wait_until(pilot, lambda: screen.controls.ready, what="the controls")
        screen.editor.load("바람이 분다")
        screen.editor.focus()
        await pilot.press("f8")
        step = await pending(pilot, screen)
        assert app.focused is screen.query_one(CandidateStrip).cards()[0]
        await pilot.press("space", "1")  # the model's pick, then the first alternative
        step = await pending(pilot, screen)
        assert len(step.chosen) >= 1 and screen.editor.text == "바람이 분다"
