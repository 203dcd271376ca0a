"""Fuzzed command lines: `kolyric generate` (with a tiny model dir; values are kept small
where valid, so each run that gets past validation finishes in well under a second) and
`kolyric train` (the training itself is replaced by a recorder: only validation is fuzzed).

Every run ends in a result (exit 0) or a message naming the flag, field, file or model
(exit 2: ours, or argparse's one line) — never a traceback."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kolyric.engine.settings import PRESETS
from kolyric.engine.settings_fields import FIELDS

from tests.reliability._util import count


def run_main(argv: list[str]) -> tuple[int, str, str]:
    from kolyric.cli import main

    out_bytes = io.BytesIO()
    out = io.TextIOWrapper(out_bytes, encoding="utf-8", errors="strict", write_through=True)
    err = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out_bytes.getvalue().decode("utf-8"), err.getvalue()


@pytest.fixture(scope="module")
def isolated_config(tmp_path_factory):
    config = tmp_path_factory.mktemp("config")
    with mock.patch.dict(os.environ, {"KOLYRIC_CONFIG_DIR": str(config)}):
        yield config


@pytest.fixture(scope="module")
def context_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("context")
    (d / "good.txt").write_text("첫 줄\n\n둘째 줄\n", encoding="utf-8")
    (d / "bom.txt").write_bytes(b"\xef\xbb\xbf\xec\x95\x84\n")
    (d / "latin1.txt").write_bytes(b"caf\xe9\n")
    (d / "folder").mkdir()
    return {
        "good": d / "good.txt",
        "bom": d / "bom.txt",
        "latin1": d / "latin1.txt",
        "folder": d / "folder",
        "missing": d / "missing.txt",
    }


# -- generate --------------------------------------------------------------------------------------
WEIRD = ["", " ", "x", "nan", "inf", "-inf", "1e400", "1" + "0" * 400, "-1", "0x1", "٣", "\x1b[2J", "None"]
GENERATE_FLAGS: dict[str, list[str]] = {
    "--strategy": ["greedy", "beam", "sample", " SAMPLE ", "top-k"],
    "--num-beams": ["2", "3", "0", "17", "2.0", "2.5"],
    "--top-k": ["0", "5", "50", "-1", "51201", "5.0"],
    "--top-p": ["0.5", "1", "0.92", "0", "1.5", "-0"],
    "--temperature": ["0.7", "1.5", "0", "-1", "1e6", "1e7"],
    "--repetition-penalty": ["1", "1.2", "0.5", "11"],
    "--no-repeat-ngram-size": ["0", "2", "11", "-1"],
    "--min-length": ["0", "1", "2", "1025", "-1"],
    "--max-length": ["1", "3", "6", "0", "1025"],
    "--seed": ["0", "7", "4294967295", "4294967296", "-1", "random", "1e3"],
    "-n": ["1", "2", "0", "17", "two"],
    "--preset": [*PRESETS, "nope", "GREEDY"],
    "--polarity": ["긍정", "부정", "none", "positive", "neg", "중립", "\x1b"],
    "--device": ["cpu", "auto", "bogus", "cuda", "cuda:7", "", "mps"],
    "--precision": ["fp32", "fp8"],
    "--syllables": ["3", "0", "x", "100"],
    "--rhyme": ["가", "", "abc"],
    "--lines": ["1", "0", "x"],
    "--scheme": ["AB", "1", ""],
    "--mode": ["next", "continue", "sideways"],
}
SWITCHES = ["--json", "--strict", "--no-families"]
PROMPTS = st.one_of(
    st.sampled_from(["", "사랑해", "  ", "바람이 분다\n너를", "la la", "\udcff사랑", "\x00", "가" * 3000]),
    st.text(max_size=12),
)


@st.composite
def generate_argv(draw):
    argv = ["generate"]
    prompt = draw(PROMPTS)
    if prompt and not prompt.startswith("-"):
        argv.append(prompt)
    for flag in draw(st.lists(st.sampled_from(sorted(GENERATE_FLAGS)), max_size=5, unique=True)):
        value = draw(st.one_of(st.sampled_from(GENERATE_FLAGS[flag]), st.sampled_from(WEIRD)))
        argv += [flag, value] if not value.startswith("-") else [f"{flag}={value}"]
    argv += draw(st.lists(st.sampled_from(SWITCHES), max_size=2, unique=True))
    context = draw(st.sampled_from([None, "good", "bom", "latin1", "folder", "missing"]))
    if "--max-length" not in argv and not any(a.startswith("--max-length=") for a in argv):
        argv += ["--max-length", draw(st.sampled_from(["2", "4", "6"]))]  # keep valid runs short
    return argv, context


NAMES = set(FIELDS) | {
    "prompt",
    "polarity",
    "preset",
    "syllables",
    "rhyme",
    "lines",
    "pattern",
    "scheme",
    "strict",
    "rhyme_syllables",
    "families",
    "mode",
    "constraints",
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(generate_argv())
def test_generate_flags(isolated_config, context_files, tiny_model_dir, case):
    argv, context = case
    argv = [*argv, "--model", str(tiny_model_dir)]
    if context:
        argv += ["--context-file", str(context_files[context])]
    count("fuzz: kolyric generate argv")
    code, out, err = run_main(argv)
    count(f"fuzz: kolyric generate argv, exit {code}")
    assert "Traceback" not in err and "Traceback" not in out, err[-3000:]
    if code == 0:
        assert re.search(r"seed \d+ · ", err), err
        if "--json" in argv:
            result = json.loads(out)
            assert result["candidates"] and result["settings"]["max_length"] >= 1
        return
    assert code == 2, (code, err[-2000:])
    lines = [line for line in err.splitlines() if line.strip()]
    if "error: argument" in err or "error: unrecognized" in err:
        return  # argparse: the flag by name, in one line
    assert lines[0].startswith("kolyric generate: "), err
    if "invalid settings:" in lines[0]:
        for line in lines[1:]:
            field = line.strip().split(":", 1)[0]
            assert field in NAMES, f"problem does not name a field: {line!r}"
    else:  # context file or model: named
        assert "--context-file" in err or str(tiny_model_dir) in err, err


# -- train (validation only: the training is a recorder) -----------------------------------------------
TRAIN_FLAGS: dict[str, list[str]] = {
    "--batch-size": ["1", "32", "0", "-3", "2.5"],
    "--epochs": ["1", "0", "x"],
    "--max-steps": ["1", "0", "-1"],
    "--lr": ["5e-5", "0", "2", "nan", "inf", "-1e-3"],
    "--val-share": ["0.1", "0", "1", "nan", "1.5"],
    "--limit-train": ["10", "0", "-1"],
    "--limit-val": ["5", "0"],
    "--max-seq-length": ["32", "0", "200", "4096"],
    "--warmup-steps": ["0", "10", "-1"],
    "--warmup-ratio": ["0.05", "1", "-0.1", "nan"],
    "--seed": ["0", "7", "-1", "4294967295", "4294967296"],
    "--precision": ["32", "16-mixed", "8", "bf16-mixed", ""],
    "--devices": ["auto", "1", "0", "0,1", "-1"],
    "--num-nodes": ["1", "0"],
    "--num-workers": ["0", "2", "-1"],
    "--val-check-interval": ["1", "0.5", "0", "1.5", "nan", "1e999", "-2"],
    "--vocab-size": ["71", "70", "8000"],
    "--tokenizer-kind": ["metaspace", "bytelevel", "wordpiece"],
    "--n-layer": ["1", "0"],
    "--n-embd": ["64", "65", "0"],
    "--n-head": ["2", "4", "0", "3"],
    "--n-positions": ["64", "128", "16", "0"],
    "--corpus": ["nsmc", "missing.txt"],
    "--resume": ["last", "nowhere.ckpt"],
}
TRAIN_SWITCHES = ["--from-scratch", "--skip-bad-rows", "--no-group-by-length"]
FLAG_RE = re.compile(r"^\s*(--[a-z-]+|log_every_s):")


@st.composite
def train_argv(draw):
    argv = ["train"]
    for flag in draw(st.lists(st.sampled_from(sorted(TRAIN_FLAGS)), max_size=6, unique=True)):
        value = draw(st.one_of(st.sampled_from(TRAIN_FLAGS[flag]), st.sampled_from(WEIRD)))
        argv += [f"{flag}={value}"]
    argv += draw(st.lists(st.sampled_from(TRAIN_SWITCHES), max_size=3, unique=True))
    out = draw(st.sampled_from(["fresh", "holds-ckpt", "is-file"]))
    return argv, out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(train_argv())
def test_train_flags(isolated_config, case):
    from kolyric.training.run import TrainResult

    argv, out_kind = case
    calls = []

    def recorder(config, events=None, cancel=None):
        calls.append(config.problems())  # while its folders still exist
        import pytorch_lightning as pl

        pl.seed_everything(config.seed, verbose=False)  # the first thing train() does with the values
        return TrainResult(None, None, None)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        if out_kind == "holds-ckpt":
            out.mkdir()
            (out / "last.ckpt").write_bytes(b"x")
        elif out_kind == "is-file":
            out.write_text("x")
        argv = [*argv, "--out", str(out), "--corpus-dir", str(Path(tmp) / "corpora")]
        count("fuzz: kolyric train argv (validation)")
        with mock.patch("kolyric.training.run.train", recorder):
            code, _, err = run_main(argv)
    count(f"fuzz: kolyric train argv, exit {code}")
    assert "Traceback" not in err, err[-3000:]
    if code == 0:
        assert calls == [[]], (argv, calls)
        return
    assert code == 2 and not calls, (code, err[-2000:])
    if "error: argument" in err or "error: unrecognized" in err:
        return
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[0] == "kolyric train: invalid settings:", err
    for line in lines[1:]:
        assert FLAG_RE.match(line), f"problem does not name its flag: {line!r}"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["\udcff사랑"], "prompt: not valid UTF-8 text at character 1"),  # `kolyric generate $'\xff사랑'`
        (["사랑", "--device", "bogus"], "cannot use device 'bogus'"),
        (["사랑", "--device", "cuda:7"], "cannot use device 'cuda:7'"),
    ],
)
def test_cases_that_once_ended_in_a_traceback(isolated_config, tiny_model_dir, extra, message):
    """Found by the fuzzing above; each printed a traceback before its fix."""
    code, _, err = run_main(["generate", *extra, "--model", str(tiny_model_dir), "--max-length", "2"])
    assert code == 2 and message in err and "Traceback" not in err, err[-2000:]


def test_names_too_long_for_the_file_system_are_a_message(isolated_config, tmp_path):
    """Found by the fuzzing above: `--resume`/`--out`/`--corpus` with a 400-character name
    raised OSError (ENAMETOOLONG) out of the validation, a traceback."""
    from kolyric.training.corpora import CorpusError, read_user_file
    from kolyric.training.run import TrainResult

    long = "1" * 400
    cases = [
        (["--resume", long, "--out", str(tmp_path / "o")], "--resume: cannot use"),
        (["--out", str(tmp_path / long)], "--out: cannot use"),
    ]
    with mock.patch("kolyric.training.run.train", lambda *a, **k: TrainResult(None, None, None)):
        for argv, message in cases:
            code, _, err = run_main(["train", *argv])
            assert code == 2 and message in err and "File name too long" in err and "Traceback" not in err, err
    with pytest.raises(CorpusError, match=r"cannot read .File name too long"):
        read_user_file(tmp_path / f"{long}.txt")
