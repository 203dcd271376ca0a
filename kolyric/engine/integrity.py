"""Checks that keep a lying or damaged model from loading: its size against memory, its
vocabulary against its tokenizer, and its weights against the digest written with them.

- ``size_refusal(config)``: a config can ask for any size (``n_embd: 65536``), and
  ``from_config`` / ``from_pretrained`` allocate all of it before a weight is read, until the
  machine runs out of memory. The parameter count is estimated from the config alone and
  compared with the memory available first.
- ``vocab_refusal(model, tokenizer)``: a tokenizer with more ids than the model has embedding
  rows crashes generation (an IndexError) the first time such an id comes up.
- ``weights_digest(state_dict)``: kolyric's checkpoints store a SHA-256 of their tensors
  (names, dtypes, shapes and bytes, in name order) when they are saved; a load recomputes it, so
  one flipped bit refuses the file instead of loading a weight of 5e36.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from kolyric.engine.window import context_window

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast

WEIGHTS_DIGEST_KEY = "kolyric_weights"
"""Top-level checkpoint key: {"sha256": hex digest, "tensors": count} (plain types, weights_only-safe)."""
BYTES_PER_PARAMETER = 4  # weights are materialised in fp32 before any cast or int8 packing


# -- size ------------------------------------------------------------------------------------------
def _first(config: PretrainedConfig, *names: str) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def estimate_parameters(config: PretrainedConfig) -> int | None:
    """Parameters a decoder-only transformer with this config holds (embeddings, attention and
    MLP matrices; biases and norms are a rounding error); None when the config does not say."""
    hidden = _first(config, "hidden_size", "n_embd", "d_model")
    layers = _first(config, "num_hidden_layers", "n_layer", "num_layers")
    vocab = _first(config, "vocab_size")
    if hidden is None or layers is None or vocab is None:
        return None
    inner = _first(config, "intermediate_size", "n_inner", "ffn_dim") or 4 * hidden
    positions = context_window(config, default=0)
    tied = getattr(config, "tie_word_embeddings", True) is not False
    embeddings = vocab * hidden * (1 if tied else 2) + max(0, positions) * hidden
    return max(0, embeddings + layers * (4 * hidden * hidden + 2 * hidden * inner))


def available_memory() -> int | None:
    """Bytes this process could still allocate: MemAvailable, or a cgroup's limit if lower."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
                break
    except (OSError, ValueError, IndexError):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:  # "max" or a huge number: no limit
            found.append(max(0, int(limit) - usage))
        break
    return min(found) if found else None


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def human_count(n: int) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def size_refusal(config: PretrainedConfig, what: str, available: int | None = None) -> str | None:
    """Why a model of ``config`` must not be allocated (it cannot fit in memory), or None.

    ``what`` names where the config came from, e.g. ``runs/x/config.json``.
    """
    n = estimate_parameters(config)
    if n is None:
        return None
    need = n * BYTES_PER_PARAMETER
    have = available_memory() if available is None else available
    if have is None or need <= have:
        return None
    return (
        f"{what} describes a model of about {human_count(n)} parameters ({_gb(need)} in fp32), more than "
        f"the {_gb(have)} of memory available; refusing to allocate it"
    )


# -- vocabulary ----------------------------------------------------------------------------------
def vocab_refusal(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast) -> str | None:
    """Why the tokenizer's ids do not all fit the model's embedding, or None."""
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    weight = getattr(embedding, "weight", None)
    if weight is None or weight.ndim != 2:
        return None
    rows = int(weight.shape[0])
    try:
        ids = max(len(tokenizer), max(tokenizer.get_vocab().values(), default=-1) + 1)
    except (TypeError, ValueError, AttributeError):
        return None
    if ids <= rows:
        return None
    return (
        f"its tokenizer (tokenizer.json) has {ids} token ids but the model's embedding has {rows} rows; "
        f"ids {rows}..{ids - 1} would crash generation (a tokenizer from another model?)"
    )


# -- weights digest --------------------------------------------------------------------------------
def weights_digest(state_dict: Mapping[str, torch.Tensor | object]) -> dict[str, str | int]:
    """A SHA-256 over every tensor of ``state_dict``: name, dtype, shape and bytes, in name order."""
    import torch

    digest = hashlib.sha256()
    count = 0
    for name in sorted(k for k, v in state_dict.items() if isinstance(v, torch.Tensor)):
        tensor = state_dict[name].detach()
        if tensor.is_sparse or tensor.is_quantized or getattr(tensor, "is_meta", False):
            continue
        digest.update(name.encode("utf-8", "surrogatepass") + b"\0")
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode() + b"\0")
        flat = tensor.cpu().contiguous().reshape(-1)
        if flat.numel():
            digest.update(memoryview(flat.view(torch.uint8).numpy()))
        count += 1
    return {"sha256": digest.hexdigest(), "tensors": count}


def digest_refusal(data: Mapping[str, object]) -> str | None:
    """Why a checkpoint's tensors do not match the digest stored with them (None: they do, or none is stored)."""
    stored = data.get(WEIGHTS_DIGEST_KEY)
    if not isinstance(stored, dict) or not isinstance(stored.get("sha256"), str):
        return None
    state = data.get("state_dict")
    if not isinstance(state, dict):
        return None
    found = weights_digest(state)
    if found["sha256"] == stored["sha256"]:
        return None
    return (
        "its weights do not match the digest written when it was saved (a damaged file: a flipped bit "
        "or a bad copy); refusing to load it"
    )


__all__ = [
    "WEIGHTS_DIGEST_KEY",
    "available_memory",
    "digest_refusal",
    "estimate_parameters",
    "human_count",
    "size_refusal",
    "vocab_refusal",
    "weights_digest",
]
