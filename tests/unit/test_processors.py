"""kolyric.engine.processors: each replacement gives exactly the scores of the transformers
processor it replaces, step after step, over random sequences, batch rows, sizes and ties."""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")
from transformers.generation.logits_process import (
    MinNewTokensLengthLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from kolyric.engine import incremental
from kolyric.engine import processors as lean


def random_scores(rng: random.Random, rows: int, vocab: int, ties: bool) -> torch.Tensor:
    """Scores with negatives, zeros and (with ``ties``) many equal values, sometimes -inf."""
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    scores = torch.randn(rows, vocab, generator=gen) * 3
    if ties:
        scores = (scores * 2).round() / 2  # few distinct values: ties everywhere
    scores[torch.rand(rows, vocab, generator=gen) < 0.05] = 0.0
    if rng.random() < 0.2:
        scores[torch.rand(rows, vocab, generator=gen) < 0.3] = -float("inf")
    return scores


def grow(rng: random.Random, rows: int, prompt_len: int, steps: int, alphabet: int, vocab: int):
    """Sequences growing one column a step, from a small alphabet so tokens and n-grams repeat;
    now and then an id past the scores' vocabulary (an embedding table larger than the head)."""
    seqs = torch.tensor([[rng.randrange(alphabet) for _ in range(prompt_len)] for _ in range(rows)])
    for _ in range(steps):
        yield seqs
        column = [[rng.randrange(alphabet) if rng.random() > 0.02 else vocab + rng.randrange(3)] for _ in range(rows)]
        seqs = torch.cat([seqs, torch.tensor(column)], dim=1)


CASES = [(rows, vocab, ties) for rows in (1, 3) for vocab in (37, 5000) for ties in (False, True)]
DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["numpy-path", "torch-path"])
"""float32 CPU scores take the NumPy path, anything else torch's."""


@DTYPES
@pytest.mark.parametrize("penalty", [0.5, 0.9, 1.0, 1.3, 2.0])
@pytest.mark.parametrize("rows, vocab, ties", CASES)
def test_repetition_penalty_matches_transformers(penalty, rows, vocab, ties, dtype):
    rng = random.Random(f"{penalty}{rows}{vocab}{ties}")
    for prompt_len in (1, 4, 17):  # one instance over sequences of different lengths: it starts over
        ours, theirs = incremental.RepetitionPenalty(penalty), RepetitionPenaltyLogitsProcessor(penalty)
        for seqs in grow(rng, rows, prompt_len, 25, alphabet=min(vocab, 30), vocab=vocab):
            scores = random_scores(rng, rows, vocab, ties).to(dtype)
            assert torch.equal(ours(seqs, scores.clone()), theirs(seqs, scores.clone()))


@pytest.mark.parametrize("penalty", [0.7, 1.1, 1.5, 3.0])
@pytest.mark.parametrize("seen", [5, 600, 3000])
def test_repetition_penalty_gives_transformers_scores_on_extreme_values(penalty, seen):
    # many seen tokens at once, and extreme scores among them: infinities, NaN, the largest and
    # smallest floats (a hostile model may give any)
    rng = random.Random(f"{penalty}{seen}")
    vocab = 8000
    extremes = [float("inf"), -float("inf"), float("nan"), 3.4e38, -3.4e38, 1e-45, -1e-45, 0.0, -0.0]
    ours, theirs = incremental.RepetitionPenalty(penalty), RepetitionPenaltyLogitsProcessor(penalty)
    tokens = torch.tensor([rng.sample(range(vocab), seen)])
    for _ in range(3):
        scores = torch.randn(1, vocab, generator=torch.Generator().manual_seed(rng.randrange(2**31))) * 40
        scores[0, tokens[0, : len(extremes)]] = torch.tensor(extremes[: min(seen, len(extremes))])
        mine, reference = ours(tokens, scores.clone()), theirs(tokens, scores.clone())
        assert torch.equal(mine.isnan(), reference.isnan())
        assert torch.equal(mine.nan_to_num(0.0), reference.nan_to_num(0.0))


