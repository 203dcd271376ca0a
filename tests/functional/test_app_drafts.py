"""Nothing is lost: autosave, restore after an unclean exit, export, bad files, a full disk."""

from __future__ import annotations

import errno
import json
import re
import tomllib

import pytest

import kolyric.app.drafts as drafts_module
from kolyric.app.app import KolyricApp
from kolyric.app.screens.export import ExportScreen
from kolyric.app.screens.playground import PlaygroundScreen
from kolyric.app.testing import wait_until

SIZE = (120, 36)
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dirs")]


def new_app(**kwargs) -> KolyricApp:
    return KolyricApp(load_on_start=False, cursor_blink=False, **kwargs)


def saved_draft(dirs) -> dict | None:
    path = dirs / "data" / "draft.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


async def test_draft_restored_after_unclean_exit(dirs, monkeypatch):
    app = new_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        # A killed process never flushes at exit: only the autosave may have written.
        monkeypatch.setattr(PlaygroundScreen, "flush_draft", lambda self: None)
        await pilot.press(*"바람이 분다", "enter", *"너를 보낸다")
        screen.prompt_input.value = "다시"
        await wait_until(
            pilot,
            lambda: (saved_draft(dirs) or {}).get("prompt") == "다시",
            timeout=10,
            what="the autosave (at most a second behind)",
        )
    assert saved_draft(dirs)["text"] == "바람이 분다\n너를 보낸다"
    assert not list((dirs / "data").glob(".draft.json.*.tmp"))  # no temp file left behind

    again = new_app()
    async with again.run_test(size=SIZE) as pilot:
        screen = again.screen
        assert screen.editor.text == "바람이 분다\n너를 보낸다"
        assert screen.prompt_input.value == "다시"
        assert screen.editor.lyric_gutter.cells(0) == ["5", "ㅏ"]  # 바람이 분다: 5 syllables, ends in ㅏ
        await wait_until(
            pilot,
            lambda: any("Restored" in str(n.message) for n in again._notifications),
            timeout=10,
            what="the restore notice",
        )


async def test_syllable_gutter_follows_typing():
    app = new_app()
    async with app.run_test(size=SIZE) as pilot:
        gutter = app.screen.editor.lyric_gutter
        await pilot.press(*"사랑해")
        assert gutter.cells(0) == ["3", "ㅐ"]  # syllables, then the rhyme key of the ending
        await pilot.press(*" 2024", "enter", *"la la")
        assert gutter.cells(0) == ["8", "ㅐ"]  # 사랑해 + 이천이십사
        assert gutter.cells(1) == ["2", ""]  # no Hangul: no rhyme key
        await pilot.press("enter")
        assert gutter.cells(2) == ["", ""]  # an empty line shows no count


async def test_corrupt_draft_and_settings_are_renamed_aside(dirs):
    (dirs / "data").mkdir()
    (dirs / "data" / "draft.json").write_bytes(b'{"format": "kolyric-draft", "text": \xff')
    (dirs / "config").mkdir()
    (dirs / "config" / "settings.toml").write_text("theme = [unclosed", encoding="utf-8")
    app = new_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.screen.editor.text == ""
        assert app.theme == "kolyric-night"

        def messages() -> str:
            return " ".join(str(n.message) for n in app._notifications)

        await wait_until(
            pilot,
            lambda: "draft was unreadable" in messages() and "Settings file" in messages(),
            timeout=10,
            what="both notices",
        )
    assert len(list((dirs / "data").glob("draft.json.bad-*"))) == 1
    assert len(list((dirs / "config").glob("settings.toml.bad-*"))) == 1


