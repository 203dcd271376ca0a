"""Hostile input in the app: numbers of any size in every numeric field and in the saved files,
and a browser session confined to one folder (the app's side of serving it to a browser)."""

from __future__ import annotations

import json
import os

import pytest

from kolyric.app.app import KolyricApp
from kolyric.app.config import confined_dir, outside_confinement
from kolyric.app.drafts import Draft
from kolyric.app.screens.export import ExportScreen
from kolyric.app.testing import wait_until
from kolyric.app.training_form import TRAIN_FIELDS, parse_form
from kolyric.app.widgets.control_values import CONSTRAINT_FIELDS
from kolyric.engine.settings_fields import FIELDS

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dirs")]
SIZE = (120, 40)
HUGE = "9" * 5000  # past int()'s 4,300-digit limit
NUMBERS = [HUGE, "-" + HUGE, "1" + "0" * 4299, HUGE + ".5", "1e" + HUGE, "²", "+-3", "0x1F", "nan", "inf"]


def new_app() -> KolyricApp:
    return KolyricApp(load_on_start=False, cursor_blink=False)


async def ready(pilot):
    screen = pilot.app.screen
    await wait_until(pilot, lambda: screen.controls.ready, what="the controls")
    return screen


# -- item 4: numbers of any size ------------------------------------------------------------------
async def test_any_number_in_any_control_is_a_marked_field_never_a_crash():
    app = new_app()
    cases = 0
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        controls = screen.controls
        numeric = [name for name, spec in FIELDS.items() if spec.kind in (int, float)]
        text_fields = [spec.name for spec in CONSTRAINT_FIELDS if not spec.choices]
        for name in [*numeric, *text_fields]:
            row = controls.all_rows()[name]
            for value in NUMBERS:
                row.control.value = value  # as if typed (Input.Changed validates)
                await pilot.pause()
                cases += 1
                assert app.is_running and not app.errors.reported, (name, value[:20])
                if name not in ("rhyme", "scheme", "seed") or len(value) > 12:
                    assert row.invalid, (name, value[:20])
                assert row.message is None or len(row.message) <= 160
            row.control.value = ""
        await pilot.pause()
        assert cases == len(NUMBERS) * (len(numeric) + len(text_fields))
        # the poisoned value was autosaved as typed; the next start must come up all the same
        controls.set_values(syllables=HUGE)
        screen.save_draft_now()
        await wait_until(
            pilot,
            lambda: HUGE in app.drafts.path.read_text(encoding="utf-8") if app.drafts.path.exists() else False,
            what="the autosave",
        )
    again = new_app()
    async with again.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        assert again.is_running and not again.errors.reported
        # a value too long for any field is set aside with a notice; the rest of the draft is kept
        assert screen.controls.constraint_rows["syllables"].raw_value == ""


def test_any_number_in_the_training_form_is_a_problem_never_a_crash(tmp_path):
    base = {
        "corpus": "nsmc",
        "model": "any",
        "max_seq_length": "32",
        "batch_size": "8",
        "lr": "5e-5",
        "epochs": "1",
        "seed": "7",
    }
    for name in TRAIN_FIELDS:
        for value in NUMBERS:
            request, problems = parse_form({**base, name: value}, data_dir=tmp_path)
            assert request is None and [p.field for p in problems] == [name], (name, value[:20])
            assert len(problems[0].message) < 120


@pytest.mark.parametrize("where", ["constraints", "prompt", "polarity"])
async def test_a_poisoned_draft_field_is_set_aside_and_the_lyrics_kept(dirs, where):
    data = dirs / "data"
    data.mkdir(parents=True)
    draft = {
        "format": "kolyric-draft",
        "version": 1,
        "text": "바람이 분다\n너를 보낸 날",
        "prompt": "다시",
        "polarity": None,
        "constraints": {"syllables": "7", "rhyme": "랑"},
    }
    raw = json.dumps(draft, ensure_ascii=False)
    poison = {"constraints": ('"7"', HUGE), "prompt": ('"다시"', HUGE), "polarity": ("null", HUGE)}[where]
    (data / "draft.json").write_text(raw.replace(*poison, 1), encoding="utf-8")
    for start in range(2):  # the second start finds the file written back without the bad field
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            screen = await ready(pilot)
            assert app.is_running and not app.errors.reported
            assert screen.editor.text == "바람이 분다\n너를 보낸 날"
            notices = [str(n.message) for n in app._notifications if "left out" in str(n.message)]
            if start == 0:
                assert len(notices) == 1 and where in notices[0] and "5,000 digits" in notices[0]
                assert len(notices[0]) < 400
            else:
                assert notices == []
            assert screen.controls.constraint_rows["rhyme"].raw_value == "랑"
    kept = sorted(data.glob("draft.json.bad-*"))
    assert len(kept) == 1 and HUGE in kept[0].read_text(encoding="utf-8")  # the original is kept aside
    assert HUGE not in (data / "draft.json").read_text(encoding="utf-8")
    assert Draft.from_json((data / "draft.json").read_text(encoding="utf-8")).text == "바람이 분다\n너를 보낸 날"