@DTYPES
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("rows, vocab, ties", CASES)
def test_no_repeat_ngram_matches_transformers(n, rows, vocab, ties, dtype):
    rng = random.Random(f"{n}{rows}{vocab}{ties}")
    ours, theirs = incremental.NoRepeatNGram(n), NoRepeatNGramLogitsProcessor(n)
    for prompt_len in (1, 3, 12):
        for seqs in grow(rng, rows, prompt_len, 40, alphabet=6, vocab=vocab):
            scores = random_scores(rng, rows, vocab, ties).to(dtype)
            assert torch.equal(ours(seqs, scores.clone()), theirs(seqs, scores.clone())), (n, seqs.shape)


def test_incremental_processors_start_over_on_a_different_sequence():
    """Called with something other than the last sequence plus one token (a new prompt, a
    reordered batch), they rebuild from the whole input instead of trusting their state."""
    rng = random.Random(5)
    pairs = [
        (incremental.RepetitionPenalty(1.7), RepetitionPenaltyLogitsProcessor(1.7)),
        (incremental.NoRepeatNGram(2), NoRepeatNGramLogitsProcessor(2)),
    ]
    for _ in range(200):
        rows = rng.choice((1, 2))
        seqs = torch.tensor([[rng.randrange(5) for _ in range(rng.randrange(1, 12))]] * rows)
        if rng.random() < 0.5:
            seqs = seqs.flip(0)
        scores = random_scores(rng, rows, 20, ties=True)
        for ours, theirs in pairs:
            assert torch.equal(ours(seqs, scores.clone()), theirs(seqs, scores.clone()))


@DTYPES
@pytest.mark.parametrize("eos", [0, 7, [3, 9]])
def test_min_new_tokens_matches_transformers(eos, dtype):
    rng = random.Random(str(eos))
    ours, theirs = incremental.MinNewTokens(5, 4, eos), MinNewTokensLengthLogitsProcessor(5, 4, eos)
    for seqs in grow(rng, 2, 5, 8, alphabet=20, vocab=20):
        scores = random_scores(rng, 2, 20, ties=False).to(dtype)
        assert torch.equal(ours(seqs, scores.clone()), theirs(seqs, scores.clone()))


@pytest.mark.parametrize("vocab", [37, 5000, 51200])
@pytest.mark.parametrize("k", [1, 5, 50, 51, 200])
def test_top_k_gives_torch_topk_values(vocab, k):
    rng = random.Random(f"{vocab}{k}")
    for _ in range(30):
        ties = rng.random() < 0.5
        scores = random_scores(rng, rng.choice((1, 3)), vocab, ties)
        if k > vocab:
            continue
        values, indices = lean.top_k(scores, k)
        expected_values, expected_indices = torch.topk(scores, k)
        assert torch.equal(values, expected_values)
        assert torch.equal(scores.gather(1, indices), values)  # the ids hold those values
        assert all(len(set(row)) == k for row in indices.tolist())
        if not ties and not torch.isinf(expected_values).any():
            assert torch.equal(indices, expected_indices)


def test_top_k_falls_back_on_nan_and_flat_rows():
    scores = torch.randn(2, 8192)
    scores[0, 100] = float("nan")
    scores[1] = 0.0
    for k in (1, 5):
        values, indices = lean.top_k(scores, k)
        expected = torch.topk(scores, k)
        torch.testing.assert_close(values, expected.values, rtol=0, atol=0, equal_nan=True)
        assert indices[0, 0].item() == 100


@pytest.mark.parametrize("vocab", [37, 51200])
def test_argmax_is_torch_argmax(vocab):
    rng = random.Random(vocab)
    for _ in range(50):
        scores = random_scores(rng, rng.choice((1, 4)), vocab, ties=rng.random() < 0.5)
        assert torch.equal(lean.argmax(scores), scores.argmax(dim=-1))
    scores = torch.randn(2, vocab)
    scores[1, 3] = float("nan")
    assert torch.equal(lean.argmax(scores), scores.argmax(dim=-1))


