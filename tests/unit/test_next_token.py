"""The loop's next-token distribution without a softmax over the vocabulary (kolyric.engine.next_token):
the alternatives and the chosen token's probability equal torch's softmax, from NumPy's log-sum-exp
or from the step graph's own outputs (onnx_graph.NEXT_OUTPUTS), and a graph without those outputs,
or a row NumPy cannot rank, falls back to the softmax with the same tokens."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from kolyric.engine import decode, onnx_decoder
from kolyric.engine.next_token import NextToken
from kolyric.engine.results import GenerationRequest
from kolyric.engine.settings import preset
from kolyric.engine.stream import Generator

HAS_GRAPH = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx", "onnxscript"))


def _softmax_lists(logits: torch.Tensor, k: int):
    # float64: float32 softmax kernels differ by ~1e-5 relative between CPUs (AVX2 against AVX-512)
    probs = torch.softmax(logits.double(), dim=-1)
    values, ids = torch.topk(probs, k, dim=-1)
    return probs, values.tolist(), ids.tolist()


@pytest.mark.parametrize("k", [1, 5, 20])
def test_alternatives_and_probabilities_equal_the_softmax(k):
    gen = torch.Generator().manual_seed(k)
    logits = torch.randn(3, 51200, generator=gen) * 4
    probs, values, ids = _softmax_lists(logits, k)
    dist = NextToken(logits.clone())
    assert not dist.exact
    ours, our_ids = dist.alternatives(k)
    assert our_ids == ids
    assert np.allclose(ours, values, rtol=1e-5, atol=1e-9)
    dist.keep()
    dist.logits[:, :100] = -float("inf")  # a processor changing the logits in place
    for row in range(3):
        for token in (ids[row][0], 7, 51199):
            assert dist.prob(row, token) == pytest.approx(float(probs[row, token]), rel=1e-5, abs=1e-12)


def test_rows_numpy_cannot_rank_take_the_softmax():
    logits = torch.randn(2, 51200)
    logits[1, 3] = float("nan")
    dist = NextToken(logits.clone())
    _, ids = dist.alternatives(5)
    assert dist.exact and ids[0] == torch.topk(torch.softmax(logits[0], -1), 5).indices.tolist()
    small = NextToken(torch.randn(2, 300))  # below NumPy's width torch's top-k is as fast
    small.alternatives(5)
    assert small.exact


def test_the_graph_s_outputs_stand_in_for_the_row():
    logits = torch.randn(2, 51200) * 3
    top_values, top_ids = torch.topk(logits, 20, dim=-1)
    top = onnx_decoder.NextTop(torch.logsumexp(logits, -1).numpy(), top_values.numpy(), top_ids.numpy(), logits.numpy())
    _, values, ids = _softmax_lists(logits, 5)
    dist = NextToken(logits, top, view=top.last)
    ours, our_ids = dist.alternatives(5)
    assert our_ids == ids and np.allclose(ours, values, rtol=1e-5)
    assert dist.top_ids() == logits.argmax(-1).tolist()
    bad = onnx_decoder.NextTop(np.array([np.nan, 0.0], np.float32), top.values, top.ids, top.last)
    fallback = NextToken(logits, bad, view=top.last)
    assert fallback.alternatives(5)[1] == ids and fallback.top_ids() is None


def _stream(loaded, settings, prompt="영화 정말"):
    result = Generator(loaded).generate(GenerationRequest(prompt, None, settings))
    return [
        (c.token_ids, [t.prob for t in c.tokens], [[(a.token_id, a.prob) for a in t.alternatives] for t in c.tokens])
        for c in result.candidates
    ]


def _same(a, b):
    for (ids_a, probs_a, alts_a), (ids_b, probs_b, alts_b) in zip(a, b, strict=True):
        assert ids_a == ids_b
        assert np.allclose(probs_a, probs_b, rtol=1e-4, atol=1e-7)
        for x, y in zip(alts_a, alts_b, strict=True):
            assert [t for t, _ in x] == [t for t, _ in y]
            assert np.allclose([p for _, p in x], [p for _, p in y], rtol=1e-4, atol=1e-7)


@pytest.mark.skipif(not HAS_GRAPH, reason="needs onnxruntime, onnx and onnxscript (kolyric[int8])")
def test_a_graph_with_and_without_its_next_outputs_gives_the_same_generation(tiny_model_dir, tmp_path, monkeypatch):
    from kolyric.engine import onnx_graph
    from kolyric.engine.loading import load_model
    from kolyric.engine.onnx_model import is_graph_model

    monkeypatch.setenv("KOLYRIC_ONNX_CACHE", str(tmp_path))
    monkeypatch.delenv("KOLYRIC_INT8_BACKEND", raising=False)
    loaded = load_model(str(tiny_model_dir), device="cpu", precision="int8")
    assert is_graph_model(loaded.model), loaded.notices
    assert loaded.model.output_names[-3:] == list(onnx_graph.NEXT_OUTPUTS)
    ids = torch.tensor([[5, 9, 13]])
    out = loaded.model(input_ids=ids)
    last = out.logits[:, -1, :]
    top = out.kolyric_next
    assert np.allclose(top.lse, torch.logsumexp(last, -1).numpy(), rtol=1e-5)
    assert top.ids.tolist() == torch.topk(last, onnx_graph.NEXT_TOP_K, dim=-1).indices.tolist()
    assert np.array_equal(top.values, torch.topk(last, onnx_graph.NEXT_TOP_K, dim=-1).values.numpy())

    settings = [
        preset("greedy", max_length=12, alternatives=20),
        preset("combined", max_length=12, n=2, seed=3, min_p=0.05, dry_multiplier=0.8),
    ]
    with_outputs = [_stream(loaded, s) for s in settings]
    split = onnx_decoder.split_outputs
    monkeypatch.setattr(onnx_decoder, "split_outputs", lambda out, n: (split(out, n)[0], None))
    without = [_stream(loaded, s) for s in settings]  # a graph built before the outputs
    for a, b in zip(with_outputs, without, strict=True):
        _same(a, b)


def test_the_sequences_grow_past_their_first_buffer_as_torch_cat_would(tiny_loaded, monkeypatch):
    """Sampled rows longer than the NumPy buffer first made: the same tokens as the torch path
    (where the processors convert and compare the sequences themselves)."""
    settings = preset("combined", max_length=90, min_length=90, n=2, seed=11, dry_multiplier=0.8)
    grown = _stream(tiny_loaded, settings, prompt="봄")
    init = decode.DecodeRun.__init__

    def torch_path(self, *args):
        init(self, *args)
        self.buffer = None

    monkeypatch.setattr(decode.DecodeRun, "__init__", torch_path)
    _same(grown, _stream(tiny_loaded, settings, prompt="봄"))
    assert all(len(ids) == 90 for ids, _, _ in grown)


class _Raises:
    """A processor that may raise scores (no ``lowers_only``)."""

    def __call__(self, input_ids, scores):
        scores[:, 12345] += 100.0
        return scores


@pytest.mark.parametrize("case", ["penalised", "emptied", "raised"])
def test_a_top_k_within_the_raw_top_entries_equals_one_over_the_row(case):
    """``StepCache.bound``: the raw logits' top 64 bound the processed scores' top-k while every
    processor before it only lowers scores; where they cannot (the k-th falls below the bound,
    or a processor may raise a score) the row is searched as before. The scores equal
    transformers' temperature, top-k and top-p either way."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    from kolyric.engine import incremental
    from kolyric.engine import processors as lean

    gen = torch.Generator().manual_seed(len(case))
    seqs = torch.randint(0, 51200, (2, 40), generator=gen)
    for _ in range(5):
        logits = torch.randn(2, 51200, generator=gen) * 3
        raw_values, raw_ids = torch.topk(logits, 64, dim=-1)
        seqs[:, -30:] = raw_ids[:, :30]  # the penalty lowers most of the top entries
        first = incremental.RepetitionPenalty(1.5) if case != "raised" else _Raises()
        chain = lean.ProcessorChain([first, incremental.NoRepeatNGram(3), lean.TopKThenTopP(50, 0.92, 0.9)])
        chain.warpers_from = 2
        expected = logits.clone()
        for processor in chain[:2]:
            expected = processor(seqs, expected)
        if case == "emptied":
            expected[:, raw_ids[:, 8]] = -float("inf")
        for warper in (TemperatureLogitsWarper(0.9), TopKLogitsWarper(50), TopPLogitsWarper(0.92)):
            expected = warper(seqs, expected)
        for bound in ((raw_values.numpy(), raw_ids.numpy()), None):
            chain = lean.ProcessorChain([type(first)(1.5) if case != "raised" else first, incremental.NoRepeatNGram(3)])
            chain.append(lean.TopKThenTopP(50, 0.92, 0.9))
            chain.warpers_from = 2
            scores = logits.clone()
            if case == "emptied":
                scores[:, raw_ids[:, 8]] = -float("inf")
            chain.cache.bound = bound
            values, ids = chain.pool(seqs, scores, arrays=True)
            spread = torch.full_like(logits, -float("inf"))
            spread.scatter_(-1, torch.as_tensor(ids), torch.as_tensor(values))
            assert torch.equal(spread, expected)
            if case == "raised" and bound is not None:
                assert chain.cache.bound is None  # the raising processor voids the bound