async def test_full_disk_keeps_the_draft_in_memory_and_recovers(dirs, monkeypatch):
    real_write = drafts_module.atomic_write_text

    def full_disk(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(drafts_module, "atomic_write_text", full_disk)
    app = new_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await pilot.press(*"첫 줄")
        await wait_until(pilot, lambda: not app.status_draft_ok, timeout=10, what="the failed save")
        await pilot.pause()
        assert "disk is full" in app.status_draft
        assert any("kept in memory" in str(n.message) for n in app._notifications)
        await pilot.press(*" 계속")  # typing goes on
        assert screen.editor.text == "첫 줄 계속"
        monkeypatch.setattr(drafts_module, "atomic_write_text", real_write)
        await pilot.press("!")
        await wait_until(pilot, lambda: app.status_draft_ok, timeout=10, what="the save after recovery")
        await pilot.pause()
        assert any("saved again" in str(n.message) for n in app._notifications)
    assert saved_draft(dirs)["text"] == "첫 줄 계속!"


async def test_export_to_txt(dirs):
    app = new_app()
    target = dirs / "out" / "song"
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"하나", "enter", *"둘")
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, ExportScreen)
        app.screen.query_one("#export-path").value = str(target)
        await pilot.press("enter")
        assert isinstance(app.screen, PlaygroundScreen)
    assert (dirs / "out" / "song.txt").read_text(encoding="utf-8") == "하나\n둘\n"


async def test_export_failure_is_shown_and_the_dialog_stays(dirs):
    (dirs / "a-file").write_text("x")
    app = new_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+s")
        app.screen.query_one("#export-path").value = str(dirs / "a-file" / "song.txt")
        await pilot.press("enter")
        assert isinstance(app.screen, ExportScreen)
        assert "Could not write" in str(app.screen.query_one("#export-error").render())


async def test_theme_and_preset_choices_are_remembered_but_flags_are_not(dirs):
    path = dirs / "config" / "settings.toml"
    app = new_app()
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == "kolyric-night"
        app.theme = "kolyric-paper"
        await wait_until(pilot, lambda: app.screen.controls.ready)
        app.screen.controls.apply_preset("beam-3")
        await wait_until(
            pilot,
            lambda: path.exists() and 'preset = "beam-3"' in path.read_text() and "kolyric-paper" in path.read_text(),
            timeout=10,
            what="the settings file",
        )
    flagged = new_app(theme="textual-light", preset="greedy")
    async with flagged.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: flagged.screen.controls.ready)
        assert flagged.theme == "textual-light"
        assert flagged.screen.controls.settings.strategy == "greedy"
        await pilot.pause(0.3)
    saved = tomllib.loads(path.read_text())
    assert (saved["theme"], saved["preset"]) == ("kolyric-paper", "beam-3")
    remembered = new_app()
    async with remembered.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: remembered.screen.controls.ready)
        assert remembered.theme == "kolyric-paper"
        assert remembered.screen.controls.settings.strategy == "beam"


async def test_unwritable_data_dir_is_reported_and_editing_goes_on(dirs):
    blocker = dirs / "blocker"
    blocker.write_text("a file where the data folder should be")
    app = new_app(data_dir_override=blocker / "data")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"그래도 쓴다")
        await wait_until(pilot, lambda: not app.status_draft_ok, timeout=10, what="the failed save")
        assert "NOT saved" in app.status_draft
        await pilot.press(*"!")
        assert app.screen.editor.text == "그래도 쓴다!"


LONG_DRAFT = "\n".join(f"{n}번째 줄 바람이 분다 너를 보낸 날" for n in range(1, 61))


def in_view(area, row: int) -> bool:
    y = area.wrapped_document.location_to_offset((row, 0)).y
    return area.scroll_y <= y < area.scroll_y + area.scrollable_content_region.height


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_restored_draft_opens_where_the_cursor_was(dirs, monkeypatch, size):
    app = new_app()
    with monkeypatch.context() as patch:
        async with app.run_test(size=size) as pilot:
            screen = app.screen
            await wait_until(pilot, lambda: screen.controls.ready, what="the controls")
            # a killed process never flushes: the place must reach the disk with the autosave
            patch.setattr(PlaygroundScreen, "flush_draft", lambda self: None)
            screen.editor.load(LONG_DRAFT)
            screen.editor.area.move_cursor((44, 3))
            await pilot.pause()
            top = screen.editor.top_line
            assert top > 0 and in_view(screen.editor.area, 44)
            await wait_until(
                pilot, lambda: (saved_draft(dirs) or {}).get("cursor") == [44, 3], timeout=10, what="the autosave"
            )
    assert saved_draft(dirs)["top"] == top
    again = new_app()
    async with again.run_test(size=size) as pilot:
        screen = again.screen
        area = screen.editor.area
        await wait_until(pilot, lambda: screen.editor.top_line == top, what="the view scrolled back")
        assert area.cursor_location == (44, 3) and area.has_focus
        assert in_view(area, 44)
        await pilot.press(*"가")  # typing goes on where the writer left off
        assert screen.editor.lines()[44].startswith("45번가")
        assert not again.errors.reported


