"""The training form on a small lyrics file: lyrics defaults, and a line saying what an epoch covers."""

from __future__ import annotations

import json
import sys

import pytest

from kolyric.app.app import KolyricApp
from kolyric.app.testing import wait_until

from tests.conftest import ROOT
from tests.functional.test_app_training import SIZE, fill, open_training

VERSE = ROOT / "tests" / "data" / "verse_sample.jsonl"
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("dirs")]


def write_songs(path) -> None:
    poems = [json.loads(line)["text"] for line in VERSE.read_text(encoding="utf-8").splitlines()]
    path.write_text("\n\n".join(p.replace("\n\n", "\n") for p in poems[:5]), encoding="utf-8")


async def test_a_lyrics_file_gets_lyrics_defaults_and_says_what_an_epoch_covers(tmp_path, tiny_model_dir):
    songs = tmp_path / "songs.txt"
    write_songs(songs)
    app = KolyricApp(load_on_start=False, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_training(pilot)
        fill(screen, model=str(tiny_model_dir), epochs="4")
        screen.query_one("#train-corpus").value = "file"
        fill(screen, corpus_file=str(songs))
        plan = screen.query_one("#train-plan")

        def planned() -> bool:
            return "Lyrics defaults:" in str(plan.render())

        await wait_until(pilot, planned, timeout=30)
        text = str(plan.render())
        assert "4 text(s)" in text and "(100%)" in text and "1 held out" in text
        assert "base model's tokenizer" in text
        # Fields the user has not touched follow the file; the one they edited (epochs) stays.
        assert screen.query_one("#train-max_seq_length").value == "128"  # the tiny base's whole window
        assert screen.query_one("#train-batch_size").value == "8"
        assert screen.query_one("#train-lr").value == "0.001"  # a small model
        assert screen.query_one("#train-epochs").value == "4"
        # Back to NSMC: the tutorial's defaults return and the plan line goes.
        screen.query_one("#train-corpus").value = "nsmc"
        await pilot.pause()
        assert screen.query_one("#train-max_seq_length").value == "32"
        assert screen.query_one("#train-batch_size").value == "32"
        assert not plan.display


async def test_a_file_that_cannot_be_read_says_so(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n", encoding="utf-8")
    app = KolyricApp(load_on_start=False, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_training(pilot)
        screen.query_one("#train-corpus").value = "file"
        fill(screen, corpus_file=str(bad))
        plan = screen.query_one("#train-plan")
        await wait_until(pilot, lambda: "cannot plan" in str(plan.render()), timeout=30)
        assert "bad.jsonl:1" in str(plan.render())


async def test_the_form_offers_the_last_runs_corpus_file_after_a_restart(dirs, tmp_path):
    """A run on a file corpus is remembered in settings.toml; the next start offers it again,
    without the corpus dir field (that is where NSMC is read from, not a file)."""
    songs = tmp_path / "songs.txt"
    write_songs(songs)
    crash = tmp_path / "crash.py"
    crash.write_text("import sys; sys.exit(1)\n")
    app = KolyricApp(load_on_start=False, cursor_blink=False, train_command=[sys.executable, str(crash)])
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_training(pilot)
        assert screen.query_one("#train-row-corpus_dir").display
        screen.query_one("#train-corpus").value = "file"
        fill(screen, model="any", corpus_file=str(songs), corpus_dir="/no/such/folder")
        await pilot.pause()
        assert not screen.query_one("#train-row-corpus_dir").display
        request, problems = screen.validate_form()  # a hidden corpus dir is no problem for a file corpus
        assert problems == [] and request is not None and "--corpus-dir" not in request.argv()
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: screen.process is None, timeout=30, what="the run to end")
        settings = dirs / "config" / "settings.toml"
        await wait_until(
            pilot,
            lambda: settings.exists() and "songs.txt" in settings.read_text(encoding="utf-8"),
            what="the corpus saved",
        )
    again = KolyricApp(load_on_start=False, cursor_blink=False)
    async with again.run_test(size=SIZE) as pilot:
        screen = await open_training(pilot)
        assert screen.query_one("#train-corpus").value == "file"
        assert screen.query_one("#train-corpus_file").value == str(songs)
        assert screen.query_one("#train-row-corpus_file").display
        assert not screen.query_one("#train-row-corpus_dir").display
        plan = screen.query_one("#train-plan")
        await wait_until(pilot, lambda: "Lyrics defaults:" in str(plan.render()), timeout=30, what="the plan")
