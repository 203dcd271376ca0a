"""kolyric-mini, the model shipped inside the package: it loads offline, streams Korean, follows
the polarity prefix, and fits the size budget."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from kolyric.engine.loading import MINI_PATH, load_model
from kolyric.korean.hangul import count_syllables

from ..conftest import NSMC_DIR, ROOT


@pytest.fixture(scope="module")
def mini():
    return load_model("mini", device="cpu")


def test_shipped_as_a_standard_model_directory_within_budget():
    names = {p.name for p in MINI_PATH.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    size = sum(p.stat().st_size for p in MINI_PATH.iterdir())
    assert size <= 30 * 2**20
    card = (MINI_PATH / "README.md").read_text(encoding="utf-8")
    assert "kolyric train --from-scratch" in card and "CC0" in card and "bits per character" in card


def test_loads_as_mini_and_with_plain_transformers(mini):
    from transformers import AutoModelForCausalLM

    assert mini.kind == "mini" and "kolyric-mini" in mini.description
    assert mini.tokenizer.eos_token == "</s>" and mini.tokenizer.pad_token == "<pad>"
    plain = AutoModelForCausalLM.from_pretrained(MINI_PATH)
    assert plain.config.vocab_size == mini.model.config.vocab_size


def test_streams_korean_for_both_polarities(mini):
    from kolyric.engine.results import GenerationRequest, TokenEvent
    from kolyric.engine.settings import preset
    from kolyric.engine.stream import Generator

    gen = Generator(mini)
    for polarity in ("긍정", "부정"):
        texts: dict[int, str] = {}
        for ev in gen.stream(GenerationRequest("이 영화", polarity, preset("combined", seed=7, n=4))):
            if isinstance(ev, TokenEvent):
                texts[ev.candidate] = texts.get(ev.candidate, "") + ev.text
        assert len(texts) == 4
        assert all(count_syllables(text) >= 2 for text in texts.values()), texts


REVIEW_WORDS = ("영화", "평점", "ㅋㅋ", "배우", "연기")


def test_writes_verse_in_lines_without_a_polarity(mini):
    """With no polarity the shipped model writes lines (its own line breaks), not reviews."""
    from kolyric.engine.results import GenerationRequest
    from kolyric.engine.settings import preset
    from kolyric.engine.stream import Generator

    gen = Generator(mini)
    texts = [
        c.text
        for prompt in ("봄이 오면", "그대 없는 밤")
        for c in gen.generate(GenerationRequest(prompt, None, preset("combined", seed=11, n=8))).candidates
    ]
    with_lines = [t for t in texts if "\n" in t.strip()]
    assert len(with_lines) >= len(texts) // 2, texts
    assert sum(any(w in t for w in REVIEW_WORDS) for t in texts) <= 1, texts
    # A polarity still brings the tutorial's register back.
    reviews = [
        c.text for c in gen.generate(GenerationRequest("이 영화", "긍정", preset("combined", seed=11, n=8))).candidates
    ]
    assert sum("\n" in t.strip() for t in reviews) <= 1, reviews


def test_follows_the_polarity_prefix_on_unseen_reviews(mini):
    """The model as a generative classifier on NSMC test reviews it never trained on."""
    from kolyric.evaluate import polarity_accuracy
    from kolyric.training.corpora import read_nsmc

    examples, _ = read_nsmc(NSMC_DIR.parent, "test", limit=300, download=False)
    result = polarity_accuracy(mini, examples)
    assert result.accuracy >= 0.7


def test_the_wheel_carries_the_model(tmp_path):
    """A fresh install gets kolyric-mini: the built wheel holds every file of it."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("kolyric-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in MINI_PATH.iterdir():
        assert f"kolyric/models/kolyric-mini/{path.name}" in names
    assert any(n.startswith("kolyric/themes/") and n.endswith(".toml") for n in names)
    assert json.loads((MINI_PATH / "config.json").read_text())["model_type"] == "gpt2"