async def test_a_place_saved_in_a_larger_window_keeps_the_cursor_in_view(dirs):
    app = new_app()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.controls.ready, what="the controls")
        screen.editor.load(LONG_DRAFT)
        area = screen.editor.area
        area.move_cursor((59, 0))
        await pilot.pause()
        top = screen.editor.top_line
        row = max(r for r in range(top, 60) if in_view(area, r))  # the last line in view
        area.move_cursor((row, 2))
        await pilot.pause()
        assert screen.editor.top_line == top
    saved = saved_draft(dirs)
    assert saved["cursor"] == [row, 2] and saved["top"] == top < row
    again = new_app()
    async with again.run_test(size=(80, 24)) as pilot:
        area = again.screen.editor.area
        await wait_until(pilot, lambda: area.cursor_location == (row, 2) and in_view(area, row), what="the cursor")
        assert again.screen.editor.top_line > top  # scrolled on: the smaller window shows fewer lines


async def test_a_draft_without_a_place_or_with_a_bad_one_opens_at_the_top(dirs):
    (dirs / "data").mkdir()
    draft = {"format": "kolyric-draft", "version": 1, "text": LONG_DRAFT, "cursor": [999, -4], "top": "x"}
    (dirs / "data" / "draft.json").write_text(json.dumps(draft, ensure_ascii=False), encoding="utf-8")
    app = new_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.controls.ready, what="the controls")
        await pilot.pause()
        assert screen.editor.text == LONG_DRAFT and screen.editor.area.cursor_location == (0, 0)
        assert screen.editor.top_line == 0 and not app.errors.reported
    draft = {"format": "kolyric-draft", "version": 1, "text": "가\n나", "cursor": [7, 99], "top": 50}
    (dirs / "data" / "draft.json").write_text(json.dumps(draft, ensure_ascii=False), encoding="utf-8")
    again = new_app()
    async with again.run_test(size=(80, 24)) as pilot:  # a place past the end is the end
        area = again.screen.editor.area
        await wait_until(pilot, lambda: area.cursor_location == (1, 1), what="the cursor at the end")
        assert not again.errors.reported


async def test_export_defaults_to_the_documents_folder_and_says_where(dirs, monkeypatch):
    elsewhere = dirs / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # wherever the terminal happened to start
    folder = dirs / "documents" / "kolyric"
    app = new_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(*"바람이 분다", "enter", *"너를 보낸 날")
        app.screen.prompt_input.value = "다시 만날"
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, ExportScreen)
        offered = app.screen.query_one("#export-path").value
        assert offered.startswith(str(folder) + "/") and offered.endswith(".txt")
        app.screen.query_one("#export-path").value = "봄노래"  # a name alone goes in that folder too
        await pilot.press("enter")
        assert isinstance(app.screen, PlaygroundScreen)
        told = " ".join(str(n.message) for n in app._notifications)
        assert str(folder / "봄노래.txt") in told and "봄노래.kolyric.json" in told
        await pilot.press("ctrl+s")  # the next export is offered the same folder
        assert app.screen.query_one("#export-path").value.startswith(str(folder) + "/")
        await pilot.press("escape")
    assert (folder / "봄노래.txt").read_text(encoding="utf-8") == "바람이 분다\n너를 보낸 날\n"
    assert not list(elsewhere.iterdir())
    raw = (folder / "봄노래.kolyric.json").read_text(encoding="utf-8")
    # readable as it is: Hangul written as UTF-8, not as \uXXXX escapes
    assert '"prompt": "다시 만날"' in raw
    assert not [m for m in re.findall(r"\\u([0-9a-fA-F]{4})", raw) if int(m, 16) >= 0x80]
    assert json.loads(raw)["format"] == "kolyric-export"
