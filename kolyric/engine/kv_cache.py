"""Taking a decoding step back and copying rows of a KV cache, for every cache the loop meets:
transformers' caches, kolyric's ONNX Runtime cache (``kolyric.engine.onnx_decoder``) and the
legacy tuple of (keys, values) per layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import Cache

    Past = Cache | tuple[tuple[torch.Tensor, torch.Tensor], ...]
    """A model's KV cache: a transformers ``Cache`` (kolyric's ONNX Runtime one has its API) or
    a legacy tuple."""


def crop_cache(past: Past, length: int) -> Past:
    """``past`` holding its first ``length`` positions: a transformers cache or kolyric's ONNX
    Runtime cache in place (their ``crop`` with a negative count drops that many from the end),
    a legacy tuple of (keys, values) per layer as a new tuple."""
    if hasattr(past, "crop") and hasattr(past, "get_seq_length"):
        remove = int(past.get_seq_length()) - length
        if remove > 0:
            past.crop(-remove)
        return past
    if isinstance(past, (tuple, list)):
        return tuple((k[..., :length, :], v[..., :length, :]) for k, v in past)
    raise TypeError(f"cannot take a step back in a {type(past).__name__} cache")


def sub_cache(past: Past, rows: list[int], length: int) -> Past:
    """A new cache of the given rows of ``past`` (repeats allowed), first ``length`` positions;
    ``past`` is left as it is."""
    from kolyric.engine.onnx_decoder import _cache_pairs

    if hasattr(past, "rows"):  # kolyric's ONNX Runtime cache
        return past.rows(rows, length)
    pairs = _cache_pairs(past)
    if pairs is None:
        raise TypeError(f"cannot copy rows of a {type(past).__name__} cache")
    import torch

    index = torch.tensor(rows, dtype=torch.long, device=pairs[0][0].device)
    picked = [(k.index_select(0, index)[..., :length, :], v.index_select(0, index)[..., :length, :]) for k, v in pairs]
    if isinstance(past, (tuple, list)):
        return tuple(picked)
    from transformers import DynamicCache

    cache = DynamicCache()
    for layer, (k, v) in enumerate(picked):
        cache.update(k, v, layer)
    return cache


__all__ = ["crop_cache", "sub_cache"]