async def test_a_huge_number_in_the_settings_file_means_defaults_and_a_notice(dirs):
    config = dirs / "config"
    config.mkdir(parents=True)
    (config / "settings.toml").write_text(f'theme = "kolyric-paper"\nrecent = {HUGE}\n', encoding="utf-8")
    app = new_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert app.is_running and app.theme == "kolyric-night"
        assert any("unreadable" in str(n.message) for n in app._notifications)
        assert list(config.glob("settings.toml.bad-*"))


# -- item 1: a browser session writes only inside its folder ----------------------------------------
@pytest.fixture
def jail(tmp_path, monkeypatch):
    folder = tmp_path / "jail"
    folder.mkdir()
    monkeypatch.setenv("KOLYRIC_CONFINED_DIR", str(folder))
    return folder.resolve()


def test_confinement_resolves_links_and_dots(jail, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (jail / "link").symlink_to(outside)
    assert confined_dir() == jail
    assert outside_confinement(jail / "song.txt") is None
    assert outside_confinement("song.txt") is None  # relative: inside the folder
    for path in (
        outside / "x.txt",
        jail / ".." / "outside" / "x.txt",
        jail / "link" / "x.txt",
        "/etc/x.pth",
        "~/x.txt",
        "../x.txt",
    ):
        refusal = outside_confinement(path)
        assert refusal is not None and str(jail) in refusal, path


async def test_export_outside_the_folder_is_refused_with_the_folder_named(jail, tmp_path, monkeypatch):
    monkeypatch.setenv("KOLYRIC_ONNX_CACHE", "")  # recorded, so the app's setting is undone after the test
    monkeypatch.delenv("KOLYRIC_ONNX_CACHE")
    app = new_app()
    assert str(app.data_dir).startswith(str(jail))  # drafts go inside too, and the engine's int8 graphs
    assert os.environ["KOLYRIC_ONNX_CACHE"].startswith(str(jail))
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await pilot.press(*"바람이 분다")
        await pilot.press("ctrl+s")
        dialog = app.screen
        assert isinstance(dialog, ExportScreen) and dialog.path.startswith(str(jail))
        target = tmp_path / "site-packages" / "evil.pth"
        target.parent.mkdir()
        dialog.query_one("#export-path").value = str(target)
        await pilot.press("enter")
        error = str(dialog.query_one("#export-error").render())
        assert "may write only inside" in error and str(jail) in error and "\n" not in error.strip()
        assert app.screen is dialog and not target.exists()
        dialog.query_one("#export-path").value = "song"
        await pilot.press("enter")
        assert app.screen is screen
        assert (jail / "song.txt").read_text(encoding="utf-8") == "바람이 분다\n"


def test_training_folders_outside_are_refused(jail, tmp_path):
    base = {
        "corpus": "nsmc",
        "model": "any",
        "max_seq_length": "32",
        "batch_size": "8",
        "lr": "5e-5",
        "epochs": "1",
        "seed": "7",
    }
    data = jail / "data"
    request, problems = parse_form({**base, "out": str(tmp_path / "runs")}, data_dir=data)
    assert request is None and problems[0].field == "out" and str(jail) in problems[0].message
    request, problems = parse_form({**base, "corpus_dir": str(tmp_path)}, data_dir=data)
    assert request is None and problems[0].field == "corpus_dir" and str(jail) in problems[0].message
    for extra in ("--out=/tmp/x", "--out /tmp/x", "--corpus-dir /tmp"):
        request, problems = parse_form({**base, "extra": extra}, data_dir=data)
        assert request is None and problems[0].field == "extra"
    request, problems = parse_form(base, data_dir=data)  # the default folder is inside
    assert problems == [] and request.out.startswith(str(jail)) and request.corpus_dir.startswith(str(jail))


def test_confinement_is_off_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("KOLYRIC_CONFINED_DIR", raising=False)
    assert confined_dir() is None and outside_confinement(tmp_path / "x") is None
    assert os.environ.get("KOLYRIC_CONFINED_DIR") is None
