"""Atomic writes leave nothing behind, and what a killed writer left is swept at the next start."""

from __future__ import annotations

import os
import time

import pytest

from kolyric.app.config import load_config
from kolyric.app.drafts import Draft, DraftStore
from kolyric.atomic_files import atomic_write_text, sweep_stale_temps


def temp_file(directory, name: str, age_s: float, tag: str = "k3j9x_q1"):
    path = directory / f".{name}.{tag}.tmp"  # how tempfile.mkstemp names atomic_write's files
    path.write_bytes(b'{"format": "kolyric-dra')  # torn, as a kill -9 leaves it
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_atomic_write_leaves_only_the_target(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "가사")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_only_old_temp_files_of_the_named_target_are_swept(tmp_path):
    stale = temp_file(tmp_path, "draft.json", age_s=3600)
    fresh = temp_file(tmp_path, "draft.json", age_s=0, tag="fresh123")  # a live writer's: never touched
    other = temp_file(tmp_path, "settings.toml", age_s=3600)
    mine = tmp_path / "draft.json.tmp"  # the user's own file, not an atomic-write temp
    mine.write_text("keep")
    os.utime(mine, (0, 0))
    assert sweep_stale_temps(tmp_path, "draft.json") == [stale]
    assert not stale.exists() and fresh.exists() and other.exists() and mine.exists()
    assert sweep_stale_temps(tmp_path) == [other]  # any target
    assert sweep_stale_temps(tmp_path / "missing") == []  # never raises


def test_a_directory_named_like_a_temp_is_left_alone(tmp_path):
    folder = tmp_path / ".draft.json.x.tmp"
    folder.mkdir()
    os.utime(folder, (0, 0))
    assert sweep_stale_temps(tmp_path) == [] and folder.is_dir()


def test_draft_store_and_settings_sweep_at_load(tmp_path):
    store = DraftStore(tmp_path)
    assert store.save(Draft("바람이 분다", "", None), 1)
    stale_draft = temp_file(tmp_path, "draft.json", age_s=120)
    stale_settings = temp_file(tmp_path, "settings.toml", age_s=120)
    draft, notices = store.load()
    assert draft.text == "바람이 분다" and notices == []
    assert not stale_draft.exists()
    load_config(tmp_path / "settings.toml")
    assert not stale_settings.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can delete from a read-only folder")
def test_sweep_in_a_read_only_folder_does_not_raise(tmp_path):
    stale = temp_file(tmp_path, "draft.json", age_s=3600)
    tmp_path.chmod(0o500)
    try:
        assert sweep_stale_temps(tmp_path) == []
    finally:
        tmp_path.chmod(0o700)
    assert stale.exists()
