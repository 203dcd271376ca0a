"""Shared fixtures: tiny real models and tokenizers, built once per session and saved to disk.

They go through the same loading code as a hub model: a ``save_pretrained`` directory, a
copy in the hub repo's own layout (``tokenizer.json`` with no special-token roles, like
skt/kogpt2-base-v2), and a checkpoint in the ratsnlp tutorial's layout.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The corpus tests read: a small NSMC sample in Korpora's layout (tests/data/nsmc/ratings_*.txt,
# see tests/data/README.md), so it works as a --corpus-dir and a bare clone needs nothing else.
CORPUS_DIR = ROOT / "tests" / "data"
NSMC_DIR = CORPUS_DIR / "nsmc"
# The full corpora (150,000 + 50,000 NSMC reviews), beside the checkout in CI only: long runs
# read them through the ``shared_corpus_dir`` fixture, which skips when they are absent.
SHARED = ROOT.parent / "shared"

# Tests never touch the network: the hub and Korpora's hosts are unreachable here anyway,
# and a test must not depend on that.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    # Tiny models: one thread is faster than torch's default on 2 cores, and far faster when
    # the machine is shared (measured ~10x under load).
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_corpus_dir() -> Path:
    """``../shared`` as a --corpus-dir, for a long run that needs the full NSMC; skips without it."""
    if not (SHARED / "nsmc" / "ratings_train.txt").is_file():
        pytest.skip(
            f"{SHARED / 'nsmc'} not found: a long run needs the full corpus "
            "(the normal run uses the sample in tests/data)"
        )
    return SHARED


def nsmc_rows(split: str = "train", limit: int = 2000) -> list[tuple[str, int]]:
    """The first ``limit`` (review, label) rows of the NSMC sample (at most 4,000 train, 1,000 test)."""
    path = NSMC_DIR / f"ratings_{split}.txt"
    rows = []
    with path.open(encoding="utf-8") as f:
        next(f)
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3 and parts[1].strip():
                rows.append((parts[1], int(parts[2])))
            if len(rows) >= limit:
                break
    return rows


def _polar_texts(limit: int) -> list[str]:
    return [("긍정 " if label else "부정 ") + text for text, label in nsmc_rows("train", limit)]


def _build(tmp: Path, name: str, kind: str, vocab: int) -> Path:
    from kolyric.training.scratch import ModelShape, new_model, train_tokenizer

    def build(out: Path) -> None:
        tokenizer = train_tokenizer(_polar_texts(3000), vocab_size=vocab, kind=kind)
        model = new_model(tokenizer, ModelShape(n_layer=2, n_embd=64, n_head=2, n_positions=128), seed=7)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)

    return _cached(tmp / name, build)


@pytest.fixture(scope="session")
def models_dir(request, tmp_path_factory) -> Path:
    """Built models live in pytest's cache dir, keyed by this file's content: a rerun reuses
    them, and any change to how they are built rebuilds them. With ``-p no:cacheprovider``
    there is no cache dir, and they are built once for the session."""
    import hashlib

    key = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    cache = getattr(request.config, "cache", None)
    if cache is None:
        return tmp_path_factory.mktemp(f"kolyric-models-{key}")
    return Path(cache.mkdir(f"kolyric-models-{key}"))


def _cached(out: Path, build) -> Path:
    """Build into a temporary sibling and rename: an interrupted build is never reused."""
    import shutil
    import tempfile

    if (out / "config.json").is_file():
        return out
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    build(tmp)
    try:
        tmp.rename(out)
    except OSError:  # another test process finished the same build first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "config.json").is_file():
            raise
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(models_dir) -> Path:
    """A tiny GPT-2 (random weights) + metaspace BPE tokenizer, in save_pretrained layout."""
    return _build(models_dir, "tiny", "metaspace", 1200)


@pytest.fixture(scope="session")
def tiny_bytelevel_dir(models_dir) -> Path:
    """The same with a byte-level tokenizer, whose tokens can split a syllable's bytes."""
    return _build(models_dir, "tiny-bytes", "bytelevel", 600)


@pytest.fixture(scope="session")
def tiny_hub_layout_dir(tiny_model_dir, models_dir) -> Path:
    """The tiny model as the skt/kogpt2-base-v2 repo lays it out: config.json, weights and a
    bare tokenizer.json, with no tokenizer_config.json naming the special tokens."""
    import shutil

    def build(out: Path) -> None:
        for name in ("model.safetensors", "tokenizer.json", "config.json"):
            shutil.copy(tiny_model_dir / name, out / name)

    return _cached(models_dir / "hub-layout", build)


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model_dir):
    from kolyric.engine.loading import load_model

    return load_model(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="session")
def trained_tiny_dir(models_dir) -> Path:
    """A tiny model briefly trained on NSMC, so its continuations are not uniform noise and
    polarity prefixes matter. About 20 s on 2 CPU cores; built once per session."""
    return _cached(models_dir / "trained-tiny", _train_tiny)


def _train_tiny(out: Path) -> None:
    import torch

    from kolyric.training.scratch import ModelShape, new_model, train_tokenizer

    torch.set_num_threads(min(2, torch.get_num_threads()))
    texts = _polar_texts(4000)
    tokenizer = train_tokenizer(texts, vocab_size=1500, kind="metaspace")
    model = new_model(tokenizer, ModelShape(n_layer=2, n_embd=96, n_head=2, n_positions=64), seed=7)
    torch.manual_seed(7)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    eos = tokenizer.eos_token
    for step in range(150):
        batch = texts[(step * 32) % len(texts) :][:32]
        enc = tokenizer([t + eos for t in batch], return_tensors="pt", padding=True, truncation=True, max_length=48)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = model(**enc, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: two cores shared with other work, and OpenMP spinning on
    the second costs more than it gives."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
