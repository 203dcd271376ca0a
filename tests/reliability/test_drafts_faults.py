"""Nothing a writer types is lost: kill -9 during typing and saving, a really full disk, a
read-only data folder, corrupt draft and settings files, text that cannot be UTF-8.

The fast kill runs are a few trials; the 50-trial runs are ``slow`` (see conftest.py) and
``python -m tests.reliability.kill_drafts`` runs them with more knobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kolyric.app.app import KolyricApp
from kolyric.app.config import load_config
from kolyric.app.drafts import Draft, DraftStore
from kolyric.app.screens.export import ExportScreen
from kolyric.app.screens.playground import PlaygroundScreen
from kolyric.app.testing import wait_until

from tests.reliability import kill_drafts
from tests.reliability._util import count, remount, try_mount_tmpfs, umount

SIZE = (120, 36)


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("KOLYRIC_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("KOLYRIC_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def new_app(**kwargs) -> KolyricApp:
    return KolyricApp(load_on_start=False, cursor_blink=False, **kwargs)


def messages(app: KolyricApp) -> str:
    return " | ".join(str(n.message) for n in app._notifications)


# -- kill -9 ---------------------------------------------------------------------------------------------
def check_kill_report(report, name: str) -> None:
    count(f"kill -9 trials: {name}", report.trials)
    count(f"kill -9 trials: {name}, during a save", report.kills_during_write)
    assert not report.failures, "\n".join(report.failures)


def test_kill_the_draft_store_mid_save(tmp_path):
    report = kill_drafts.run_store_trials(8, tmp_path, seed=1, log=lambda *_: None)
    check_kill_report(report, "draft store (child process)")
    assert report.trials == 8 and report.kills_during_write >= 1


def test_kill_the_real_app_while_typing_and_saving(tmp_path):
    report = kill_drafts.run_app_trials(2, tmp_path, seed=1, draft_lines=200, log=lambda *_: None)
    check_kill_report(report, "kolyric app in a pty")
    assert report.trials == 2 and report.restored_notices == report.launches_with_draft


@pytest.mark.slow
def test_fifty_kills_of_the_draft_store(tmp_path):
    report = kill_drafts.run_store_trials(50, tmp_path, seed=7)
    print({k: v for k, v in vars(report).items() if k != "failures"})
    check_kill_report(report, "draft store (child process)")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_fifty_kills_of_the_real_app(tmp_path):
    report = kill_drafts.run_app_trials(50, tmp_path, seed=7)
    print({k: v for k, v in vars(report).items() if k != "failures"})
    check_kill_report(report, "kolyric app in a pty")
    assert report.kills_during_write >= 10 and report.saves_observed >= 10


# -- a full disk and a read-only folder, for real (a small tmpfs; root only) ----------------------------
@pytest.fixture
def small_disk(tmp_path):
    # 256 KB: once space comes back it holds two copies of the ~50 KB draft (an atomic save
    # needs room for the old file and the new one at once)
    mount = tmp_path / "data"
    if not try_mount_tmpfs(mount, "256k"):
        pytest.skip("cannot mount a tmpfs here (needs root); tests/functional covers ENOSPC by monkeypatch")
    yield mount
    umount(mount)


def fill(mount: Path, leave: int) -> Path:
    """Fill the tmpfs but ``leave`` bytes (roughly: tmpfs counts whole pages)."""
    import os

    filler = mount / "filler"
    free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    filler.write_bytes(b"\0" * max(0, free - leave))
    return filler


@pytest.mark.anyio
async def test_a_really_full_disk(dirs, small_disk):
    DraftStore(small_disk).save(Draft("첫 줄"), 1)
    filler = fill(small_disk, 8192)
    app = new_app(data_dir_override=small_disk)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert screen.editor.text == "첫 줄"
        screen.editor.area.move_cursor(screen.editor.area.document.end)
        big = "\n" + "가사가 길어진다 " * 2000  # ~50 KB of UTF-8: more than the disk has left
        screen.editor.area.insert(big)
        await wait_until(pilot, lambda: not app.status_draft_ok, timeout=5, what="the failed save")
        await pilot.pause()
        assert "disk is full" in app.status_draft
        assert "kept in memory" in messages(app) and "Ctrl+S exports" in messages(app)
        on_disk = json.loads((small_disk / "draft.json").read_text(encoding="utf-8"))
        assert on_disk["text"] == "첫 줄"  # the last good version, whole
        assert not list(small_disk.glob(".draft.json.*.tmp"))
        await pilot.press(*" 계속")  # the app keeps working
        assert screen.editor.text.endswith("계속")
        # export elsewhere
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, ExportScreen)
        target = dirs / "elsewhere" / "song.txt"
        app.screen.query_one("#export-path").value = str(target)
        await pilot.press("enter")
        assert isinstance(app.screen, PlaygroundScreen)
        assert target.read_text(encoding="utf-8") == screen.editor.text + "\n"
        # space comes back: the next edit saves everything
        filler.unlink()
        await pilot.press("!")
        await wait_until(pilot, lambda: app.status_draft_ok, timeout=5, what="the save after space came back")
        await pilot.pause()
        assert "saved again" in messages(app)
        text = screen.editor.text
        await wait_until(
            pilot,
            lambda: json.loads((small_disk / "draft.json").read_text(encoding="utf-8"))["text"] == text,
            timeout=5,
            what="the last edit on disk",
        )
    count("pilot: real ENOSPC (tmpfs)")


@pytest.mark.anyio
async def test_a_read_only_data_folder(dirs, small_disk):
    DraftStore(small_disk).save(Draft("읽기만 되는 곳", prompt="다시"), 1)
    remount(small_disk, "ro")
    app = new_app(data_dir_override=small_disk)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert screen.editor.text == "읽기만 되는 곳" and screen.prompt_input.value == "다시"  # restored
        await pilot.press(*"새 줄 ")
        await wait_until(pilot, lambda: not app.status_draft_ok, timeout=5, what="the failed save")
        await pilot.pause()
        assert "read-only" in app.status_draft and "kept in memory" in messages(app)
        await pilot.press(*"계속")
        assert screen.editor.text == "새 줄 계속읽기만 되는 곳"
        await pilot.press("ctrl+s")
        target = dirs / "export" / "draft.txt"
        app.screen.query_one("#export-path").value = str(target)
        await pilot.press("enter")
        assert target.read_text(encoding="utf-8") == "새 줄 계속읽기만 되는 곳\n"
        remount(small_disk, "rw")
        await pilot.press("!")
        await wait_until(pilot, lambda: app.status_draft_ok, timeout=5, what="the save once writable")
    assert json.loads((small_disk / "draft.json").read_text(encoding="utf-8"))["text"] == "새 줄 계속!읽기만 되는 곳"
    count("pilot: read-only data folder (tmpfs ro)")


# -- text that cannot be written as UTF-8 ---------------------------------------------------------------
@pytest.mark.anyio
async def test_a_lone_surrogate_in_the_draft_is_saved_and_exported(dirs):
    """A broken paste (a lone UTF-16 surrogate, e.g. through the browser driver) once made every
    autosave fail silently (the status still said "draft saved") and the exit crash."""
    from textual import events

    app = new_app()
    async with app.run_test(size=SIZE) as pilot:
        app.screen.editor.area.post_message(events.Paste("깨진\ud83d붙여넣기"))
        await wait_until(
            pilot,
            lambda: (
                (dirs / "data" / "draft.json").exists()
                and "붙여넣기" in (dirs / "data" / "draft.json").read_text(encoding="utf-8")
            ),
            timeout=5,
            what="the autosave",
        )
        assert app.status_draft_ok
        await pilot.press("ctrl+s")
        app.screen.query_one("#export-path").value = str(dirs / "out.txt")
        await pilot.press("enter")
        assert isinstance(app.screen, PlaygroundScreen)
        await pilot.press("x")
    draft, notices = DraftStore(dirs / "data").load()
    assert notices == [] and draft.text.startswith("깨진\ud83d붙여넣기")
    assert (dirs / "out.txt").read_text(encoding="utf-8").startswith("깨진\ufffd붙여넣기")
    again = new_app()
    async with again.run_test(size=SIZE) as pilot:
        assert again.screen.editor.text == draft.text


# -- corrupt files ------------------------------------------------------------------------------------------
GOOD = Draft("바람이 분다", "다시", "긍정").to_json().encode("utf-8")
CORRUPT_DRAFTS = {
    "empty": b"",
    "truncated": GOOD[: len(GOOD) // 2],
    "nul bytes": b"\0" * 512,
    "not utf-8": b'{"format": "kolyric-draft", "text": "\xff"}',
    "a list": b"[1, 2]",
    "another format": b'{"format": "notes", "text": "x"}',
    "text not a string": b'{"format": "kolyric-draft", "text": 5}',
    "nested too deeply": b"[" * 100_000,
    "NaN and junk": b'{"format": "kolyric-draft", "text": NaN}}',
}


@pytest.mark.parametrize("name", list(CORRUPT_DRAFTS))
def test_corrupt_draft_is_set_aside_byte_for_byte(tmp_path, name):
    count("corrupt files: drafts")
    raw = CORRUPT_DRAFTS[name]
    (tmp_path / "draft.json").write_bytes(raw)
    draft, notices = DraftStore(tmp_path).load()
    assert draft is None and len(notices) == 1 and "unreadable" in notices[0]
    (aside,) = tmp_path.glob("draft.json.bad-*")
    assert aside.read_bytes() == raw and aside.name in notices[0]  # kept, not deleted, and named
    assert not (tmp_path / "draft.json").exists()


def test_a_draft_field_that_cannot_be_read_is_left_out_and_the_lyrics_kept(tmp_path):
    count("corrupt files: drafts")
    raw = b'{"format": "kolyric-draft", "text": "x", "polarity": "\xec\xa4\x91\xeb\xa6\xbd"}'
    (tmp_path / "draft.json").write_bytes(raw)
    draft, notices = DraftStore(tmp_path).load()
    assert draft is not None and draft.text == "x" and draft.polarity is None
    (aside,) = tmp_path.glob("draft.json.bad-*")
    assert len(notices) == 1 and "polarity" in notices[0] and aside.name in notices[0]
    assert aside.read_bytes() == raw  # the file as it was is kept beside the one written back


CORRUPT_SETTINGS = {
    "unclosed": b"theme = [",
    "not utf-8": b'theme = "\xff"',
    "nul bytes": b"\0\0\0",
    "wrong type": b"preset = 5",
    "list of numbers": b"recent_models = [1, 2]",
    "unknown precision": b'precision = "fp64"',
    "unknown preset": b'preset = "loudest"',
    "nested too deeply": b"a = " + b"[" * 100_000,
    "table for a string": b"[model]\nx = 1\n",
}


@pytest.mark.parametrize("name", list(CORRUPT_SETTINGS))
def test_corrupt_settings_are_set_aside_byte_for_byte(tmp_path, name):
    count("corrupt files: settings")
    raw = CORRUPT_SETTINGS[name]
    path = tmp_path / "settings.toml"
    path.write_bytes(raw)
    config, notices = load_config(path)
    assert config == type(config)() and len(notices) == 1 and "using defaults" in notices[0]
    (aside,) = tmp_path.glob("settings.toml.bad-*")
    assert aside.read_bytes() == raw and aside.name in notices[0]


@pytest.mark.anyio
async def test_the_app_starts_on_deeply_corrupt_files_and_says_so(dirs):
    """Nesting deeper than the parser's recursion limit once crashed the app at start."""
    (dirs / "data").mkdir()
    (dirs / "data" / "draft.json").write_bytes(CORRUPT_DRAFTS["nested too deeply"])
    (dirs / "config").mkdir()
    (dirs / "config" / "settings.toml").write_bytes(CORRUPT_SETTINGS["nested too deeply"])
    app = new_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.screen.editor.text == "" and app.theme == "kolyric-night"
        assert "draft was unreadable" in messages(app) and "Settings file" in messages(app)
        await pilot.press(*"새로 시작")
        await wait_until(pilot, lambda: (dirs / "data" / "draft.json").exists(), timeout=5, what="a new draft")
    assert len(list((dirs / "data").glob("draft.json.bad-*"))) == 1
    assert len(list((dirs / "config").glob("settings.toml.bad-*"))) == 1


def test_command_line_runs_ignore_a_deeply_corrupt_settings_file(tmp_path, monkeypatch):
    """`kolyric generate` reads settings.toml read-only; a corrupt one must not crash it."""
    from kolyric.cli.options import user_config

    monkeypatch.setenv("KOLYRIC_CONFIG_DIR", str(tmp_path))
    (tmp_path / "settings.toml").write_bytes(CORRUPT_SETTINGS["nested too deeply"])
    assert user_config() is None
    assert (tmp_path / "settings.toml").read_bytes() == CORRUPT_SETTINGS["nested too deeply"]  # left alone


@pytest.mark.anyio
async def test_a_folder_where_the_draft_should_be(dirs):
    (dirs / "data" / "draft.json").mkdir(parents=True)
    app = new_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "Could not read the saved draft" in messages(app)
        await pilot.press(*"그래도")
        await wait_until(pilot, lambda: not app.status_draft_ok, timeout=5, what="the failed save")
        assert "NOT saved" in app.status_draft
        assert app.screen.editor.text == "그래도"
    assert (dirs / "data" / "draft.json").is_dir()  # nothing of the user's was removed
