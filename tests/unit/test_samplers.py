"""The samplers beyond top-k/top-p: scores before and after on crafted distributions, by hand,
and, for those transformers defines, against transformers' own warper on many random rows."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from transformers.generation.logits_process import (
    EpsilonLogitsWarper,
    EtaLogitsWarper,
    MinPLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

from kolyric.engine import penalties, samplers
from kolyric.engine import processors as lean

NO_IDS = torch.zeros(1, 1, dtype=torch.long)


def logits(*probs: float) -> np.ndarray:
    return np.log(np.array([probs], dtype=np.float32))


def kept(values: np.ndarray) -> list[int]:
    return np.flatnonzero(np.isfinite(values[0])).tolist()


# -- against transformers -----------------------------------------------------------------------
def crafted_rows(seed: int, rows: int, vocab: int) -> torch.Tensor:
    """Distinct scores (no ties), some rows peaked and some flat, a few -inf (a constraint)."""
    gen = torch.Generator().manual_seed(seed)
    scale = torch.rand(rows, 1, generator=gen) * 6 + 0.3
    scores = torch.randn(rows, vocab, generator=gen) * scale
    scores[torch.rand(rows, vocab, generator=gen) < 0.05] = -float("inf")
    return scores


PAIRS = [
    (lambda: samplers.MinP(0.05), lambda: MinPLogitsWarper(0.05)),
    (lambda: samplers.MinP(0.3), lambda: MinPLogitsWarper(0.3)),
    (lambda: samplers.TypicalP(0.9), lambda: TypicalLogitsWarper(0.9)),
    (lambda: samplers.TypicalP(0.5), lambda: TypicalLogitsWarper(0.5)),
    (lambda: samplers.EpsilonCutoff(3e-3), lambda: EpsilonLogitsWarper(3e-3)),
    (lambda: samplers.EpsilonCutoff(0.05), lambda: EpsilonLogitsWarper(0.05)),
    (lambda: samplers.EtaCutoff(3e-3), lambda: EtaLogitsWarper(3e-3)),
    (lambda: samplers.EtaCutoff(0.2), lambda: EtaLogitsWarper(0.2)),
    (lambda: samplers.TopP(0.9), lambda: TopPLogitsWarper(0.9)),
]


@pytest.mark.parametrize("make_ours, make_theirs", PAIRS, ids=lambda f: type(f()).__name__ + str(vars(f())))
@pytest.mark.parametrize("vocab", [40, 600, 8000])
def test_matches_transformers_on_crafted_rows(make_ours, make_theirs, vocab):
    disagreements = 0
    for seed in range(25):
        scores = crafted_rows(seed * 7 + vocab, 3, vocab)
        theirs = make_theirs()(NO_IDS, scores.clone())
        ours = make_ours()(NO_IDS, scores.clone())
        same_set = torch.equal(torch.isfinite(ours), torch.isfinite(theirs))
        if not same_set:  # a float32 rounding at the boundary can move one token; never more
            disagreements += 1
            assert (torch.isfinite(ours) != torch.isfinite(theirs)).sum() <= 1
        finite = torch.isfinite(ours) & torch.isfinite(theirs)
        assert torch.equal(ours[finite], theirs[finite])  # kept tokens keep their scores
    assert disagreements <= 1


def test_pool_and_whole_row_agree():
    """On the pool a top-k left, a warper keeps exactly what it keeps on the whole row."""
    scores = crafted_rows(3, 2, 5000)
    chain = lean.ProcessorChain([lean.TopK(40, 0.8), samplers.MinP(0.1), samplers.TypicalP(0.9)])
    values, ids = chain.pool(NO_IDS, scores.clone())
    assert ids is not None and values.shape == (2, 40)
    full = chain(NO_IDS, scores.clone())
    spread = torch.full_like(scores, -float("inf")).scatter_(-1, ids, values)
    assert torch.equal(spread, full)


def test_whole_row_warpers_hand_back_a_pool_once_it_is_small():
    scores = crafted_rows(4, 1, 20000)
    values, ids = lean.ProcessorChain([samplers.MinP(0.05), samplers.EpsilonCutoff(1e-3)]).pool(NO_IDS, scores)
    assert ids is not None and values.shape[-1] < 5000
    assert torch.isfinite(values).all() or ids.shape == values.shape


# -- by hand --------------------------------------------------------------------------------------
def test_min_p_by_hand():
    # p = .5 .3 .15 .05; min_p .2 -> floor .1: only the .05 goes
    assert kept(samplers.MinP(0.2).warp(logits(0.5, 0.3, 0.15, 0.05), None, NO_IDS)) == [0, 1, 2]
    assert kept(samplers.MinP(1.0).warp(logits(0.5, 0.3, 0.15, 0.05), None, NO_IDS)) == [0]


def test_epsilon_and_eta_by_hand():
    assert kept(samplers.EpsilonCutoff(0.001).warp(logits(0.6, 0.3, 0.0999, 0.0001), None, NO_IDS)) == [0, 1, 2]
    # entropy of (.25 x4) = ln 4: eta cutoff = min(.2, sqrt(.2) * e^-ln4 = .1118) -> every .25 stays
    assert kept(samplers.EtaCutoff(0.2).warp(logits(0.25, 0.25, 0.25, 0.25), None, NO_IDS)) == [0, 1, 2, 3]
    # entropy of (.9 .09 .01) = .3509: cutoff = min(.2, .4472 * .7040 = .3148) = .2 -> only .9 stays
    assert kept(samplers.EtaCutoff(0.2).warp(logits(0.9, 0.09, 0.01), None, NO_IDS)) == [0]


def test_typical_by_hand():
    # p = .4 .3 .2 .1: H = 1.2799 nats; |-ln p - H| = .364 .076 .330 1.023 -> order 1, 2, 0, 3;
    # mass .5: .3 (<.5) then .2 (cumulative .5, not < .5): tokens 1 and 2 stay
    assert kept(samplers.TypicalP(0.5).warp(logits(0.4, 0.3, 0.2, 0.1), None, NO_IDS)) == [1, 2]


def test_top_n_sigma_by_hand():
    # scores 10 9 8 0 0 0: mean 4.5, population sd 4.5369; n=1 -> floor 5.463: 10 9 8 stay
    scores = np.array([[10, 9, 8, 0, 0, 0]], dtype=np.float32)
    assert kept(samplers.TopNSigma(1.0).warp(scores.copy(), None, NO_IDS)) == [0, 1, 2]
    assert kept(samplers.TopNSigma(0.3).warp(scores.copy(), None, NO_IDS)) == [0, 1]  # floor 8.639
    # temperature-invariant: the same tokens at scores / 2
    assert kept(samplers.TopNSigma(0.3).warp(scores / 2, None, NO_IDS)) == [0, 1]
    # -inf entries (a constraint) are not part of the deviation
    masked = np.array([[10, 9, 8, 0, 0, 0, -np.inf]], dtype=np.float32)
    assert kept(samplers.TopNSigma(1.0).warp(masked, None, NO_IDS)) == [0, 1, 2]


def test_xtc_by_hand():
    row = logits(0.4, 0.3, 0.2, 0.1)
    # certain to act: .4 .3 .2 are at least .15; all but the least likely (.2) go
    assert kept(samplers.XTC(1.0, 0.15, seed=1).warp(row.copy(), None, NO_IDS)) == [2, 3]
    assert kept(samplers.XTC(1.0, 0.35, seed=1).warp(row.copy(), None, NO_IDS)) == [0, 1, 2, 3]  # one above
    assert kept(samplers.XTC(0.0, 0.15, seed=1).warp(row.copy(), None, NO_IDS)) == [0, 1, 2, 3]  # never acts
    half = samplers.XTC(0.5, 0.15, seed=9)
    acted = sum(kept(half.warp(row.copy(), None, NO_IDS)) == [2, 3] for _ in range(2000))
    assert 900 < acted < 1100  # it acts at its probability
    a, b = samplers.XTC(0.5, 0.15, seed=3), samplers.XTC(0.5, 0.15, seed=3)
    assert [kept(a.warp(row.copy(), None, NO_IDS)) for _ in range(30)] == [
        kept(b.warp(row.copy(), None, NO_IDS)) for _ in range(30)
    ]  # a seed gives the same choices


def test_dynamic_temperature_by_hand():
    flat = np.zeros((1, 4), dtype=np.float32)  # entropy ln 4 of at most ln 4: the hottest end
    warper = samplers.DynamicTemperature(1.0, 0.5)
    out = warper.warp(flat + np.float32(3), None, NO_IDS)
    assert warper.last == [pytest.approx(1.5)] and np.allclose(out, 3 / 1.5)
    peaked = np.array([[20, 0, 0, 0]], dtype=np.float32)  # entropy ~0: the coolest end
    warper.warp(peaked, None, NO_IDS)
    assert warper.last[0] == pytest.approx(0.5, abs=1e-6)
    # half the most entropy with exponent 2: 0.5 + 1.0 * 0.5**2
    p = np.array([0.5, 0.5, 1e-30, 1e-30])
    half = samplers.DynamicTemperature(1.0, 0.5, exponent=2.0)
    half.warp(np.log(p).astype(np.float32)[None, :], None, NO_IDS)
    assert half.last[0] == pytest.approx(0.5 + 0.25, abs=1e-4)


def test_mirostat_v2_by_hand():
    # p = .5 .25 .125 .125: surprises 1 2 3 3 bits; tau 1 -> mu starts at 2: tokens 0 and 1 stay
    m = samplers.MirostatV2(tau=1.0, eta=0.1)
    seq = torch.tensor([[5, 6]])
    assert kept(m.warp(logits(0.5, 0.25, 0.125, 0.125), None, seq)) == [0, 1]
    assert m.mu == [2.0]
    # token 1 was drawn: its surprise in the truncated distribution (1/3) is log2 3 = 1.585 bits
    m.warp(logits(0.5, 0.25, 0.125, 0.125), None, torch.tensor([[5, 6, 1]]))
    assert m.mu[0] == pytest.approx(2.0 - 0.1 * (math.log2(3) - 1.0))
    # on a pool its ids are the tokens: token 12 drawn from a pool (10, 12)
    m2 = samplers.MirostatV2(tau=1.0, eta=1.0)
    m2.warp(logits(0.5, 0.25, 0.125, 0.125), np.array([[10, 12, 14, 16]]), seq)
    m2.warp(logits(0.5, 0.25, 0.125, 0.125), np.array([[10, 12, 14, 16]]), torch.tensor([[5, 6, 12]]))
    assert m2.mu[0] == pytest.approx(2.0 - (math.log2(3) - 1.0))


def test_mirostat_holds_the_target_surprise():
    """Over many draws the observed surprise settles near tau (what mirostat is for)."""
    rng = np.random.default_rng(0)
    base = np.sort(rng.standard_normal(300).astype(np.float32) * 2.5)[::-1].copy()
    m = samplers.MirostatV2(tau=3.0, eta=0.2)
    seq = [0]
    surprises = []
    for _ in range(600):
        row = m.warp(base[None, :].copy(), None, torch.tensor([seq]))
        p = samplers.softmax(row)[0]
        token = int(rng.choice(len(p), p=p / p.sum()))
        surprises.append(-math.log2(p[token]))
        seq.append(token)
    assert abs(np.mean(surprises[200:]) - 3.0) < 0.35


# -- DRY ----------------------------------------------------------------------------------------
def dry_scores(seq, multiplier=0.8, base=1.75, allowed=2, breakers=frozenset(), vocab=10):
    dry = penalties.Dry(multiplier, base, allowed, breakers)
    return dry(torch.tensor([seq]), torch.zeros(1, vocab))[0]


def test_dry_by_hand():
    # 1 2 3 4 1 2 3: the last three tokens repeat positions 0-2, followed there by 4: a repeat of
    # length 3 would grow to 4; penalty 0.8 * 1.75 ** (3 - 2) = 1.4 on token 4 only
    out = dry_scores([1, 2, 3, 4, 1, 2, 3])
    assert out[4] == pytest.approx(-1.4) and (out[[0, 1, 2, 3, 5]] == 0).all()
    # a repeat of 2 with allowed length 2: 0.8 * 1.75 ** 0
    assert dry_scores([2, 3, 4, 2, 3])[4] == pytest.approx(-0.8)
    # a repeat of 1 is allowed
    assert (dry_scores([3, 4, 3]) == 0).all()
    # the longest match per following token counts: 5 follows "2 3" (length 2) and "1 2 3" (3)
    out = dry_scores([2, 3, 5, 1, 2, 3, 5, 1, 2, 3])
    assert out[5] == pytest.approx(-0.8 * 1.75**4) and out[1] == 0  # "2 3 5 1 2 3" repeats: length 6


def test_dry_sequence_breakers():
    # 2 is a breaker: the match cannot extend through it, so "1 2 3" repeats only "3": allowed
    assert (dry_scores([1, 2, 3, 4, 1, 2, 3], breakers=frozenset({2})) == 0).all()
    # the last token a breaker: nothing is penalised; a following breaker is never penalised
    assert (dry_scores([1, 2, 3, 4, 1, 2, 3], breakers=frozenset({3})) == 0).all()
    assert (dry_scores([1, 2, 3, 4, 1, 2, 3], breakers=frozenset({4})) == 0).all()


def test_dry_breakers_are_found_by_text():
    texts = penalties.VocabTexts(["가", "\n", "다\n", ":", "나"])
    assert penalties.breaker_ids(texts, ["\n", ":"]) == {1, 2, 3}


# -- phrase bias --------------------------------------------------------------------------------
TEXTS = ["사", "랑", "사랑", " 사랑해", "해", "고", "랑해", "첫사"]


def bias_row(seq, bias=(("사랑", -2.0),)):
    proc = penalties.PhraseBias(bias, penalties.VocabTexts(list(TEXTS)))
    return proc(torch.tensor([seq]), torch.zeros(1, len(TEXTS)))[0].tolist()


def test_phrase_bias_hits_every_spelling():
    # after "고": only tokens holding the whole phrase
    assert bias_row([5]) == [0, 0, -2, -2, 0, 0, 0, 0]
    # after "사" (or "첫사"): also the tokens that complete it ("랑", "랑해")
    assert bias_row([5, 0]) == [0, -2, -2, -2, 0, 0, -2, 0]
    assert bias_row([7]) == [0, -2, -2, -2, 0, 0, -2, 0]


def test_phrase_bias_longer_phrase_and_several():
    # "사랑해": after "사랑" the token "해" completes it, after "사" the token "랑해" does
    bias = (("사랑해", 1.5), ("고", -1.0))
    assert bias_row([2], bias) == [0, 0, 0, 1.5, 1.5, -1.0, 0, 0]
    assert bias_row([0], bias) == [0, 0, 0, 1.5, 0, -1.0, 1.5, 0]


def test_top_n_sigma_ahead_of_top_k_is_a_cut_of_its_pool():
    """The chain's top-nσ + top-k (+ temperature, top-p) keeps exactly what top-nσ on the whole
    row followed by transformers' temperature, top-k and top-p keeps."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper

    from kolyric.engine import sampling
    from kolyric.engine.settings import preset

    for seed in range(20):
        scores = crafted_rows(seed, 1, 6000) * (1 + seed % 3)
        for n, k, p in ((1.0, 50, 1.0), (2.5, 40, 0.9), (0.5, 5, 0.8)):
            settings = preset(
                "combined",
                repetition_penalty=1.0,
                no_repeat_ngram_size=0,
                top_n_sigma=n,
                top_k=k,
                top_p=p,
                temperature=0.7,
            )
            chain = sampling.processor_chain(settings, 1, None, None)
            values, ids = chain.pool(NO_IDS, scores.clone())
            ours = torch.full_like(scores, -float("inf")).scatter_(-1, ids, values) if ids is not None else values
            theirs = samplers.TopNSigma(n)(NO_IDS, scores.clone())
            for warper in (TemperatureLogitsWarper(0.7), TopKLogitsWarper(k), TopPLogitsWarper(p)):
                theirs = warper(NO_IDS, theirs)
            assert torch.equal(torch.isfinite(ours), torch.isfinite(theirs)), (seed, n, k, p)
            assert torch.equal(ours[torch.isfinite(ours)], theirs[torch.isfinite(theirs)])