@DTYPES
@pytest.mark.parametrize("vocab", [37, 51200])
@pytest.mark.parametrize("k, p", [(1, 0.5), (5, 0.92), (50, 0.92), (50, 0.3), (50, 0.999), (40, 0.0)])
def test_top_k_then_top_p_matches_transformers(vocab, k, p, dtype):
    rng = random.Random(f"{vocab}{k}{p}")
    ours, top_k_only = lean.TopKThenTopP(k, p), lean.TopK(k)
    their_k, their_p = TopKLogitsWarper(k), TopPLogitsWarper(p)
    for _ in range(30):
        rows = rng.choice((1, 3))
        scores = (random_scores(rng, rows, vocab, ties=rng.random() < 0.5) / rng.choice((0.3, 1.0, 4.0))).to(dtype)
        ids = torch.zeros(rows, 1, dtype=torch.long)
        expected = their_p(ids, their_k(ids, scores.clone()))
        assert torch.equal(ours(ids, scores.clone()), expected)
        assert torch.equal(top_k_only(ids, scores.clone()), their_k(ids, scores.clone()))
        for processor, full in ((ours, expected), (top_k_only, their_k(ids, scores.clone()))):
            pooled = processor.pool(ids, scores.clone())
            if pooled is None:  # a tie at the k-th score: the caller uses the full row
                continue
            values, pool_ids = pooled
            assert torch.equal(_spread(full, values, pool_ids), full)
            assert bool((values[:, :-1] >= values[:, 1:]).all() | torch.isinf(values[:, 1:]).all())


@DTYPES
@pytest.mark.parametrize("temperature", [0.9, 0.3, 1.7, 1e-3])
@pytest.mark.parametrize("k, p", [(5, 0.92), (50, 0.92), (50, 1.0)])
def test_temperature_on_the_survivors_matches_transformers(temperature, k, p, dtype):
    """The temperature divides only the top-k survivors: the scores equal transformers'
    temperature, top-k and top-p warpers over the whole row, and so does the pool."""
    rng = random.Random(f"{temperature}{k}{p}")
    ours = lean.TopKThenTopP(k, p, temperature) if p < 1 else lean.TopK(k, temperature)
    warpers = [TemperatureLogitsWarper(temperature), TopKLogitsWarper(k)] + ([TopPLogitsWarper(p)] if p < 1 else [])
    for _ in range(25):
        rows = rng.choice((1, 3))
        scores = (random_scores(rng, rows, 51200, ties=rng.random() < 0.5) * rng.choice((0.3, 1.0, 4.0))).to(dtype)
        collide = rng.random() < 0.3
        if collide:  # the k-th and the next score differ, but not once divided (for T 0.9 and 1.7)
            a = torch.tensor(3.622565269470215, dtype=dtype)
            scores = scores.clamp(max=1.0)
            scores[:, : k - 1] = 50.0
            scores[:, k - 1], scores[:, k] = a, torch.nextafter(a, torch.zeros((), dtype=dtype))
        ids = torch.zeros(rows, 1, dtype=torch.long)
        expected = scores.clone()
        for warper in warpers:
            expected = warper(ids, expected)
        assert torch.equal(ours(ids, scores.clone()), expected)
        pooled = ours.pool(ids, scores.clone())
        if collide and dtype == torch.float32 and temperature in (0.9, 1.7):
            assert pooled is None  # top-k keeps both: the whole row goes to transformers' warpers
        if pooled is not None:
            assert torch.equal(_spread(expected, *pooled), expected)


def _spread(like, values, ids):
    return torch.full_like(like, -float("inf")).scatter_(-1, ids, values)


