"""A temperature inside the valid range (0, 1e6] that is too small to divide the scores by in
float32 acts as greedy (the limit of sampling as the temperature goes to 0), instead of turning
every probability into NaN and the candidate into nothing."""

from __future__ import annotations

import math

import pytest

from kolyric.engine.results import GenerationRequest
from kolyric.engine.settings import preset
from kolyric.engine.stream import Generator


@pytest.fixture(scope="module")
def gen(tiny_model_dir):
    from kolyric.engine.loading import load_model

    return Generator(load_model(str(tiny_model_dir), device="cpu"))


@pytest.mark.parametrize("name", ["top-k-50", "top-p-0.92", "combined"])
@pytest.mark.parametrize("temperature", [1e-300, 5e-324, 1e-40])
def test_an_underflowing_temperature_samples_the_greedy_token(gen, name, temperature):
    settings = preset(name, temperature=temperature, seed=5, max_length=12, min_length=12, n=2)
    result = gen.generate(GenerationRequest("영화", None, settings))
    greedy = gen.generate(
        GenerationRequest("영화", None, preset(name, strategy="greedy", n=1, max_length=12, min_length=12))
    )
    for cand in result.candidates:
        assert len(cand.token_ids) == 12 and cand.text, cand
        assert cand.token_ids == greedy.candidates[0].token_ids
        assert all(math.isfinite(t.prob) for t in cand.tokens)


def test_a_small_temperature_that_divides_still_samples(gen):
    """1e-30 divides every score without overflow: the ordinary sampling path runs (one-hot in
    effect), and still gives the greedy text."""
    from kolyric.engine import sampling

    settings = preset("top-k-50", temperature=1e-30, seed=1, max_length=8, min_length=8)
    import torch

    assert not sampling.acts_greedy(settings, torch.tensor([[3.0, -2.0]]))
    assert sampling.acts_greedy(settings.replace(temperature=1e-300), torch.tensor([[3.0, -2.0]]))
    result = gen.generate(GenerationRequest("영화", None, settings))
    greedy = gen.generate(GenerationRequest("영화", None, preset("greedy", max_length=8, min_length=8)))
    assert result.candidates[0].token_ids == greedy.candidates[0].token_ids