def test_temperature_on_a_pool_is_transformers_division():
    from transformers.generation.logits_process import TemperatureLogitsWarper

    scores = crafted_rows(1, 2, 300)
    assert torch.equal(
        samplers.Temperature(0.7)(NO_IDS, scores.clone()), TemperatureLogitsWarper(0.7)(NO_IDS, scores.clone())
    )


def test_min_p_of_one_row_in_python_floats_cuts_what_numpy_cuts():
    """A single pool row is cut in Python floats, more rows in NumPy: the same survivors, the
    best token kept (the first of equal bests), -inf entries and ties included."""
    rng = np.random.default_rng(5)
    for trial in range(300):
        width = int(rng.choice([1, 3, 50, 64]))
        row = (rng.normal(0, float(rng.choice([0.5, 2.0, 5.0])), width)).astype(np.float32)
        if trial % 5 == 0:
            row[rng.integers(0, width, size=max(1, width // 4))] = -np.inf
        if trial % 9 == 0:
            row[: width // 2] = np.round(row[: width // 2])  # ties, at the best too
        warper = samplers.MinP(float(rng.choice([0.01, 0.05, 0.2, 0.5, 1.0])))
        one = warper.warp(row[None, :].copy(), None, NO_IDS)
        two = warper.warp(np.stack([row, row]), None, NO_IDS)
        assert np.array_equal(one[0], two[0]) and np.array_equal(one[0], two[1])