def test_the_chain_pools_only_behind_a_top_k():
    ids = torch.zeros(1, 3, dtype=torch.long)
    scores = torch.randn(1, 100)
    chain = lean.ProcessorChain([incremental.RepetitionPenalty(1.5), lean.TopK(10)])
    values, pool_ids = chain.pool(ids, scores.clone())
    assert values.shape == (1, 10) and pool_ids.shape == (1, 10)
    plain = lean.ProcessorChain([incremental.RepetitionPenalty(1.5)])
    out, none = plain.pool(ids, scores.clone())
    assert none is None and out.shape == (1, 100)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_processors_on_cuda_match_transformers():
    """On a GPU the same processors run as torch operations (no NumPy): the same scores."""
    rng = random.Random(11)
    pairs = [
        (incremental.RepetitionPenalty(1.5), RepetitionPenaltyLogitsProcessor(1.5)),
        (incremental.NoRepeatNGram(3), NoRepeatNGramLogitsProcessor(3)),
        (incremental.MinNewTokens(4, 20, 2), MinNewTokensLengthLogitsProcessor(4, 20, 2, device="cuda")),
        (lean.TopKThenTopP(50, 0.92), _Chain(TopKLogitsWarper(50), TopPLogitsWarper(0.92))),
    ]
    for seqs in grow(rng, 2, 4, 30, alphabet=8, vocab=51200):
        seqs = seqs.cuda()
        scores = random_scores(rng, 2, 51200, ties=False).to("cuda")
        for ours, theirs in pairs:
            assert torch.equal(ours(seqs, scores.clone()), theirs(seqs, scores.clone()))
        assert torch.equal(lean.argmax(scores), scores.argmax(dim=-1))


class _Chain:
    def __init__(self, *processors):
        self.processors = processors

    def __call__(self, ids, scores):
        for processor in self.processors:
            scores = processor(ids, scores)
        return scores


def test_repetition_penalty_counts_every_token_again_when_the_width_changes():
    ours, theirs = incremental.RepetitionPenalty(1.5), RepetitionPenaltyLogitsProcessor(1.5)
    ids = torch.tensor([[3, 4, 5]])
    for width, token in ((20, 6), (20, 7), (24, 8)):  # a wider output row at the third step
        scores = torch.randn(1, width, generator=torch.Generator().manual_seed(width + token))
        assert torch.equal(ours(ids, scores.clone()), theirs(ids, scores.clone()))
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)


def test_the_chain_shares_the_sequences_between_incremental_processors():
    """Both incremental processors in one chain read one conversion of input_ids, and the same
    scores come out as from transformers' processors in sequence."""
    chain = lean.ProcessorChain([incremental.RepetitionPenalty(1.3), incremental.NoRepeatNGram(2)])
    theirs = [RepetitionPenaltyLogitsProcessor(1.3), NoRepeatNGramLogitsProcessor(2)]
    rng = random.Random(5)
    ids = torch.tensor([[rng.randrange(50) for _ in range(6)] for _ in range(2)])
    for _ in range(20):
        scores = torch.randn(2, 50, generator=torch.Generator().manual_seed(len(ids[0])))
        expected = scores.clone()
        for processor in theirs:
            expected = processor(ids, expected)
        assert torch.equal(chain(ids, scores.clone()), expected)
        assert chain.cache.ids is None and chain.cache.view is None  # emptied once the step is done
        ids = torch.cat([ids, torch.tensor([[rng.randrange(50)], [rng.randrange(50)]])], dim=1)


def test_top_p_of_one_row_in_python_floats_removes_what_numpy_removes():
    """A single row's top-p count runs in Python floats; two rows run in NumPy: the same
    survivors either way, and torch decides near the boundary in both."""
    import numpy as np

    from kolyric.engine import processors as lean

    rng = np.random.default_rng(3)
    compared = 0
    for trial in range(300):
        k = int(rng.choice([2, 7, 50]))
        kept = np.sort(rng.normal(0, float(rng.choice([0.3, 2.0, 6.0])), k).astype(np.float32))[::-1].copy()
        if trial % 7 == 0:
            kept[-2:] = -np.inf
        warper = lean.TopKThenTopP(k, float(rng.choice([0.3, 0.6, 0.9, 0.95, 0.99])))
        one = warper._top_p_numpy(kept[None, :].copy())
        two = warper._top_p_numpy(np.stack([kept, kept]))
        assert (one is None) == (two is None)
        if one is not None:
            assert np.array_equal(one[0], two[0]) and np.array_equal(one[0], two[1])
            compared += int(np.isinf(one[0]).sum() > np.isinf(kept).sum())
    assert compared > 50  # top-p removed tokens in many of them
