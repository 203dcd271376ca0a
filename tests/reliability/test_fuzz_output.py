"""Fuzzed unwritable standard output: every command whose output cannot be written (the reader
left, the disk is full, an I/O error), after any number of bytes, ends with status 141 (quietly)
or 1 (one line saying so) — never a traceback.

The commands run in this process with a stdout that fails after ``n`` bytes, so each case
costs milliseconds; tests/unit/test_cli_output.py runs the same through real pipes and
/dev/full."""

from __future__ import annotations

import contextlib
import errno
import io
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability._util import count


class FailingRaw(io.RawIOBase):
    """A file that takes ``room`` bytes, then fails every write with ``error``."""

    def __init__(self, room: int, error: int):
        self.room, self.error, self.taken = room, error, 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.taken >= self.room:
            raise (
                OSError(self.error, os.strerror(self.error))
                if self.error != errno.EPIPE
                else BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
            )
        n = min(len(data), self.room - self.taken)
        self.taken += n
        return n


def run_failing(argv: list[str], room: int, error: int, buffered: bool) -> tuple[int, str]:
    from kolyric.cli import main

    raw = FailingRaw(room, error)
    binary = io.BufferedWriter(raw, buffer_size=256) if buffered else raw
    out = io.TextIOWrapper(binary, encoding="utf-8", write_through=not buffered)
    err = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own exits (--help)
            code = exc.code
    return code, err.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("songs")
    song = d / "song.txt"
    song.write_text("[Verse 1]\n사랑해 너를\n그리워 너를\n\n[후렴]\n바람이 분다\n" * 40, encoding="utf-8")
    return {"song": song}


COMMANDS = [
    ["lyrics", "check", "SONG"],
    ["lyrics", "check", "SONG", "--json"],
    ["lyrics", "check", "SONG", "--strict"],
    ["generate", "사랑", "--max-length", "4", "-n", "2", "--preset", "top-k-50"],
    ["generate", "사랑", "--max-length", "3", "--json"],
    ["generate", "사랑", "--max-length", "3", "--preset", "beam-3"],
    ["generate", "--help"],
    ["lyrics", "check", "--help"],
    ["--help"],
]
ERRORS = [errno.EPIPE, errno.ENOSPC, errno.EIO]


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    st.sampled_from(COMMANDS),
    st.one_of(st.integers(0, 40), st.integers(0, 5000)),
    st.sampled_from(ERRORS),
    st.booleans(),
)
def test_unwritable_stdout_never_ends_in_a_traceback(files, tiny_model_dir, argv, room, error, buffered):
    count("fuzz: unwritable stdout")
    argv = [str(files["song"]) if a == "SONG" else a for a in argv]
    if argv[0] == "generate" and "--help" not in argv:
        argv += ["--model", str(tiny_model_dir), "--seed", "3"]
    code, err = run_failing(argv, room, error, buffered)
    assert "Traceback" not in err
    if code == 0:  # all of it fitted in ``room``
        return
    if error == errno.EPIPE:
        assert code == 141 and "cannot write" not in err, (code, err)
    else:
        assert code == 1, (code, err)
        assert err.strip().splitlines()[-1].endswith(f"cannot write to standard output: {os.strerror(error)}"), err
    count(f"fuzz: unwritable stdout, exit {code}")
