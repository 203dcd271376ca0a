"""The samplers in real generation on a tiny trained model: each runs, composes with the others
and with the lyric constraints, reproduces with its seed; DRY and phrase bias change the text."""

from __future__ import annotations

import pytest

from kolyric.engine.lyric.spec import LyricConstraints
from kolyric.engine.results import GenerationRequest
from kolyric.engine.settings import PRESETS, preset
from kolyric.engine.stream import Generator
from kolyric.korean.hangul import count_syllables


@pytest.fixture(scope="module")
def gen(trained_tiny_dir):
    from kolyric.engine.loading import load_model

    return Generator(load_model(str(trained_tiny_dir), device="cpu"))


EVERYTHING = {
    "min_p": 0.02,
    "typical_p": 0.95,
    "epsilon": 1e-4,
    "eta": 1e-4,
    "top_n_sigma": 3.0,
    "xtc_probability": 0.5,
    "xtc_threshold": 0.1,
    "dry_multiplier": 0.8,
    "dynatemp_range": 0.3,
    "mirostat_tau": 6.0,
    "bias": {"영화": -1.0},
}


def run(gen, name="combined", prompt="영화", constraints=None, **settings):
    request = GenerationRequest(prompt, "긍정", preset(name, **settings), constraints=constraints)
    return gen.generate(request)


@pytest.mark.parametrize("name", [n for n in PRESETS if n.startswith(("lyrics", "mirostat"))])
def test_lyric_presets_generate_and_reproduce(gen, name):
    a = run(gen, name, seed=4, n=2, max_length=24)
    b = run(gen, name, seed=4, n=2, max_length=24)
    assert [c.token_ids for c in a.candidates] == [c.token_ids for c in b.candidates]
    assert all(c.token_ids for c in a.candidates)


def test_every_sampler_at_once_reproduces(gen):
    a = run(gen, seed=8, n=3, max_length=30, **EVERYTHING)
    b = run(gen, seed=8, n=3, max_length=30, **EVERYTHING)
    assert [c.text for c in a.candidates] == [c.text for c in b.candidates]
    assert len({c.text for c in a.candidates}) > 1


def test_samplers_compose_with_the_lyric_constraints(gen):
    constraints = LyricConstraints.from_dict({"syllables": 6, "lines": 2})
    result = run(gen, seed=5, n=2, prompt="", constraints=constraints, max_length=60, **EVERYTHING)
    for cand in result.candidates:
        report = cand.constraint_report
        # counts are exact on every line; a barely trained model often offers no word break to end
        # a line on, which the report names (the one failure accepted)
        assert report.satisfied or all("ends mid-word" in r for r in report.reasons), report
        assert [count_syllables(line) for line in cand.text.split("\n")] == [6, 6], cand.text


def test_dry_cuts_repetition_in_greedy_text(gen):
    def repeated_4grams(ids):
        grams = [tuple(ids[i : i + 4]) for i in range(len(ids) - 3)]
        return len(grams) - len(set(grams))

    plain = run(gen, "greedy", max_length=60, min_length=60).candidates[0].token_ids
    dry = run(gen, "greedy", max_length=60, min_length=60, dry_multiplier=2.0).candidates[0].token_ids
    assert repeated_4grams(plain) > 0  # the tiny model loops when greedy
    assert repeated_4grams(dry) < repeated_4grams(plain)


def test_phrase_bias_removes_and_brings_a_word(gen):
    base = run(gen, seed=2, n=6, max_length=30)
    text = " ".join(c.text for c in base.candidates)
    word = max(set(text.split()), key=text.count)  # the commonest word the model writes here
    banned = run(gen, seed=2, n=6, max_length=30, bias={word: -100.0})
    assert not any(word in c.text for c in banned.candidates)
    favoured = run(gen, seed=2, n=6, max_length=30, bias={word: 3.0})
    assert sum(c.text.count(word) for c in favoured.candidates) > sum(c.text.count(word) for c in base.candidates)


def test_beam_search_feels_dry_and_phrase_bias(gen):
    plain = run(gen, "beam-3", max_length=40, min_length=40, n=1).candidates[0]
    words = plain.text.split()
    word = max(set(words), key=words.count)
    biased = run(gen, "beam-3", max_length=40, min_length=40, n=1, bias={word: -100.0}).candidates[0]
    assert word in plain.text and word not in biased.text
    dry = run(gen, "beam-3", max_length=40, min_length=40, n=1, dry_multiplier=3.0, dry_breakers=[":"]).candidates[0]
    assert dry.token_ids != plain.token_ids


def test_a_hostile_bias_list_costs_no_scan_per_prefix(gen):
    """128 phrases of 64 repeated syllables match a run of that syllable at every prefix length:
    each prefix is a bisection of the sorted token texts, so the run stays quick."""
    import time

    bias = {"가" * (60 - i % 8) + "나" * (i % 8) + str(i): -1.0 for i in range(128)}
    started = time.perf_counter()
    result = run(gen, prompt="가가가가가가", seed=1, max_length=12, bias=bias)
    assert result.candidates[0].token_ids and time.perf_counter() - started < 20


def test_candidate_i_is_the_same_alone_or_in_a_batch_with_xtc_and_mirostat(gen):
    extra = {"xtc_probability": 0.7, "xtc_threshold": 0.05, "mirostat_tau": 4.0, "dry_multiplier": 0.8}
    batch = run(gen, seed=30, n=3, max_length=24, **extra)
    alone = run(gen, seed=31, n=1, max_length=24, **extra)
    assert batch.candidates[1].token_ids == alone.candidates[0].token_ids
