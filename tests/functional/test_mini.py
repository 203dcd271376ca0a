"""kolyric-mini, the model shipped inside the package: it loads offline, streams Korean, follows
the polarity prefix, and fits the size budget."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

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
    from kolyric.engine.settings import preset
    from kolyric.engine.stream import GenerationRequest, Generator, TokenEvent

    gen = Generator(mini)
    for polarity in ("긍정", "부정"):
        pieces = [ev.text for ev in gen.stream(GenerationRequest("이 영화", polarity, preset("combined", seed=7)))
                  if isinstance(ev, TokenEvent)]
        text = "".join(pieces)
        assert len([p for p in pieces if p]) > 2
        assert count_syllables(text) >= 3


def test_follows_the_polarity_prefix_on_unseen_reviews(mini):
    """The model as a generative classifier on NSMC test reviews it never trained on."""
    from kolyric.evaluate import polarity_accuracy
    from kolyric.training.corpora import read_nsmc

    examples, _ = read_nsmc(NSMC_DIR.parent, "test", limit=300, download=False)
    result = polarity_accuracy(mini, examples)
    assert result.accuracy >= 0.7


def test_the_wheel_carries_the_model(tmp_path):
    """A fresh install gets kolyric-mini: the built wheel holds every file of it."""
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("kolyric-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in MINI_PATH.iterdir():
        assert f"kolyric/models/kolyric-mini/{path.name}" in names
    assert any(n.startswith("kolyric/themes/") and n.endswith(".toml") for n in names)
    assert json.loads((MINI_PATH / "config.json").read_text())["model_type"] == "gpt2"
