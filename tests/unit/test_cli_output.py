"""The CLI's output: a candidate is printed once, numbered, its lines as lines under the number,
with its check mark; stdout that cannot be written (`| head`, `> /dev/full`) ends quietly or in
one line, never a traceback; a mistyped flag gets the closest flag under its sub-command's usage."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kolyric.cli import main
from kolyric.cli.generate import CandidateWriter
from kolyric.engine.lyric.report import ConstraintReport, LineReport
from kolyric.engine.lyric.report import badge as check_mark

ROOT = Path(__file__).resolve().parents[2]


def env(tmp_path: Path) -> dict[str, str]:
    # Without PYTHONUNBUFFERED, as a user runs it: unbuffered, a write that only partly fits
    # a pipe drops the rest silently instead of failing (a CPython behaviour, not kolyric's).
    base = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return {
        **base,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
        "KOLYRIC_CONFIG_DIR": str(tmp_path / "config"),
        "KOLYRIC_DATA_DIR": str(tmp_path / "data"),
    }


def written(number, pieces, report=None) -> str:
    out = io.StringIO()
    writer = CandidateWriter(out, number)
    for piece in pieces:
        writer.write(piece)
    writer.end(report)
    return out.getvalue()


def line(text, syllables, rhyme=None):
    return LineReport(text, syllables, syllables, rhyme, rhyme, None, True, None)


# -- one candidate, once -----------------------------------------------------------------------------
def test_lines_are_indented_under_the_number():
    assert written(2, ["사랑해", "\n", " 너를", " 보면\n\n다시", "\n"]) == "[2] 사랑해\n    너를 보면\n\n    다시\n"
    assert written(None, ["사랑해", " 너를\n", "보면"]) == "사랑해 너를\n보면\n"
    assert written(12, ["a\nb"]) == "[12] a\n     b\n"


def test_the_check_mark_ends_the_candidate():
    met = ConstraintReport(True, "8 · 랑", lines=[line("가나다라마바사아", 8, "ㅏ")])
    assert written(1, ["가나다라마바사아", "\n"], met) == "[1] 가나다라마바사아  ✓ 8 ㅏ\n"
    two = ConstraintReport(True, "x", lines=[line("a", 6, "ㅣ"), line("b", 6, "ㅣ")])
    assert check_mark(two) == "✓ 6 ㅣ / 6 ㅣ"
    four = ConstraintReport(True, "x", lines=[line("a", n, r) for n, r in ((8, "ㅏ"), (8, "ㅏ"), (7, "ㅓ"), (9, "ㅓ"))])
    assert check_mark(four) == "✓ 8-8-7-9 ㅏㅏㅓㅓ"
    assert check_mark(ConstraintReport(False, "x", reasons=["too long"])) == "✗"
    assert check_mark(None) == ""
    # each line's own vowel, as the app's cards show it: 네 is ㅔ (its rhyme key, shared with ㅐ, is ㅐ)
    own = ConstraintReport(True, "x", lines=[line("그대 없는 밤 향에", 7, "ㅐ"), line("바람 부는 밤엔", 7, "ㅐ")])
    assert check_mark(own) == "✓ 7 ㅔ / 7 ㅔ"


def test_the_summary_goes_to_its_own_stream_and_names_why_an_empty_candidate_ended():
    out, marks = io.StringIO(), io.StringIO()
    met = ConstraintReport(True, "8 · 랑", lines=[line("가나다라마바사아", 8, "ㅏ")])
    writer = CandidateWriter(out, 1, marks)
    writer.write("가나다라마바사아\n")
    writer.end(met, "eos")
    assert (out.getvalue(), marks.getvalue()) == ("[1] 가나다라마바사아\n", "[1] ✓ 8 ㅏ\n")
    out, marks = io.StringIO(), io.StringIO()
    writer = CandidateWriter(out, None, marks)
    writer.write("사랑해")
    writer.end(None, "stop", empty=True)  # a stop string on the first token: the bare prompt, and why
    assert (out.getvalue(), marks.getvalue()) == ("사랑해\n", "(stop: nothing added)\n")
    assert written(None, ["사랑해"]) == "사랑해\n"  # nothing to say: nothing said


def test_a_stop_string_on_the_first_token_says_stop(tiny_model_dir, capsys):
    from kolyric.engine.loading import load_model
    from kolyric.engine.results import GenerationRequest
    from kolyric.engine.settings import preset
    from kolyric.engine.stream import Generator

    loaded = load_model(str(tiny_model_dir), device="cpu", precision="fp32")
    first = Generator(loaded).generate(GenerationRequest("영화", None, preset("greedy", max_length=6)))
    text = first.candidates[0].text.strip()
    assert text
    args = ["generate", "영화", "--model", str(tiny_model_dir), "--device", "cpu", "--precision", "fp32"]
    assert main([*args, "--preset", "greedy", "--max-length", "6", "--stop", text[0]]) == 0
    captured = capsys.readouterr()
    assert captured.out == "영화\n"
    assert "(stop: nothing added)" in captured.err


def test_a_constrained_generate_prints_each_candidate_once(trained_tiny_dir, capsys):
    args = [
        "generate",
        "영화",
        "--model",
        str(trained_tiny_dir),
        "--device",
        "cpu",
        "--seed",
        "1",
        "-n",
        "2",
        "--max-length",
        "40",
        "--syllables",
        "4",
        "--lines",
        "2",
        "--preset",
        "top-k-50",
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert [m.group(1) for m in re.finditer(r"^\[(\d)\] ", out, re.M)] == ["1", "2"]
    for block in re.split(r"^\[\d\] ", out, flags=re.M)[1:]:
        _first, *rest = block.rstrip("\n").split("\n")
        assert all(text.startswith("    ") for text in rest), block
    assert "✓" not in out and "✗" not in out  # stdout holds the lyrics alone: the marks go to stderr
    assert [m.group(1) for m in re.finditer(r"^\[(\d)\] (✓.*|✗)$", captured.err, re.M)] == ["1", "2"]
    assert main([*args, "--json"]) == 0
    import json

    result = json.loads(capsys.readouterr().out)
    for cand in result["candidates"]:  # each candidate's text appears once in the streamed output
        body = cand["text"].strip().split("\n")[0].strip()
        if body:
            assert out.count(body) == 1, (body, out)


# -- unwritable stdout --------------------------------------------------------------------------------
@pytest.fixture
def song(tmp_path) -> Path:
    path = tmp_path / "song.txt"
    path.write_text("[Verse]\n" + "사랑해 너를\n" * 10000, encoding="utf-8")
    return path


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_lyrics_check_into_a_full_disk_is_one_line(song, tmp_path, extra):
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "kolyric", "lyrics", "check", str(song), *extra],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=env(tmp_path),
            timeout=60,
        )
    assert proc.returncode == 1
    assert proc.stderr == "kolyric lyrics: cannot write to standard output: No space left on device\n"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_generate_json_into_a_full_disk_is_one_line(tiny_model_dir, tmp_path):
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "kolyric",
                "generate",
                "사랑",
                "--model",
                str(tiny_model_dir),
                "--max-length",
                "3",
                "--json",
            ],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=env(tmp_path),
            timeout=120,
        )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert (
        proc.stderr.strip().splitlines()[-1]
        == "kolyric generate: cannot write to standard output: No space left on device"
    )


@pytest.mark.parametrize(
    "argv", [["generate", "사랑", "-n", "3", "--max-length", "20", "--preset", "top-k-50"], ["lyrics", "check", "SONG"]]
)
def test_a_reader_that_leaves_ends_it_quietly(tiny_model_dir, song, tmp_path, argv):
    """`kolyric generate -n 3 | head -c 5`: like any Unix tool, no traceback, no noise."""
    argv = [str(song) if a == "SONG" else a for a in argv]
    if argv[0] == "generate":
        argv += ["--model", str(tiny_model_dir)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kolyric", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(tmp_path)
    )
    head = proc.stdout.read(5)
    proc.stdout.close()  # the reader leaves, as `head -c 5` does
    try:
        err = proc.stderr.read().decode("utf-8", "replace")
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(head) == 5
    assert "Traceback" not in err and "Exception ignored" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 141  # 128 + SIGPIPE, what the shell reports for `yes | head`


# -- a mistyped flag ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, prog, hint",
    [
        (["generate", "사랑", "--polarty", "긍정"], "kolyric generate", "did you mean --polarity?"),
        (["generate", "--max-lenght", "3"], "kolyric generate", "did you mean --max-length?"),
        (["lyrics", "check", "f.txt", "--strct"], "kolyric lyrics check", "did you mean --strict?"),
        (["serve", "--max-sesions", "3"], "kolyric serve", "did you mean --max-sessions?"),
        (["generat", "x"], "kolyric", "did you mean generate?"),
        (["generate", "x", "--precision", "int3"], "kolyric generate", "invalid choice: 'int3'"),
    ],
)
def test_a_mistyped_flag_gets_the_closest_under_its_command(argv, prog, hint, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    # one line naming the mistake, one pointing to --help: not argparse's usage block first
    assert err.splitlines() == [err.splitlines()[0], f"(see `{prog} --help`)"], err
    assert err.startswith(f"{prog}: error: ") and hint in err.splitlines()[0], err


def test_an_unknown_flag_with_nothing_close_is_still_named(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--zzzzzz"])
    err = capsys.readouterr().err
    assert err.startswith("kolyric generate: error: unrecognized arguments: --zzzzzz")
    assert "did you mean" not in err


def test_context_file_problems_are_one_line_naming_flag_and_path(tmp_path, capsys):
    from kolyric.cli import main

    bad = tmp_path / "draft.txt"
    bad.write_bytes(b"\xff\xfe\xfa")
    for path, why in ((tmp_path / "missing.txt", "no such file"), (bad, "not valid UTF-8")):
        assert main(["generate", "사랑", "--context-file", str(path), "-m", "mini"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Errno" not in err
        assert err.startswith(f"kolyric generate: --context-file {path}: {why}")
