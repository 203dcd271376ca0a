"""kolyric.evaluate: exact values where the answer is known (distinct-n by hand, a uniform
model's bits, a toy classifier), and invariances (batching, padding, reused passes)."""

from __future__ import annotations

import copy
import json
import math
from types import SimpleNamespace

import pytest
import torch

from kolyric.evaluate import (
    bits_per_char,
    distinct_n,
    evaluate,
    ngrams,
    polarity_accuracy,
    sample_continuations,
)
from kolyric.evaluate_scores import score_texts
from kolyric.training.corpora import Example

REVIEWS = [
    Example("너무 재밌다", "긍정"),
    Example("시간 낭비였다 진짜 별로", "부정"),
    Example("배우들 연기가 좋았고 음악도 좋았다 다시 보고 싶다", "긍정"),
    Example("ㅋㅋ", "부정"),
    Example("스토리는 뻔하지만 볼만함", "긍정"),
]


# -- distinct-n ------------------------------------------------------------------------------------
def test_distinct_n_by_hand():
    texts = ["a b c", "a b d"]
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)  # a b c d of a b c a b d
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)  # (a b) (b c) (a b) (b d)
    assert distinct_n(texts, 3) == pytest.approx(2 / 2)


def test_distinct_n_never_crosses_samples_and_handles_empty():
    assert distinct_n(["a", "b"], 2) == 0.0  # no sample has a bigram; "a b" across them does not count
    assert distinct_n([], 1) == 0.0
    assert distinct_n(["", "   "], 1) == 0.0
    assert distinct_n(["사랑 사랑 사랑 사랑"], 1) == pytest.approx(1 / 4)
    assert distinct_n(["사랑 사랑 사랑 사랑"], 2) == pytest.approx(1 / 3)


def test_distinct_n_characters():
    assert ngrams("사랑 해", 2, unit="char") == [("사", "랑"), ("랑", "해")]  # whitespace ignored
    assert distinct_n(["사랑해 사랑"], 1, unit="char") == pytest.approx(3 / 5)
    assert distinct_n(["사랑해 사랑"], 2, unit="char") == pytest.approx(3 / 4)  # 사랑 랑해 해사 사랑
    with pytest.raises(ValueError, match="unit"):
        distinct_n(["a"], 1, unit="token")
    with pytest.raises(ValueError, match="n: must be at least 1"):
        distinct_n(["a"], 0)


# -- bits per character --------------------------------------------------------------------------------
@pytest.fixture
def uniform_loaded(tiny_model_dir):
    """The tiny model with zero token embeddings: the tied LM head gives all-zero logits, so
    every token costs exactly log2(vocab) bits whatever its context."""
    from kolyric.engine.loading import load_model

    loaded = load_model(str(tiny_model_dir), device="cpu")
    with torch.no_grad():
        loaded.model.get_input_embeddings().weight.zero_()
        assert loaded.model.get_output_embeddings().weight.abs().sum() == 0  # tied
    return loaded


def test_uniform_model_costs_log2_vocab_per_token(uniform_loaded):
    tok = uniform_loaded.tokenizer
    per_token = math.log2(uniform_loaded.model.config.vocab_size)
    scores = score_texts(uniform_loaded, [e.text for e in REVIEWS], [e.polarity for e in REVIEWS], batch_size=2)
    for ex, s in zip(REVIEWS, scores):
        # the metaspace tokenizer splits at the space after the polarity word: the review's
        # tokens are those of the whole string past the word's own, then one EOS
        n_review = len(tok.encode(f"{ex.polarity} {ex.text}", add_special_tokens=False)) - len(
            tok.encode(ex.polarity, add_special_tokens=False)
        )
        assert s.tokens == n_review + 1
        assert s.chars == len(ex.text) + 1  # the end counts as one character
        assert s.bits == pytest.approx(s.tokens * per_token, rel=1e-5)
        assert not s.truncated
    result = bits_per_char(uniform_loaded, REVIEWS)
    assert result.bits_per_char == pytest.approx(
        sum(s.tokens for s in scores) * per_token / sum(len(e.text) + 1 for e in REVIEWS), rel=1e-5
    )


