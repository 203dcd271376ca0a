"""Long texts become line-aligned windows that cover every token; line and stanza breaks are tokens."""

from __future__ import annotations

import json

import pytest

from kolyric.training.corpora import Example
from kolyric.training.dataset import tokenize_examples
from kolyric.training.scratch import LINE_BREAK, STANZA_BREAK, add_line_tokens, keeps_line_breaks, train_tokenizer

from tests.conftest import ROOT

VERSE = ROOT / "tests" / "data" / "verse_sample.jsonl"


def poems() -> list[str]:
    return [json.loads(line)["text"] for line in VERSE.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module", params=["metaspace", "bytelevel"])
def tokenizer(request):
    return train_tokenizer(poems() * 3, vocab_size=500, kind=request.param)


def test_line_and_stanza_breaks_round_trip(tokenizer):
    text = "그립다\n말을 할까\n\n하니 그리워\n\n\n끝"
    ids = tokenizer.encode(text, add_special_tokens=False)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    assert tokenizer.decode(ids) == text
    assert pieces.count(STANZA_BREAK) == 2 and pieces.count(LINE_BREAK) == 2
    # A break is a token of its own, never glued to a syllable.
    assert all(p.strip("\n") == "" or "\n" not in p for p in pieces)
    assert keeps_line_breaks(tokenizer)


def test_saved_tokenizer_keeps_line_breaks(tokenizer, tmp_path):
    from transformers import PreTrainedTokenizerFast

    tokenizer.save_pretrained(tmp_path)
    again = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    assert keeps_line_breaks(again)
    assert again.decode(again.encode(poems()[0], add_special_tokens=False)) == poems()[0]


def reviews_only_tokenizer():
    """A KoGPT2-like tokenizer (Metaspace BPE) that never saw a newline: it reads one as <unk>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="never")
    lines = [line for poem in poems() for line in poem.split("\n") if line]
    tok.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=300, special_tokens=["</s>", "<unk>", "<pad>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>")


def test_a_base_without_line_tokens_gets_them():
    base = reviews_only_tokenizer()
    assert base.unk_token_id in base.encode("가\n나", add_special_tokens=False)
    assert not keeps_line_breaks(base)
    before = len(base)
    assert add_line_tokens(base) == 2 and len(base) == before + 2
    assert keeps_line_breaks(base)
    assert add_line_tokens(base) == 0


@pytest.mark.parametrize("max_seq_length", [16, 24, 48])
def test_windows_cover_every_token_of_a_long_song_and_end_on_lines(tokenizer, max_seq_length):
    song = "\n\n".join(poems()[:4])  # a few hundred tokens
    eos = tokenizer.eos_token_id
    body = tokenizer.encode(song, add_special_tokens=False)
    data = tokenize_examples([Example(song)], tokenizer, max_seq_length)
    rows = [data[i].tolist() for i in range(len(data))]
    assert len(rows) > 3 and all(2 <= len(r) <= max_seq_length for r in rows)
    assert rows[-1][-1] == eos and all(r[-1] != eos for r in rows[:-1])
    # Rebuild the text from the windows: each starts inside (or at the end of) what came before.
    rebuilt: list[int] = []
    for row in rows:
        row = row[:-1] if row is rows[-1] else row
        start = _find_start(body, rebuilt, row)
        rebuilt = body[:start] + row
        assert body[start : start + len(row)] == row
    assert rebuilt == body
    line_ids = {tokenizer.convert_tokens_to_ids(LINE_BREAK), tokenizer.convert_tokens_to_ids(STANZA_BREAK)}
    ends_on_line = sum(r[-1] in line_ids for r in rows[:-1])
    cov = data.coverage
    assert cov.trained_tokens == cov.corpus_tokens == len(body) + 1
    assert ends_on_line + cov.cut_lines == len(rows) - 1


def _find_start(body: list[int], rebuilt: list[int], row: list[int]) -> int:
    for start in range(len(rebuilt), -1, -1):
        if body[start : start + len(row)] == row:
            return start
    raise AssertionError("a window is not a stretch of the text that continues the ones before it")


def test_every_window_keeps_the_polarity_word(tiny_model_dir):
    from kolyric.engine.loading import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    data = tokenize_examples([Example("정말 재밌다 " * 30, "긍정")], tok, 16)
    prefix = tok.encode("긍정", add_special_tokens=False)
    assert len(data) > 2
    assert all(data[i].tolist()[: len(prefix)] == prefix for i in range(len(data)))


def test_a_line_longer_than_the_window_is_reported_not_lost(tokenizer):
    text = "하나\n" + "가" * 200 + "\n끝"
    data = tokenize_examples([Example(text)], tokenizer, 16)
    cov = data.coverage
    assert cov.trained_tokens == cov.corpus_tokens
    assert cov.cut_lines > 0 and "mid-line" in cov.warning(16)
    assert tokenize_examples([Example("짧은 줄\n또 한 줄")], tokenizer, 64).coverage.warning(64) is None
