"""Tokenizing examples, dynamic padding with masked labels, length-grouped batches, the LR schedule."""

from __future__ import annotations

import pytest
import torch

from kolyric.training.corpora import Example
from kolyric.training.dataset import (
    IGNORE_INDEX,
    DynamicPaddingCollator,
    FixedPaddingCollator,
    LengthGroupedBatchSampler,
    format_example,
    tokenize_examples,
)
from kolyric.training.module import MIN_LR_RATIO, warmup_cosine


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from kolyric.engine.loading import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


def test_polarity_word_comes_first():
    assert format_example(Example("너무 좋다", "긍정")) == "긍정 너무 좋다"
    assert format_example(Example("가사 한 줄")) == "가사 한 줄"


def test_eos_appended_and_long_texts_windowed_not_cut(tokenizer):
    short, long = Example("좋다", "긍정"), Example("정말 " * 40, "부정")
    data = tokenize_examples([short, long], tokenizer, max_seq_length=16)
    ids = tokenizer(format_example(short), add_special_tokens=False)["input_ids"]
    assert data[0].tolist() == ids + [tokenizer.eos_token_id]
    windows = [data[i].tolist() for i in range(1, len(data))]
    assert len(windows) > 1 and all(len(w) <= 16 for w in windows)
    # Only the last window ends the text; the others did not end there.
    assert [w[-1] == tokenizer.eos_token_id for w in windows] == [False] * (len(windows) - 1) + [True]
    assert data.coverage.trained_tokens == data.coverage.corpus_tokens


def test_progress_is_reported(tokenizer):
    seen = []
    tokenize_examples(
        [Example(f"줄 {i}") for i in range(25)],
        tokenizer,
        8,
        chunk_size=10,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(10, 25), (20, 25), (25, 25)]


def test_dynamic_padding_masks_padding_from_the_loss():
    pad = 3
    batch = DynamicPaddingCollator(pad)([torch.tensor([5, 6, 7, 1]), torch.tensor([8, 1])])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 1], [8, 1, pad, pad]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[5, 6, 7, 1], [8, 1, IGNORE_INDEX, IGNORE_INDEX]]


def test_pad_equal_to_eos_still_trains_eos():
    batch = DynamicPaddingCollator(1)([torch.tensor([5, 1]), torch.tensor([5, 6, 1])])
    assert batch["labels"].tolist() == [[5, 1, IGNORE_INDEX], [5, 6, 1]]


def test_tutorial_scheme_pads_to_width_and_trains_on_padding():
    batch = FixedPaddingCollator(1, 5)([torch.tensor([5, 6])])
    assert batch["input_ids"].tolist() == [[5, 6, 1, 1, 1]]
    assert batch["labels"].tolist() == [[5, 6, 1, 1, 1]]


def test_length_grouped_batches_cover_everything_once_with_little_padding():
    lengths = torch.randint(1, 33, (1000,), generator=torch.Generator().manual_seed(0))
    sampler = LengthGroupedBatchSampler(lengths, 32, seed=7, pool_factor=8)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 32
    assert sorted(i for b in batches for i in b) == list(range(1000))
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    assert padded / int(lengths.sum()) < 1.15  # random batches of 32 pad to ~32: ~2x here
    assert list(sampler) == batches  # same epoch, same order
    sampler.set_epoch(1)
    assert list(sampler) != batches
    ordered = list(LengthGroupedBatchSampler(lengths, 100, shuffle=False))
    assert [int(lengths[b].max()) for b in ordered] == sorted((int(lengths[b].max()) for b in ordered), reverse=True)


def test_warmup_then_cosine_to_floor():
    assert warmup_cosine(0, 10, 110) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 110) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 110) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110) == pytest.approx((1 + MIN_LR_RATIO) / 2)
    assert warmup_cosine(110, 10, 110) == pytest.approx(MIN_LR_RATIO)
    assert warmup_cosine(500, 10, 110) == pytest.approx(MIN_LR_RATIO)
    assert warmup_cosine(0, 0, 100) == pytest.approx(1.0)


def test_a_tokenizer_saved_with_padding_still_gives_unpadded_rows(tmp_path):
    """tokenizer.json keeps padding/truncation set by an earlier padded call; batched
    tokenizing must not inherit them (every row would be padded and cut)."""
    from kolyric.engine.loading import load_tokenizer
    from kolyric.training.corpora import Example
    from kolyric.training.dataset import tokenize_examples
    from kolyric.training.scratch import train_tokenizer

    tok = train_tokenizer(["긍정 좋은 영화 최고", "부정 별로 최악의 영화"] * 50, vocab_size=200)
    tok(["긍정 좋다", "부정 정말 너무 별로인 영화였다"], padding=True, truncation=True, max_length=6)
    tok.save_pretrained(tmp_path)
    reloaded = load_tokenizer(str(tmp_path))
    assert reloaded.backend_tokenizer.padding is not None  # the saved state carries it
    examples = [Example("좋다", "긍정"), Example("정말 너무 별로인 최악의 영화였다 진짜로", "부정")]
    data = tokenize_examples(examples, reloaded, max_seq_length=64)
    for example, row in zip(examples, (data[0].tolist(), data[1].tolist())):
        expected = reloaded.encode(f"{example.polarity} {example.text}", add_special_tokens=False)
        assert row == expected + [reloaded.eos_token_id]
