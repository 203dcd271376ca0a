"""Snapshots of the main screens in each of the app's themes.

No model is loaded (``load_on_start=False``) and nothing model-dependent is shown, the
terminal size is fixed, the cursor does not blink and the data folders are fresh, so each
picture depends only on the app's layout and theme. Update with ``--snapshot-update`` after
checking the SVGs in ``__snapshots__/``.
"""

from __future__ import annotations

import pytest
from textual.widgets import Input

from kolyric.app.app import KolyricApp
from kolyric.app.screens.model_picker import ModelPickerScreen
from kolyric.app.testing import wait_until
from kolyric.app.widgets.fields import FieldRow

SIZE = (120, 36)
THEMES = ["kolyric-night", "kolyric-paper"]


@pytest.fixture(autouse=True)
def fresh_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("KOLYRIC_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("KOLYRIC_DATA_DIR", str(tmp_path / "data"))


def make_app(theme: str) -> KolyricApp:
    return KolyricApp(load_on_start=False, theme=theme, cursor_blink=False)


async def playground_with_a_draft(pilot) -> None:
    app = pilot.app
    screen = app.screen
    await wait_until(pilot, lambda: screen.controls.ready, what="the controls")
    await pilot.press(*"바람이 분다", "enter", *"너를 보낸 날", "enter", *"I love you 2024")
    screen.prompt_input.value = "다시 만날"
    await wait_until(pilot, lambda: app.status_draft == "draft saved", what="the autosave")


class TestPlayground:
    @pytest.mark.parametrize("theme", THEMES)
    def test_draft_and_controls(self, snap_compare, theme):
        assert snap_compare(make_app(theme), terminal_size=SIZE, run_before=playground_with_a_draft)

    @pytest.mark.parametrize("theme", THEMES)
    def test_invalid_control(self, snap_compare, theme):
        async def run_before(pilot) -> None:
            screen = pilot.app.screen
            await wait_until(pilot, lambda: screen.controls.ready, what="the controls")
            field = screen.query_one("#ctl-top_p")
            field.cursor_blink = False  # a blinking cursor is caught on or off at random
            field.focus()
            field.value = "1.5"
            # the row is marked invalid and the problem shown, then the form scrolls the field
            # back into view above it: the picture is of the settled screen
            row = next(a for a in field.ancestors if isinstance(a, FieldRow))
            await wait_until(pilot, lambda: row.invalid and screen.controls.problems, what="the problem")
            await pilot.wait_for_scheduled_animations()
            await pilot.pause()

        assert snap_compare(make_app(theme), terminal_size=SIZE, run_before=run_before)

    @pytest.mark.parametrize("theme", THEMES)
    def test_sections_and_rhymes(self, snap_compare, theme):
        """Rhyme keys in the gutter, coloured by group; the sections panel; constraint fields."""

        async def run_before(pilot) -> None:
            screen = pilot.app.screen
            await wait_until(pilot, lambda: screen.controls.ready, what="the controls")
            screen.editor.load(
                "[Verse 1]\n바람이 분다\n너를 보낸 그 날에 나\n사랑한다고 말해\n눈물이 흐르네\n\n"
                "[후렴]\n다시 올 수 있을까\n돌아와 다오"
            )
            screen.editor.area.move_cursor((8, 0))
            await pilot.press("ctrl+t")
            controls = screen.controls
            controls.scroll_end(animate=False)
            # settled: the fields scrolled to the end, the gutter and panel analysed, the toast up
            await wait_until(
                pilot,
                lambda: (
                    controls.max_scroll_y > 0
                    and controls.scroll_y == controls.max_scroll_y
                    and screen.sections.analysis is not None
                    and pilot.app._notifications
                ),
                what="the settled playground",
            )
            await pilot.pause()

        assert snap_compare(make_app(theme), terminal_size=SIZE, run_before=run_before)


class TestTraining:
    @pytest.mark.parametrize("theme", THEMES)
    def test_form(self, snap_compare, theme):
        assert snap_compare(make_app(theme), terminal_size=SIZE, press=["f3"])


class TestModelPicker:
    @pytest.mark.parametrize("theme", THEMES)
    def test_picker(self, snap_compare, theme):
        async def run_before(pilot) -> None:
            app = pilot.app
            await wait_until(pilot, lambda: app.screen.controls.ready, what="the controls")
            await pilot.press("f4")
            picker = await wait_until(
                pilot, lambda: isinstance(app.screen, ModelPickerScreen) and app.screen, what="the model picker"
            )
            spec = picker.query_one("#model-spec", Input)
            await wait_until(pilot, lambda: spec.has_focus, what="the model field's focus")
            # A blinking cursor makes the picture depend on when it is taken (it was off half
            # the time, on a busy machine): the app was started with cursor_blink=False.
            assert not spec.cursor_blink, "the picker's model field blinks although cursor_blink=False"

        assert snap_compare(make_app(theme), terminal_size=SIZE, run_before=run_before)


# -- the main screens at 80x24 and 120x40: layouts that hold on a small terminal -------------------
SIZES = {"80x24": (80, 24), "120x40": (120, 40)}
LONG_DRAFT = (
    "[Verse 1]\n바람이 분다\n너를 보낸 그 날에 나 사랑한다고 말해 눈물이 흐르네 다시 올 수 있을까 돌아와 다오\n\n"
    "[후렴]\n다시 올 수 있을까"
)


async def settled_playground(pilot):
    screen = pilot.app.screen
    await wait_until(pilot, lambda: screen.controls.ready, what="the controls")
    rows = [screen.query_one("#ctl-notes"), *screen.controls.all_rows().values()]
    await wait_until(pilot, lambda: all(row.region.height for row in rows), what="the fields laid out")
    return screen


class TestSizes:
    @pytest.mark.parametrize("size", SIZES)
    def test_playground_with_a_long_line(self, snap_compare, size):
        """Labels whole, a footer that fits, the long line wrapped with its counts on its first row."""

        async def run_before(pilot) -> None:
            screen = await settled_playground(pilot)
            screen.editor.load(LONG_DRAFT)
            screen.editor.area.move_cursor((5, 0))
            screen.prompt_input.value = "다시 만날"
            await wait_until(
                pilot,
                lambda: screen.sections.analysis is not None and pilot.app.status_draft == "draft saved",
                what="the analysis and the autosave",
            )
            await pilot.pause()

        assert snap_compare(make_app("kolyric-night"), terminal_size=SIZES[size], run_before=run_before)

    @pytest.mark.parametrize("size", SIZES)
    def test_four_candidates(self, snap_compare, size):
        """Every card reachable and said so; lines apart; an unmet constraint's reason at the card's foot."""
        from types import SimpleNamespace

        from kolyric.app.session import CandidateState
        from kolyric.app.widgets.candidates import CandidateStrip

        async def run_before(pilot) -> None:
            screen = await settled_playground(pilot)
            unmet = SimpleNamespace(
                satisfied=False, reasons=["line 2 has 9 syllables, not 7"], lines=[], constraints="7 syllables"
            )
            lines = [
                [" 그대", " 곁에", "\n", " 너를", " 보낸", " 날"],
                [" 바람이", " 분다", "\n", " 다시"],
                [" 눈물이", " 흐르네"],
                [" 돌아와", " 다오", "\n", " 제발"],
            ]
            states = [
                CandidateState(
                    n,
                    "다시 만날",
                    joiner="\n",
                    pieces=pieces,
                    finish_reason="eos",
                    seed=7,
                    report=unmet if n == 1 else None,
                )
                for n, pieces in enumerate(lines)
            ]
            strip = screen.query_one(CandidateStrip)
            strip.show(states)
            await wait_until(
                pilot, lambda: len(strip.cards()) == 4 and all(c.region.width for c in strip.cards()), what="the cards"
            )
            await pilot.pause()

        assert snap_compare(make_app("kolyric-night"), terminal_size=SIZES[size], run_before=run_before)

    @pytest.mark.parametrize("size", SIZES)
    def test_invalid_control(self, snap_compare, size):
        """The bad field's row is red and keeps its place; the message is in the box under the fields."""

        async def run_before(pilot) -> None:
            screen = await settled_playground(pilot)
            screen.query_one("#ctl-top_p").value = "1.5"
            await wait_until(pilot, lambda: screen.controls.problems, what="the problem")
            await pilot.pause()

        assert snap_compare(make_app("kolyric-night"), terminal_size=SIZES[size], run_before=run_before)

    @pytest.mark.parametrize("size", SIZES)
    def test_training_form(self, snap_compare, size):
        async def run_before(pilot) -> None:
            await settled_playground(pilot)
            await pilot.press("f3")
            await wait_until(pilot, lambda: pilot.app.screen.query("#train-form"), what="the training screen")
            await pilot.pause()

        assert snap_compare(make_app("kolyric-night"), terminal_size=SIZES[size], run_before=run_before)
