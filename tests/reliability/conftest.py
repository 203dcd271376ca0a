"""Reliability tests: fault injection, fuzzing and a soak.

Slow tests
----------
Tests marked ``@pytest.mark.slow`` in this folder (the 50-trial draft kills, the 10-trial
training kills, the 1,000-generation soaks) are **skipped** in a plain run. They run when
asked for, either way:

    pytest tests/reliability -m slow            # only the slow ones
    KOLYRIC_SLOW=1 pytest tests/reliability     # everything, slow ones included

The same runs are scripts with more knobs (``python -m tests.reliability.kill_drafts --help``,
``kill_train``, ``soak``).

At the end of a run the number of fuzz cases and trials is printed, and written to
``.pytest_cache/kolyric-reliability-counts.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.reliability._util import COUNTS, COUNTS_FILE, HERE


def slow_requested(config: pytest.Config) -> bool:
    if os.environ.get("KOLYRIC_SLOW", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    return "slow" in (config.getoption("markexpr", default="") or "")  # -m slow, -m "slow or …"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if slow_requested(config):
        return
    skip = pytest.mark.skip(reason="slow: run with `-m slow` or KOLYRIC_SLOW=1")
    for item in items:
        if item.get_closest_marker("slow") and HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not COUNTS:
        return
    terminalreporter.section("kolyric reliability: cases and trials run")
    for name, n in sorted(COUNTS.items()):
        terminalreporter.write_line(f"{name:<40} {n:>7}")
    try:
        COUNTS_FILE.parent.mkdir(parents=True, exist_ok=True)
        COUNTS_FILE.write_text(json.dumps(dict(sorted(COUNTS.items())), indent=1) + "\n", encoding="utf-8")
    except OSError:
        pass


@pytest.fixture
def anyio_backend():
    return "asyncio"