def test_scores_match_a_plain_unbatched_forward_pass(tiny_loaded):
    """The batched, padded, masked sum equals -log2 P computed the obvious way, one text at a time."""
    tok, model = tiny_loaded.tokenizer, tiny_loaded.model
    scores = score_texts(tiny_loaded, [e.text for e in REVIEWS], [e.polarity for e in REVIEWS], batch_size=4)
    for ex, s in zip(REVIEWS, scores):
        cond = tok.encode(ex.polarity, add_special_tokens=False)
        ids = tok.encode(f"{ex.polarity} {ex.text}", add_special_tokens=False) + [tok.eos_token_id]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
        expected = -sum(logp[t - 1, ids[t]].item() for t in range(len(cond), len(ids))) / math.log(2)
        assert s.bits == pytest.approx(expected, rel=1e-4)


def test_batching_and_padding_do_not_change_scores(tiny_loaded):
    texts, pols = [e.text for e in REVIEWS] * 2, [e.polarity for e in REVIEWS] * 2
    one = score_texts(tiny_loaded, texts, pols, batch_size=1)
    many = score_texts(tiny_loaded, texts, pols, batch_size=7)
    assert [s.bits for s in many] == pytest.approx([s.bits for s in one], rel=1e-4)
    assert [s.chars for s in many] == [s.chars for s in one]


def test_a_tokenizer_saved_with_padding_and_truncation_on_is_scored_plainly(tiny_loaded):
    """A tokenizer.json written after a padded, truncated call keeps both settings; eval must
    not pad every row to the batch's longest or cut it at that length."""
    tok = copy.deepcopy(tiny_loaded.tokenizer)
    tok.backend_tokenizer.enable_padding(pad_id=tok.pad_token_id, pad_token=tok.pad_token)
    tok.backend_tokenizer.enable_truncation(max_length=4)
    sticky = SimpleNamespace(model=tiny_loaded.model, tokenizer=tok)
    texts, pols = [e.text for e in REVIEWS], [e.polarity for e in REVIEWS]
    assert [s.bits for s in score_texts(sticky, texts, pols)] == pytest.approx(
        [s.bits for s in score_texts(tiny_loaded, texts, pols)], rel=1e-5
    )
    assert tok.backend_tokenizer.padding is not None  # the shared tokenizer is left as it was


def test_truncation_scores_only_the_kept_tokens(uniform_loaded):
    ex = REVIEWS[2]
    tok = uniform_loaded.tokenizer
    enc = tok.backend_tokenizer.encode(f"{ex.polarity} {ex.text}", add_special_tokens=False)
    n_cond = len(tok.encode(ex.polarity, add_special_tokens=False))
    (s,) = score_texts(uniform_loaded, [ex.text], [ex.polarity], max_seq_length=n_cond + 3)
    assert s.truncated and s.tokens == 3  # three review tokens, no EOS
    assert s.chars == enc.offsets[n_cond + 2][1] - len(f"{ex.polarity} ")  # what they cover, no end
    assert 0 < s.chars < len(ex.text)
    assert s.bits == pytest.approx(3 * math.log2(uniform_loaded.model.config.vocab_size), rel=1e-5)
    assert bits_per_char(uniform_loaded, [ex], max_seq_length=n_cond + 3).truncated == 1


def test_the_model_window_caps_the_length(tiny_loaded):
    window = tiny_loaded.model.config.n_positions
    (s,) = score_texts(tiny_loaded, ["가 " * window], ["긍정"], max_seq_length=10_000)
    assert s.truncated and s.tokens <= window - 1


def test_text_without_polarity_starts_from_the_start_token(uniform_loaded):
    (s,) = score_texts(uniform_loaded, ["너무 재밌다"], [None])
    n = len(uniform_loaded.tokenizer.encode("너무 재밌다", add_special_tokens=False))
    assert s.tokens == n + 1 and s.chars == len("너무 재밌다") + 1


def test_bad_arguments_name_the_field(tiny_loaded):
    with pytest.raises(ValueError, match="batch_size"):
        score_texts(tiny_loaded, ["가"], ["긍정"], batch_size=0)
    with pytest.raises(ValueError, match="max_seq_length"):
        score_texts(tiny_loaded, ["가"], ["긍정"], max_seq_length=1)
    with pytest.raises(ValueError, match="polarity"):
        score_texts(tiny_loaded, ["가"], ["중립"])
    with pytest.raises(ValueError, match="metrics"):
        evaluate(tiny_loaded, REVIEWS, metrics=["perplexity"])


