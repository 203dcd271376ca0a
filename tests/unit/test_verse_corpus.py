"""Poems and lyrics as corpora: the shared poems format, mixing corpora, hostile corpus files, and
the training settings that are checked before Lightning starts."""

from __future__ import annotations

import json
import os
import time

import pytest

from kolyric.training.corpora import CorpusError, CorpusSpec, load_corpora, normalize_text, read_user_file
from kolyric.training.run import TrainConfig

from tests.conftest import CORPUS_DIR, ROOT

VERSE = ROOT / "tests" / "data" / "verse_sample.jsonl"


def test_a_poems_file_reads_as_it_is_one_poem_an_example():
    rows = [json.loads(line) for line in VERSE.read_text(encoding="utf-8").splitlines()]
    examples, skipped = read_user_file(VERSE)
    assert skipped == 0 and len(examples) == len(rows)
    for example, row in zip(examples, rows):
        assert example.polarity is None
        assert example.text == normalize_text(row["text"])
        assert example.text.count("\n") == row["text"].strip().count("\n")  # lines and stanzas kept
    assert any("\n\n" in e.text for e in examples)


def test_normalize_text_keeps_lines_and_folds_blank_runs():
    assert normalize_text("  하나 \r\n둘  \n\n\n\n셋\n") == "하나\n둘\n\n셋"
    assert normalize_text("\n\n가\n") == "가"


def test_a_lyrics_txt_keeps_its_line_breaks(tmp_path):
    path = tmp_path / "songs.txt"
    path.write_text("첫 줄\n둘째 줄\n\n다른 노래\n끝 줄\n", encoding="utf-8")
    examples, _ = read_user_file(path)
    assert [e.text for e in examples] == ["첫 줄\n둘째 줄", "다른 노래\n끝 줄"]


def test_corpora_mix_with_repeats_and_unrepeated_validation():
    one = load_corpora([str(VERSE)], val_share=0.2, seed=3)
    mixed = load_corpora(
        ["nsmc", f"{VERSE},repeat=3"], root=CORPUS_DIR, val_share=0.2, seed=3, limit_train=50, limit_val=10
    )
    verse_train = [e for e in mixed.train if e.polarity is None]
    assert len(verse_train) == 3 * len(one.train[:50])
    assert len(mixed.val) == 10 + len(one.val[:10])
    assert "×3" in mixed.description


@pytest.mark.parametrize(
    "spec, message",
    [
        ("poems.jsonl,repeat=0", "repeat must be an integer in [1, 1000]"),
        ("poems.jsonl,repeat=x", "repeat must be an integer"),
        ("poems.jsonl,repeat=" + "9" * 5000, "repeat must be an integer"),
        (",repeat=2", "name a corpus"),
    ],
    ids=["zero", "word", "5000-digits", "no-corpus"],
)
def test_bad_repeat_is_a_one_line_message(spec, message):
    with pytest.raises(CorpusError, match=None) as info:
        CorpusSpec.parse(spec)
    assert message in str(info.value) and len(str(info.value)) < 200


def test_spec_without_repeat_is_the_path():
    assert CorpusSpec.parse("a,b.jsonl") == CorpusSpec("a,b.jsonl", 1)
    assert str(CorpusSpec.parse("x.jsonl,repeat=4")) == "x.jsonl,repeat=4"


@pytest.mark.parametrize(
    "row, message",
    [
        ('{"text": "좋다", "polarity": ' + "1" * 5000 + "}", "not valid JSON"),
        ('{"text": "\\ud800 좋다"}', "lone surrogate"),
        ('{"text": "좋다", "polarity": "' + "중" * 5000 + '"}', "'polarity' must be"),
    ],
    ids=["5000-digit-polarity", "lone-surrogate", "long-polarity"],
)
def test_hostile_jsonl_rows_name_file_and_line(tmp_path, row, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "첫 줄"}\n' + row + "\n", encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        read_user_file(path)
    text = str(info.value)
    assert text.startswith(f"{path}:2: ") and message in text and len(text) < 300


def test_a_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "corpus.txt"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(CorpusError, match="not a regular file"):
        read_user_file(fifo)
    assert time.monotonic() - started < 2


def test_a_link_to_dev_zero_is_refused(tmp_path):
    link = tmp_path / "zero.txt"
    link.symlink_to("/dev/zero")
    with pytest.raises(CorpusError, match="not a regular file"):
        read_user_file(link)


def test_a_symlink_loop_says_so(tmp_path):
    loop = tmp_path / "loop.txt"
    loop.symlink_to(loop)
    with pytest.raises(CorpusError, match="leads nowhere"):
        read_user_file(loop)


def test_a_huge_line_is_refused_without_reading_it_all(tmp_path, monkeypatch):
    import kolyric.training.corpora as corpora

    monkeypatch.setattr(corpora, "MAX_LINE_BYTES", 1024)
    path = tmp_path / "big.txt"
    path.write_bytes(b"a" * 5000)
    with pytest.raises(CorpusError, match=":1: the line is longer than"):
        read_user_file(path)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("accelerator", "bogus", "--accelerator: must be one of"),
        ("devices", "bogus", "--devices: must be auto"),
        ("devices", "0,x", "--devices: must be auto"),
        ("devices", 0, "--devices: must be auto"),
        ("num_nodes", 2, "--num-nodes: 2 machines need a multi-machine launcher"),
        ("base", "/nonexistent/base", "--base: no such file or folder"),
    ],
)
def test_train_settings_refused_before_lightning(tmp_path, monkeypatch, field, value, message):
    for name in ("MASTER_ADDR", "NODE_RANK", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    problems = TrainConfig(out=str(tmp_path / "o"), **{field: value}).problems()
    assert any(p.startswith(message) for p in problems), problems


def test_devices_lists_and_counts_are_fine(tmp_path):
    for value in ("auto", 1, -1, "0,1", "[0, 1]"):
        assert not [p for p in TrainConfig(out=str(tmp_path), devices=value).problems() if "devices" in p]


def test_a_folder_without_last_ckpt_names_the_complete_best_one(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "epoch=0-val_loss=3.10.ckpt").write_bytes(b"x")
    (out / "epoch=1-val_loss=2.90.ckpt").write_bytes(b"x")
    resume = TrainConfig(out=str(out), resume="last").problems()
    assert any(
        "--resume: no checkpoint at" in p and f"--resume {out / 'epoch=1-val_loss=2.90.ckpt'}" in p for p in resume
    ), resume
    fresh = TrainConfig(out=str(out)).problems()
    assert any(f"continue them with --resume {out / 'epoch=1-val_loss=2.90.ckpt'}" in p for p in fresh), fresh
