"""Corpus readers: NSMC offline, the user's .txt/.tsv/.jsonl files, and every bad-corpus message."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kolyric.training.corpora import CorpusError, Example, load_corpus, read_nsmc, read_user_file, split_validation

from tests.conftest import CORPUS_DIR, NSMC_DIR, ROOT


def write(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


# -- the user's files ---------------------------------------------------------------------------------
def test_txt_one_example_per_song(tmp_path):
    path = write(tmp_path / "songs.txt", "첫 줄\n둘째 줄\n\n\n다음 노래\n  끝  \n", bom=True)
    examples, skipped = read_user_file(path)
    assert examples == [Example("첫 줄\n둘째 줄"), Example("다음 노래\n끝")]
    assert skipped == 0


def test_tsv_with_header_and_optional_polarity(tmp_path):
    path = write(
        tmp_path / "rows.tsv", "text\tpolarity\n좋은 노래\t긍정\n슬픈 노래\t부정\n그냥 노래\t\n한 칸\n", bom=True
    )
    examples, _ = read_user_file(path)
    assert examples == [
        Example("좋은 노래", "긍정"),
        Example("슬픈 노래", "부정"),
        Example("그냥 노래", None),
        Example("한 칸", None),
    ]


def test_jsonl_rows(tmp_path):
    rows = [{"text": "사랑해", "polarity": "긍정"}, {"text": "미워", "polarity": None}, {"text": "안녕"}]
    path = write(tmp_path / "rows.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", bom=True)
    examples, _ = read_user_file(path)
    assert examples == [Example("사랑해", "긍정"), Example("미워"), Example("안녕")]


@pytest.mark.parametrize(
    "name, text, message",
    [
        (
            "bad.tsv",
            "좋아\t긍정\n셋\t긍정\t남는 칸\n",
            "bad.tsv:2: expected 'text' or 'text<TAB>polarity', got 3 columns",
        ),
        ("bad.tsv", "좋아\t긍정\n\t부정\n", "bad.tsv:2: the text column is empty"),
        ("bad.tsv", "좋아\t중립\n", "bad.tsv:1: polarity must be 긍정, 부정 or empty, got '중립'"),
        ("bad.jsonl", '{"text": "좋아"}\n{"text": "아"\n', "bad.jsonl:2: not valid JSON"),
        ("bad.jsonl", '["좋아"]\n', "bad.jsonl:1: expected a JSON object, got list"),
        ("bad.jsonl", '{"text": ""}\n', "bad.jsonl:1: 'text' must be a non-empty string"),
        ("bad.jsonl", '{"text": "아", "polarity": "좋음"}\n', "bad.jsonl:1: 'polarity' must be"),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path, name, text, message):
    path = write(tmp_path / name, text)
    with pytest.raises(CorpusError) as info:
        read_user_file(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes("첫 줄\n".encode() + b"\xff\xfe broken\n")
    with pytest.raises(CorpusError, match=r"bad.txt:2: not UTF-8"):
        read_user_file(path)
    examples, skipped = read_user_file(path, skip_bad=True)
    assert (examples, skipped) == ([Example("첫 줄")], 1)


def test_skip_bad_rows_counts_them(tmp_path):
    path = write(
        tmp_path / "rows.jsonl", '{"text": "하나"}\nnot json\n{"text": 3}\n{"text": "둘", "polarity": "긍정"}\n'
    )
    examples, skipped = read_user_file(path, skip_bad=True)
    assert examples == [Example("하나"), Example("둘", "긍정")]
    assert skipped == 2
    tsv = write(tmp_path / "rows.tsv", "a\tb\tc\n좋아\t긍정\n\t부정\n")
    assert read_user_file(tsv, skip_bad=True) == ([Example("좋아", "긍정")], 2)


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("empty.txt", "", "the corpus is empty"),
        ("blank.txt", "\n\n   \n", "the corpus is empty"),
        ("header.tsv", "text\tpolarity\n", "the corpus is empty"),
        ("empty.jsonl", "\n", "the corpus is empty"),
    ],
)
def test_empty_corpus_is_an_error(tmp_path, name, text, message):
    with pytest.raises(CorpusError, match=message):
        read_user_file(write(tmp_path / name, text))


def test_all_rows_bad_and_skipped_is_still_empty(tmp_path):
    with pytest.raises(CorpusError, match=r"the corpus is empty: no usable text \(2 malformed rows skipped\)"):
        read_user_file(write(tmp_path / "x.jsonl", "oops\n[1]\n"), skip_bad=True)


def test_missing_file_directory_and_unknown_format(tmp_path):
    with pytest.raises(CorpusError, match=r"nope.txt: no such file"):
        read_user_file(tmp_path / "nope.txt")
    with pytest.raises(CorpusError, match="is a directory"):
        read_user_file(tmp_path)
    with pytest.raises(CorpusError, match=r"unknown corpus format '.csv'.*\.txt, \.tsv, \.jsonl"):
        read_user_file(write(tmp_path / "x.csv", "a,b\n"))


def test_validation_split_is_seeded_and_disjoint():
    examples = [Example(f"줄 {i}") for i in range(100)]
    train, val = split_validation(examples, 0.2, seed=7)
    assert len(val) == 20 and len(train) == 80
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(examples)
    assert split_validation(examples, 0.2, seed=7) == (train, val)
    assert split_validation(examples, 0.2, seed=8) != (train, val)
    assert len(split_validation(examples[:3], 0.01, seed=7)[1]) == 1  # at least one
    with pytest.raises(CorpusError, match="at least 2 examples"):
        split_validation(examples[:1], 0.5, seed=7)


def test_load_corpus_user_file_with_limits(tmp_path):
    path = write(tmp_path / "s.tsv", "".join(f"노래 {i}\t긍정\n" for i in range(50)))
    corpus = load_corpus(str(path), val_share=0.2, seed=7, limit_train=5, limit_val=3)
    assert (len(corpus.train), len(corpus.val)) == (5, 3)


# -- NSMC ---------------------------------------------------------------------------------------------------
def test_nsmc_local_read_makes_no_network_call(monkeypatch):
    import Korpora.korpus_nsmc as korpus_nsmc

    def refuse(*args, **kwargs):
        raise AssertionError("network call during an offline NSMC read")

    monkeypatch.setattr(korpus_nsmc, "fetch_nsmc", refuse)

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    corpus = load_corpus("nsmc", root=CORPUS_DIR, limit_train=1000, limit_val=200)
    assert (len(corpus.train), len(corpus.val)) == (1000, 200)
    assert {ex.polarity for ex in corpus.train} == {"긍정", "부정"}
    first = NSMC_DIR.joinpath("ratings_train.txt").read_text(encoding="utf-8").splitlines()[1].split("\t")
    assert corpus.train[0] == Example(first[1].strip(), "긍정" if first[2] == "1" else "부정")


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare is not installed")
def test_nsmc_reads_in_a_process_with_no_network_at_all():
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unshare -n is not permitted here")
    code = textwrap.dedent(f"""
        from kolyric.training.corpora import load_corpus
        c = load_corpus("nsmc", root={str(CORPUS_DIR)!r}, limit_train=500, limit_val=100)
        print(len(c.train), len(c.val))
    """)
    result = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["500", "100"]


def _fake_nsmc(root: Path, train_rows: list[str], test_rows: list[str]) -> None:
    (root / "nsmc").mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train_rows), ("test", test_rows)):
        (root / "nsmc" / f"ratings_{name}.txt").write_text("id\tdocument\tlabel\n" + "".join(rows), encoding="utf-8")


def test_nsmc_missing_downloads_through_korpora(tmp_path, monkeypatch):
    import Korpora.korpus_nsmc as korpus_nsmc

    calls = []

    def fake_fetch(root_dir, force_download):
        calls.append(root_dir)
        _fake_nsmc(Path(root_dir), ["1\t좋다\t1\n", "2\t별로\t0\n"], ["3\t최고\t1\n"])

    monkeypatch.setattr(korpus_nsmc, "fetch_nsmc", fake_fetch)
    corpus = load_corpus("nsmc", root=tmp_path)
    assert calls == [str(tmp_path)]
    assert corpus.train == [Example("좋다", "긍정"), Example("별로", "부정")]
    assert corpus.val == [Example("최고", "긍정")]


def test_nsmc_missing_and_download_failing_is_a_clear_error(tmp_path, monkeypatch):
    import Korpora.korpus_nsmc as korpus_nsmc

    def broken(root_dir, force_download):
        raise OSError("Name or service not known")

    monkeypatch.setattr(korpus_nsmc, "fetch_nsmc", broken)
    with pytest.raises(CorpusError, match=r"NSMC is not in .*nsmc and downloading it failed \(Name or service"):
        load_corpus("nsmc", root=tmp_path)


def test_nsmc_malformed_rows_and_empty_reviews(tmp_path):
    _fake_nsmc(tmp_path, ["1\t좋다\t1\n", "2\t\t0\n", "3\t깨진 줄\n", "4\t별로\t0\n"], ["5\t최고\t1\n"])
    with pytest.raises(CorpusError, match=r"ratings_train.txt:4: expected 'id<TAB>document<TAB>label"):
        read_nsmc(tmp_path, "train")
    examples, skipped = read_nsmc(tmp_path, "train", skip_bad=True)
    assert examples == [Example("좋다", "긍정"), Example("별로", "부정")]  # the empty review is dropped
    assert skipped == 1
    corpus = load_corpus("nsmc", root=tmp_path, skip_bad=True)
    assert corpus.skipped == 1 and corpus.notices == ["skipped 1 malformed row(s)"]


def test_nsmc_empty_split_is_an_error(tmp_path):
    _fake_nsmc(tmp_path, ["1\t좋다\t1\n"], [])
    with pytest.raises(CorpusError, match=r"ratings_test.txt: the corpus is empty"):
        load_corpus("nsmc", root=tmp_path)