def test_top_within_refuses_what_may_lie_outside():
    from kolyric.engine.chain import top_within

    view = np.array([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]], dtype=np.float32)
    bound = (np.array([[5.0, 4.0, 3.0]], np.float32), np.array([[0, 1, 2]]))
    values, ids = top_within(view, bound, 2)
    assert ids.tolist() == [[0, 1]] and values.tolist() == [[5.0, 4.0]]
    lowered = view.copy()
    lowered[0, 1] = 2.5  # the 2nd best inside (3) no longer beats the bound's smallest raw value (3)
    assert top_within(lowered, bound, 2) is None
    tied = np.array([[4.0, 4.0, 3.0, 2.0, 1.0, 0.0]], dtype=np.float32)
    assert top_within(tied, (np.array([[4.0, 4.0, 1.0]], np.float32), np.array([[1, 0, 4]])), 2)[1].tolist() == [[0, 1]]
    nan = view.copy()
    nan[0, 0] = np.nan
    assert top_within(nan, bound, 1) is None
    assert top_within(view, bound, 4) is None  # more than the bound holds


def test_top_within_one_row_ranks_as_the_rows_way():
    """The single-row path (Python floats) gives the values and ids the NumPy path gives, ties and
    refusals included: each row checked alone and as part of a two-row batch."""
    from kolyric.engine.chain import top_within

    rng = np.random.default_rng(11)
    for trial in range(300):
        width, size = 200, int(rng.integers(2, 65))
        view = rng.integers(-8, 8, size=(1, width)).astype(np.float32)  # small integers: many ties
        if trial % 7 == 0:
            view[0, rng.integers(0, width, size=5)] = -np.inf
        raw = view + rng.integers(0, 3, size=view.shape).astype(np.float32)  # processors only lowered
        ids = np.argsort(-raw[0], kind="stable")[:size][None, :].astype(np.int64)
        bound = (raw[0, ids[0]][None, :], ids)
        k = int(rng.integers(1, size + 1))
        alone = top_within(view, bound, k)
        pair = top_within(
            np.concatenate([view, view]), (np.concatenate([bound[0]] * 2), np.concatenate([bound[1]] * 2)), k
        )
        assert (alone is None) == (pair is None), trial
        if alone is not None:
            assert alone[0].dtype == np.float32 and alone[1].dtype == np.int64
            assert alone[0].tolist() == pair[0][:1].tolist() and alone[1].tolist() == pair[1][:1].tolist(), trial