# -- polarity accuracy: a toy world where the answer is known ---------------------------------------------
@pytest.fixture(scope="module")
def toy_loaded(tmp_path_factory):
    """A 1-layer GPT-2 trained until 긍정 is always followed by "좋아요 최고" and 부정 by "별로 최악"."""
    from kolyric.engine.loading import load_model
    from kolyric.training.scratch import ModelShape, new_model, train_tokenizer

    texts = ["긍정 좋아요 최고", "부정 별로 최악"]
    tokenizer = train_tokenizer(texts * 10, vocab_size=80, min_frequency=1)
    model = new_model(tokenizer, ModelShape(n_layer=1, n_embd=32, n_head=2, n_positions=16), seed=3)
    enc = tokenizer(
        [t + tokenizer.eos_token for t in texts], return_tensors="pt", padding=True, add_special_tokens=False
    )
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    torch.manual_seed(3)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-2)
    model.train()
    for _ in range(80):
        model(**enc, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    out = tmp_path_factory.mktemp("toy") / "toy"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return load_model(str(out), device="cpu")


def test_toy_classifier_is_always_right(toy_loaded):
    examples = [Example("좋아요 최고", "긍정"), Example("별로 최악", "부정")] * 3
    acc = polarity_accuracy(toy_loaded, examples, batch_size=4)
    assert acc.accuracy == 1.0 and acc.correct == 6 and acc.ties == 0
    assert acc.by_polarity == {"긍정": (3, 3), "부정": (3, 3)}
    # every label swapped: always wrong, which only a classifier that works can manage
    swapped = [Example(e.text, "부정" if e.polarity == "긍정" else "긍정") for e in examples]
    assert polarity_accuracy(toy_loaded, swapped).accuracy == 0.0
    # and the model has learned the texts: nearly free under their own prefix
    assert bits_per_char(toy_loaded, examples).bits_per_char < 0.1
    assert bits_per_char(toy_loaded, swapped).bits_per_char > 1.0


def test_reusing_the_true_pass_gives_the_same_accuracy(tiny_loaded):
    examples = REVIEWS + [Example("제목 없는 가사", None)]  # no polarity: skipped
    true = score_texts(tiny_loaded, [e.text for e in examples], [e.polarity for e in examples])
    direct = polarity_accuracy(tiny_loaded, examples)
    reused = polarity_accuracy(tiny_loaded, examples, true_scores=true)
    assert direct == reused and direct.examples == len(REVIEWS)
    with pytest.raises(ValueError, match="true_scores"):
        polarity_accuracy(tiny_loaded, examples, true_scores=true[:2])


# -- distinct samples and the report ----------------------------------------------------------------------
def test_samples_are_reproducible_and_cover_both_polarities(tiny_loaded):
    first = sample_continuations(tiny_loaded, ("사랑해",), seed=2**32 - 1)
    again = sample_continuations(tiny_loaded, ("사랑해",), seed=2**32 - 1)
    assert first == again
    assert [(s.prompt, s.polarity, s.seed) for s in first] == [("사랑해", "긍정", 2**32 - 1), ("사랑해", "부정", 0)]
    assert all(s.text for s in first)


def test_report_to_dict_is_json_with_the_headline_figures(tiny_loaded):
    seen = []
    report = evaluate(
        tiny_loaded,
        REVIEWS,
        prompts=("사랑해",),
        corpus="toy",
        seed=5,
        progress=lambda stage, done, total: seen.append((stage, done, total)),
    )
    data = json.loads(json.dumps(report.to_dict(), ensure_ascii=False))
    assert data["bits_per_char"] == pytest.approx(report.bits.bits_per_char, rel=1e-5) and data["bits_per_char"] > 0
    assert 0.0 <= data["polarity_accuracy"] <= 1.0
    assert 0.0 <= data["distinct_1"] <= 1.0 and 0.0 <= data["distinct_2"] <= 1.0
    assert data["details"]["bits"]["eos_counted"] is True
    assert data["details"]["distinct"]["unit"] == "word" and len(data["details"]["distinct"]["samples"]) == 2
    assert data["options"] == {"batch_size": 16, "max_seq_length": 128, "seed": 5}
    assert {s for s, _, _ in seen} == {"bits", "accuracy", "distinct"}
    assert ("bits", len(REVIEWS), len(REVIEWS)) in seen
    assert "bits/char" in report.format() and "polarity accuracy" in report.format()
    only = evaluate(tiny_loaded, REVIEWS, metrics=["bpc"]).to_dict()
    assert only["polarity_accuracy"] is None and only["distinct_1"] is None
