"""Fixtures for the app's Pilot tests: the asyncio backend, and config/data folders of the test's own."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """KOLYRIC_CONFIG_DIR, KOLYRIC_DATA_DIR and the documents folder exports go to (on Linux) under
    tmp_path: no test touches the user's files."""
    monkeypatch.setenv("KOLYRIC_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("KOLYRIC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_DOCUMENTS_DIR", str(tmp_path / "documents"))
    return tmp_path
