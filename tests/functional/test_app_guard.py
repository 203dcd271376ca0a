"""No exception takes the app down: an undo at 80x24, and errors
injected into a key action, a widget's message handler, a widget's rendering and workers.
Each time the app stays up, says so in one line, logs the traceback in the data folder, and
the draft on disk is the one on screen."""

from __future__ import annotations

import json

import pytest

from kolyric.app import guard
from kolyric.app.app import KolyricApp
from kolyric.app.screens import autosave
from kolyric.app.testing import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dirs")]


def new_app() -> KolyricApp:
    return KolyricApp(load_on_start=False, cursor_blink=False)


async def ready(pilot):
    screen = pilot.app.screen
    await wait_until(pilot, lambda: screen.controls.ready, what="the controls")
    return screen


def saved_text(app: KolyricApp) -> str:
    return json.loads(app.drafts.path.read_text(encoding="utf-8"))["text"]


def error_notices(app: KolyricApp) -> list[str]:
    return [str(n.message) for n in app._notifications if n.severity == "error"]


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_undoing_two_new_lines_mid_draft_does_not_crash(size):
    """At 80x24, with the cursor mid-way into the last line of an 11-line draft, Enter 가나다
    Enter 라마바 then Ctrl+Z five times raised "document line index 11 is out of bounds" and
    the app died: the undo showed or hid the scrollbar while the cursor still pointed past the
    last line. Drafts around the editor's height are tried, as the scrollbar's edge moves with
    the layout."""
    app = new_app()
    async with app.run_test(size=size) as pilot:
        screen = await ready(pilot)
        for count in range(6, 16):
            text = "\n".join(["[Verse 1]", *(f"바람이 분다 너를 보낸 날 {n}" for n in range(1, count))])
            screen.editor.load(text)
            screen.editor.area.move_cursor((count - 1, 6))  # mid-way into the last line
            await pilot.press("enter", *"가나다", "enter", *"라마바")
            assert len(screen.editor.lines()) == count + 2
            for _ in range(5):
                await pilot.press("ctrl+z")
            await pilot.pause()
            assert app.is_running and not app.errors.reported, count
            assert screen.editor.text == text
            await pilot.press("ctrl+y")  # and redo works as well
            assert app.is_running and not app.errors.reported, count


async def _typed_not_yet_saved(pilot, monkeypatch, screen, text: str) -> None:
    """Type ``text`` into the draft with autosave held back: only the error report can save it."""
    await wait_until(pilot, lambda: screen.autosave.timer is None, what="the start-up autosave check")
    monkeypatch.setattr(autosave, "AUTOSAVE_DELAY", 600.0)
    screen.editor.area.focus()
    await pilot.press(*text)
    assert text not in (saved_text(pilot.app) if pilot.app.drafts.path.exists() else "")


def assert_reported(app: KolyricApp, message: str) -> None:
    assert app.is_running
    notices = error_notices(app)
    assert len(notices) == 1 and "\n" not in notices[0], notices
    assert message in notices[0] and "keeps running" in notices[0] and "draft is saved" in notices[0]
    log = (app.data_dir / guard.LOG_NAME).read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in log and message in log


async def test_an_error_in_a_key_action_is_reported_and_the_app_stays_up(monkeypatch):
    app = new_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        await _typed_not_yet_saved(pilot, monkeypatch, screen, "사랑해")

        def broken() -> None:
            raise RuntimeError("injected into an action")

        monkeypatch.setattr(screen, "action_target_line", broken)
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert_reported(app, "injected into an action")
        assert saved_text(app) == "사랑해"  # saved before the report
        await pilot.press(*"요")  # and the app still takes keys
        assert screen.editor.text == "사랑해요"


async def test_an_error_in_a_widget_handler_is_reported_once_and_the_widget_goes_on(monkeypatch):
    app = new_app()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await ready(pilot)
        await _typed_not_yet_saved(pilot, monkeypatch, screen, "바람")
        calls = []
        original = screen.sections.show

        def broken(analysis, cursor_line=None):
            calls.append(1)
            if len(calls) <= 2:
                raise ValueError("injected into a widget")
            original(analysis, cursor_line)

        monkeypatch.setattr(screen.sections, "show", broken)
        await pilot.press("이")  # the draft is analysed again: the panel's handler raises
        await pilot.pause()
        assert_reported(app, "injected into a widget")
        await pilot.press("x")  # the same error again: counted, not shown again
        await pilot.press("y")  # the screen's message loop still runs: the panel is painted
        await pilot.pause()
        assert len(error_notices(app)) == 1 and len(calls) == 3
        assert screen.sections.analysis is not None and screen.editor.text == "바람이xy"


async def test_an_error_while_rendering_is_reported_once(monkeypatch):
    app = new_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        await _typed_not_yet_saved(pilot, monkeypatch, screen, "노래")
        gutter = screen.editor.lyric_gutter

        def broken(y):
            raise ZeroDivisionError("injected into rendering")

        monkeypatch.setattr(gutter, "render_line", broken)
        gutter.refresh()
        await pilot.pause(0.2)
        gutter.refresh()
        await pilot.pause(0.2)
        assert_reported(app, "injected into rendering")
        monkeypatch.undo()
        gutter.refresh()
        await pilot.press(*"요")
        assert screen.editor.text == "노래요" and app.is_running


@pytest.mark.parametrize("exit_on_error", [False, True])
async def test_an_error_in_a_worker_is_reported_and_the_app_stays_up(monkeypatch, exit_on_error):
    """A thread worker as the app starts them (exit_on_error=False, whose errors Textual only
    logs) and one with Textual's default (whose error Textual would exit on)."""
    app = new_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        await _typed_not_yet_saved(pilot, monkeypatch, screen, "우리")

        def work() -> None:
            raise KeyError("injected into a worker")

        worker = screen.run_worker(work, thread=True, exit_on_error=exit_on_error)
        await wait_until(pilot, lambda: error_notices(app), what="the report")
        assert worker.error is not None
        assert_reported(app, "injected into a worker")
        assert saved_text(app) == "우리"
        await pilot.press(*"는")
        assert screen.editor.text == "우리는"


async def test_errors_before_the_app_is_up_are_still_textuals_to_handle():
    class Broken(KolyricApp):
        def compose(self):
            raise RuntimeError("broken at start")

    app = Broken(load_on_start=False, cursor_blink=False)
    with pytest.raises(RuntimeError, match="broken at start"):
        async with app.run_test(size=(80, 24)):
            pass
