"""Ranking the step's bound alone (``ProcessorChain.lowered_top``): a chain whose processors only
lower scores (repetition penalty, no-repeat n-grams, DRY, minimum length) finds the top-k from
the raw logits' top entries without touching the row, and gives what the whole row gives, score
for score, step after step; where the top-k may lie outside the bound it runs on a copy of the
row, and the processors' state moves one token a step either way."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from kolyric.engine import incremental, penalties, samplers
from kolyric.engine import processors as lean
from kolyric.engine.chain import ProcessorChain

VOCAB = 6000
EOS = 3
PROMPT = 8
BOUND = 64


def _base() -> list:
    return [
        incremental.RepetitionPenalty(1.5),
        incremental.NoRepeatNGram(2),
        penalties.Dry(0.8, 1.75, 2, frozenset({5})),
        incremental.MinNewTokens(PROMPT, 12, EOS),
    ]


def _chain(warpers: str) -> ProcessorChain:
    chain = ProcessorChain(_base())
    chain.warpers_from = len(chain)
    if warpers == "top-k":
        chain.append(lean.TopK(50, 0.8))
    elif warpers == "top-k top-p min-p":
        chain.append(lean.TopKThenTopP(50, 0.9, 0.8))
        chain.append(samplers.MinP(0.05))
    return chain


def _logits(rng: np.random.Generator, rows: int, seqs: np.ndarray, step: int) -> torch.Tensor:
    """Random rows; every third step the tokens already written lead (the penalties then push
    the top-k out of the bound); every fifth, scores on a coarse grid (ties)."""
    logits = rng.normal(0.0, 2.0, (rows, VOCAB)).astype(np.float32)
    if step % 3 == 2:
        for r in range(rows):
            logits[r, np.unique(seqs[r])] += 9.0
    if step % 5 == 4:
        logits = np.round(logits * 2) / 2
    logits[:, EOS] += 4.0  # the end token near the top while the minimum length holds it back
    return torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))


def _bound(logits: torch.Tensor, size: int) -> tuple[np.ndarray, np.ndarray]:
    values, ids = lean.top_k(logits, size)
    return values.numpy().copy(), ids.numpy().copy()


def _as_arrays(pooled) -> tuple[np.ndarray, np.ndarray | None]:
    values, ids = pooled
    values = values if isinstance(values, np.ndarray) else values.numpy()
    ids = ids if ids is None or isinstance(ids, np.ndarray) else ids.numpy()
    return values, ids


@pytest.fixture
def ranked_calls(monkeypatch):
    """How often ``lowered_top`` found the top-k within the bound, and how often it could not."""
    calls = {"found": 0, "outside": 0}
    original = ProcessorChain.lowered_top

    def counted(self, *args, **kwargs):
        found = original(self, *args, **kwargs)
        calls["found" if found is not None else "outside"] += 1
        return found

    monkeypatch.setattr(ProcessorChain, "lowered_top", counted)
    return calls


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("warpers", ["top-k", "top-k top-p min-p"])
def test_sampling_pool_from_the_bound_is_the_whole_rows_pool(rows, warpers, ranked_calls):
    rng = np.random.default_rng(rows * 7 + len(warpers))
    whole, ranked = _chain(warpers), _chain(warpers)
    seqs = rng.integers(10, 120, (rows, PROMPT)).astype(np.int64)
    for step in range(60):
        tensor = torch.from_numpy(seqs)
        logits = _logits(rng, rows, seqs, step)
        for chain, bound in ((whole, None), (ranked, _bound(logits, BOUND))):
            chain.cache.bound = bound
            chain.cache.given = (tensor, seqs.copy(), step > 0)
        assert ranked.leaves_scores() and not whole.leaves_scores()
        raw = logits.clone()
        expected = _as_arrays(whole.pool(tensor, logits.clone(), arrays=True))
        found = _as_arrays(ranked.pool(tensor, raw, arrays=True))
        assert torch.equal(raw, logits), "the ranked chain changed the row it was given"
        np.testing.assert_array_equal(found[0], expected[0])
        if expected[1] is None:
            assert found[1] is None
        else:
            np.testing.assert_array_equal(found[1], expected[1])
        # the next token: each row's best surviving candidate (deterministic, so both follow it)
        values, ids = expected
        best = values.argmax(axis=-1)
        picks = best if ids is None else ids[np.arange(rows), best]
        seqs = np.concatenate([seqs, picks[:, None].astype(np.int64)], axis=1)
    assert ranked_calls["found"] > 5 and ranked_calls["outside"] > 5, ranked_calls


@pytest.mark.parametrize("rows", [1, 2])
def test_greedy_best_from_the_bound_is_the_whole_rows_argmax(rows, ranked_calls):
    rng = np.random.default_rng(11 + rows)
    whole, ranked = ProcessorChain(_base()), ProcessorChain(_base())
    seqs = rng.integers(10, 120, (rows, PROMPT)).astype(np.int64)
    for step in range(60):
        tensor = torch.from_numpy(seqs)
        logits = _logits(rng, rows, seqs, step)
        whole.cache.given = (tensor, seqs.copy(), step > 0)
        ranked.cache.given = (tensor, seqs.copy(), step > 0)
        ranked.cache.bound = _bound(logits, 16)  # small: the written tokens fill it on some steps
        expected = whole(tensor, logits.clone()).argmax(dim=-1).numpy()
        found = ranked.lowered_top(tensor, logits, 1)
        if found is None:  # outside the bound: the whole row after all (the state moves once)
            best = ranked(tensor, logits.clone()).argmax(dim=-1).numpy()
        else:
            best = found[1][:, 0]
        np.testing.assert_array_equal(best, expected)
        seqs = np.concatenate([seqs, expected[:, None].astype(np.int64)], axis=1)
    assert ranked_calls["found"] > 5 and ranked_calls["outside"] > 5, ranked_calls


def test_a_chain_that_may_raise_a_score_does_not_rank_the_bound():
    """Phrase bias may raise a score, and a penalty below 1 does: their chains use the row."""
    texts = penalties.VocabTexts([f"t{i}" for i in range(VOCAB)])
    for first in (penalties.PhraseBias([("t7", -1.0)], texts), incremental.RepetitionPenalty(0.8)):
        chain = ProcessorChain([first, *_base()])
        chain.warpers_from = len(chain)
        chain.append(lean.TopK(50))
        logits = torch.randn(1, VOCAB)
        chain.cache.bound = _bound(logits, BOUND)
        assert not chain.leaves_scores()
        assert chain.lowered_top(torch.tensor([[1, 2, 3]]), logits, 1) is None


@pytest.mark.parametrize("scale", [1e-30, 1.0, 1e4, 3e38])
def test_lowering_a_pool_uses_the_rows_float32_arithmetic(scale):
    """Each processor's ``lower_pool`` changes a candidate's score to exactly what
    ``lower_row`` gives it in the row: tiny and huge values of both signs (a product past the
    float32 range is -inf in both)."""
    rng = np.random.default_rng(5)
    seq = torch.tensor([[9, 4, 9, 4, 9, 7, 1, 2, 9, 4]])
    ids = [[9, 4, 7, 1, 2, EOS, 5, VOCAB - 1]]
    for processor in _base():
        values = np.clip(rng.normal(0, 1, (1, VOCAB)) * scale, -3.4e38, 3.4e38).astype(np.float32)
        row = torch.from_numpy(values)
        pool = values[0, ids[0]][None, :].copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # overflow to -inf, in both
            processor.follow(seq, VOCAB)
            processor.lower_pool(pool, ids)
            lowered = processor.lower_row(row.clone()).numpy()[0, ids[0]]
        np.testing.assert_array_equal(pool[0], lowered)
        changed = not np.array_equal(pool[0], values[0, ids[0]])
        assert changed or (scale > 1e30 and isinstance(processor, penalties.Dry)), type(processor).__name__
