"""Fuzzed `lyrics check` input: the analysis functions on arbitrary text, and the CLI on
arbitrary bytes and flags. Every case ends in an analysis that accounts for every lyric line,
or one message naming the file (or the flag) — never a traceback, and never raw control
characters on the terminal."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kolyric.korean.hangul import count_syllables, split_lines
from kolyric.korean.rhyme import MAX_RHYME_SYLLABLES, RhymeOptions, rhyme_key
from kolyric.korean.sections import _HEADER_RE, analyse

from tests.reliability._util import count

LINES = st.one_of(
    st.sampled_from(
        [
            "[Verse 1]",
            "[후렴]",
            " [ Chorus x2 ] ",
            "[]",
            "[[a]]",
            "[브릿지",
            "사랑해 너를",
            "하늘 위로 날아가",
            "2024년 12월 25일",
            "9" * 60,
            "1" * 5000,
            "１２３",
            "la la la",
            "ㅋㅋㅋ",
            "ㄱ",
            "\t",
            "",
            "a\x1b[31mred\x1b[0m",
            "\x00\x07\x08",
            "\u202e뒤집힘",
            "\ufeff가",
            "가\u0301",
            "각\u11a8",
            "\u1100\u1161\u11a8",
            "😀 이모지",
            "x" * 3000,
            "Ⅻ",
            "٣٤",
            "𝟗𝟗",
        ]
    ),
    st.text(max_size=30),
)
TEXTS = st.lists(LINES, max_size=15).flatmap(
    lambda lines: st.sampled_from(["\n", "\r\n", "\r"]).map(lambda sep: sep.join(lines))
)
OPTIONS = st.builds(
    RhymeOptions, syllables=st.integers(1, MAX_RHYME_SYLLABLES), strict=st.booleans(), families=st.booleans()
)


def check_analysis(text: str, options: RhymeOptions) -> dict:
    analysis = analyse(text, options)
    data = analysis.to_dict()
    json.dumps(data, ensure_ascii=False)  # serialisable: --json never fails half-way
    lines = split_lines(text.removeprefix("\ufeff"))
    want = [(n, t) for n, t in enumerate(lines, start=1) if t.strip() and not _HEADER_RE.match(t)]
    assert [(line.number, line.text) for line in analysis.lines] == want  # every lyric line, once, in order
    for section in analysis.sections:
        letters: dict[str, str] = {}
        for line in section.lines:
            assert line.syllables == count_syllables(line.text) >= 0
            assert line.rhyme_key == rhyme_key(line.text, options)
            if line.rhyme_key is not None:
                assert letters.setdefault(line.rhyme_key, line.letter) == line.letter
        assert section.pattern == "-".join(str(line.syllables) for line in section.lines)
    return data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS, OPTIONS)
def test_analysis_accounts_for_every_line(text, options):
    count("fuzz: lyrics analyse()")
    check_analysis(text, options)


FLAGS = st.lists(
    st.one_of(
        st.just(["--json"]),
        st.just(["--strict"]),
        st.just(["--no-families"]),
        st.sampled_from(["1", "2", "3", "0", "4", "-1", "x", "", "2.5", "１", "99999999999999999999"]).map(
            lambda v: ["--rhyme-syllables", v]
        ),
        st.just(["--bogus"]),
    ),
    max_size=3,
).map(lambda groups: [a for g in groups for a in g])
FILE_BYTES = st.one_of(
    TEXTS.map(lambda t: t.encode("utf-8", "surrogatepass")),
    TEXTS.map(lambda t: b"\xef\xbb\xbf" + t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=40),
)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from kolyric.cli import main

    out, err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8"), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: one line naming the flag (kolyric.cli.Parser)
            code = exc.code
    out.seek(0)
    return code, out.read(), err.getvalue()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FILE_BYTES, FLAGS, st.sampled_from(["song.txt", "가사 파일.txt", "no-extension", "-dash.txt"]))
def test_cli_gives_a_report_or_names_the_file(data, flags, name):
    count("fuzz: kolyric lyrics check (CLI)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        code, out, err = run_cli(["lyrics", "check", str(path), *flags])
    assert "Traceback" not in err
    bad_flag = "--bogus" in flags or any(
        flags[i] == "--rhyme-syllables" and flags[i + 1] not in ("1", "2", "3", "１") for i in range(len(flags) - 1)
    )
    if bad_flag:
        assert code == 2 and ("--rhyme-syllables" in err or "--bogus" in err), err
        return
    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError:
        assert code == 2 and str(path) in err and "not valid UTF-8" in err and "line" in err, err
        return
    assert code == 0, err
    syllables = 1
    for i, arg in enumerate(flags[:-1]):
        if arg == "--rhyme-syllables":
            syllables = int(flags[i + 1])
    options = RhymeOptions(syllables=syllables, strict="--strict" in flags, families="--no-families" not in flags)
    if "--json" in flags:
        assert json.loads(out) == json.loads(json.dumps(check_analysis(text, options), ensure_ascii=False))
    else:
        assert not any(ch in out for ch in "\x1b\x00\x07\x08\r"), "control characters reach the terminal"
        n_lines = len(analyse(text, options).lines)
        assert (f"{n_lines} line" in out) if n_lines else "no lyric lines" in out
