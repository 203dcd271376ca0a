"""A KoGPT2-shaped model for benchmarks: random weights, real size, and a 51,200-entry tokenizer.

skt/kogpt2-base-v2 cannot be downloaded here, and its speed does not depend on what its weights
say: a GPT-2 with vocab 51,200, 12 layers, width 768, 12 heads and 1,024 positions does the same
work per token. The tokenizer is a metaspace BPE trained on NSMC (kolyric's own trainer) and
topped up to exactly 51,200 entries with the most frequent NSMC words not yet in it, so every id
the random model picks decodes to real Korean text, as KoGPT2's do.

Both are cached under ``$KOLYRIC_BENCH_CACHE`` (default ``/tmp/kolyric-bench``): the tokenizer
takes ~10 s to train, the model's random init a few seconds. NSMC is read from
``$KOLYRIC_NSMC_DIR`` (default ``../shared/nsmc`` beside the checkout).

    from tests.benchmarks._kogpt2_shape import kogpt2_shaped
    loaded = kogpt2_shaped()               # a LoadedModel, CPU fp32, as load_model returns it
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NSMC_DIR = Path(os.environ.get("KOLYRIC_NSMC_DIR", ROOT.parent / "shared" / "nsmc"))
CACHE = Path(os.environ.get("KOLYRIC_BENCH_CACHE", "/tmp/kolyric-bench"))
VOCAB = 51200
SHAPE = {"n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 1024}


def nsmc_reviews(split: str = "train", limit: int | None = None) -> Iterator[str]:
    """NSMC review texts, in file order (the header and empty reviews skipped)."""
    path = NSMC_DIR / f"ratings_{split}.txt"
    count = 0
    with path.open(encoding="utf-8") as f:
        next(f)
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3 and parts[1].strip():
                yield parts[1]
                count += 1
                if limit is not None and count >= limit:
                    return


def tokenizer_51200(cache: Path = CACHE) -> Any:
    """A PreTrainedTokenizerFast with exactly 51,200 entries (built once, then loaded from cache)."""
    from transformers import PreTrainedTokenizerFast

    out = cache / "tokenizer-51200"
    if (out / "tokenizer.json").is_file():
        cached = PreTrainedTokenizerFast.from_pretrained(str(out))
        if len(cached) == VOCAB:
            return cached
    from tokenizers import Tokenizer

    from kolyric.training.scratch import train_tokenizer

    texts = list(nsmc_reviews("train"))
    tok = train_tokenizer(texts, vocab_size=VOCAB, kind="metaspace", min_frequency=2)
    if len(tok) > VOCAB:  # the trainer adds tokens beside BPE's (line and stanza breaks): make room
        tok = train_tokenizer(texts, vocab_size=VOCAB - (len(tok) - VOCAB), kind="metaspace", min_frequency=2)
    backend = tok.backend_tokenizer
    missing = VOCAB - backend.get_vocab_size()
    if missing > 0:  # BPE ran out of merges: add whole frequent words as extra merged pieces
        vocab = backend.get_vocab()
        counts = collections.Counter(w for t in texts for w in t.split())
        extra = [w for w, _ in counts.most_common() if w not in vocab][:missing]
        model = __import__("json").loads(backend.to_str())
        next_id = max(model["model"]["vocab"].values()) + 1
        for word in extra:
            model["model"]["vocab"][word] = next_id
            next_id += 1
        backend = Tokenizer.from_str(__import__("json").dumps(model, ensure_ascii=False))
        tok = PreTrainedTokenizerFast(
            tokenizer_object=backend,
            bos_token="</s>",
            eos_token="</s>",
            unk_token="<unk>",
            pad_token="<pad>",
            mask_token="<mask>",
        )
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(out))
    return tok


def kogpt2_shaped(cache: Path = CACHE, seed: int = 7) -> Any:
    """A LoadedModel: KoGPT2's shape with random weights, CPU fp32, eval mode, via ``load_model``."""
    from kolyric.engine.loading import load_model

    return load_model(str(kogpt2_shaped_dir(cache, seed)), device="cpu", precision="fp32")


def kogpt2_shaped_dir(cache: Path = CACHE, seed: int = 7) -> Path:
    """The model directory (save_pretrained layout), built on first use."""
    out = cache / f"kogpt2-shaped-{seed}"
    if (out / "config.json").is_file() and (out / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        if len(PreTrainedTokenizerFast.from_pretrained(str(out))) == VOCAB:  # not one from an older trainer
            return out
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = tokenizer_51200(cache)
    config = GPT2Config(
        vocab_size=VOCAB,
        **SHAPE,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def prompt_of_tokens(tokenizer: Any, n_tokens: int = 32, offset: int = 0) -> list[int]:
    """Exactly ``n_tokens`` ids of real NSMC text (reviews joined until long enough)."""
    ids: list[int] = []
    for text in nsmc_reviews("test", limit=None):
        if offset > 0:
            offset -= 1
            continue
        ids += tokenizer.encode(text + " ", add_special_tokens=False)
        if len(ids) >= n_tokens:
            return ids[:n_tokens]
    raise ValueError("NSMC ran out of text")


def prompt_text_of_tokens(tokenizer: Any, n_tokens: int = 32, offset: int = 0) -> str:
    """Text that kolyric's prompt builder encodes to exactly ``n_tokens`` tokens (no prefix)."""
    ids = prompt_of_tokens(tokenizer, n_tokens + 8, offset)
    for cut in range(n_tokens + 8, 0, -1):
        text = tokenizer.decode(ids[:cut]).strip()
        if len(tokenizer.encode(text, add_special_tokens=False)) == n_tokens:
            return text
    raise ValueError(f"no NSMC prefix encodes to exactly {n_tokens} tokens")
