"""Scoring texts under a polarity prefix: -log2 P(text + EOS | prefix) in batched forward passes.

The text a model learned is ``"<polarity> <text></s>"`` (``kolyric train``'s format); what is
scored is the text's tokens and the EOS that ends it, given the prefix, and the characters they
stand for (plus one for the end). The metrics built on it are in ``kolyric.evaluate``.

**Truncation.** Sequences (prefix + review + EOS) longer than ``max_seq_length`` tokens, or
than the model's context window, keep their first tokens. The EOS is then dropped and only
the characters the kept tokens cover are counted, so BPC stays a ratio over what was
actually scored; ``truncated`` says how many reviews were cut.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kolyric.engine.loading import plain_backend
from kolyric.engine.prompt import normalize_polarity, prefix_text
from kolyric.engine.window import context_window

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from kolyric.engine.loading import LoadedModel

ProgressFn = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages: ``bits``, ``accuracy``, ``distinct``."""

DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_SEQ_LENGTH = 128


@dataclass(frozen=True)
class TextScore:
    """One text scored under one prefix."""

    bits: float
    """-log2 P(scored tokens | prefix): the review's tokens and, when not truncated, the EOS."""
    chars: int
    """Characters those tokens stand for (+1 for the EOS when it was scored)."""
    tokens: int
    """Tokens scored (EOS included)."""
    truncated: bool
    unk_tokens: int


@dataclass(frozen=True)
class _Row:
    ids: list[int]
    n_cond: int  # leading tokens that are context (the polarity prefix), not scored
    chars: int
    truncated: bool
    unk_tokens: int


def _encode(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], polarities: Sequence[str | None], limit: int
) -> list[_Row]:
    """Token rows for ``prefix + text (+ EOS)`` and which of their tokens are scored."""
    eos, unk = tokenizer.eos_token_id, tokenizer.unk_token_id
    start_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    prefixes = [prefix_text(p) for p in polarities]
    fulls = [pre + text for pre, text in zip(prefixes, texts)]
    encodings = plain_backend(tokenizer).encode_batch(fulls, add_special_tokens=False)
    rows = []
    for pre, full, enc in zip(prefixes, fulls, encodings):
        ids, offsets = list(enc.ids), list(enc.offsets)
        if pre:
            # The prefix is every leading token that lies within the polarity word. A token
            # straddling word and review (no whitespace pre-tokenizer) becomes context too, and
            # the characters it covers are not counted.
            word_end = len(pre.rstrip())
            n_cond = 0
            while n_cond < len(ids) and offsets[n_cond][1] <= word_end:
                n_cond += 1
            n_cond = max(1, n_cond)
            review_from = max(len(pre), offsets[n_cond - 1][1])
        else:
            if start_id is None:
                raise ValueError("the tokenizer has neither a BOS nor an EOS token to start a text without a prefix")
            ids, offsets, n_cond, review_from = [start_id] + ids, [(0, 0)] + offsets, 1, 0
        n_text = len(ids)
        if eos is not None:
            ids.append(eos)
        truncated = len(ids) > limit
        if truncated:
            ids = ids[:limit]
            kept_text = min(len(ids), n_text)
            end = offsets[kept_text - 1][1] if kept_text > n_cond else review_from
            chars = max(0, min(end, len(full)) - review_from)
        else:
            chars = len(full) - review_from + (1 if eos is not None else 0)
        scored = ids[n_cond:]
        unk_tokens = sum(1 for t in scored if t == unk) if unk is not None else 0
        rows.append(_Row(ids, n_cond, chars, truncated, unk_tokens))
    return rows


def score_texts(
    loaded: LoadedModel,
    texts: Sequence[str],
    polarities: Sequence[str | None],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
    progress: ProgressFn | None = None,
    stage: str = "bits",
) -> list[TextScore]:
    """-log2 P(text (+ EOS) | prefix) for each text, in batched forward passes.

    Rows are sorted by length so a batch pads little; padding is masked from attention and
    from the sums, so a text's score does not depend on what it is batched with.
    """
    import torch

    if len(texts) != len(polarities):
        raise ValueError(f"texts and polarities differ in length ({len(texts)} vs {len(polarities)})")
    if batch_size < 1:
        raise ValueError(f"batch_size: must be at least 1, got {batch_size}")
    if max_seq_length < 2:
        raise ValueError(f"max_seq_length: must be at least 2, got {max_seq_length}")
    polarities = [normalize_polarity(p) for p in polarities]
    model, tokenizer = loaded.model, loaded.tokenizer
    limit = min(max_seq_length, context_window(model.config))
    rows = _encode(tokenizer, texts, polarities, limit)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    device = next(model.parameters()).device
    bits = [0.0] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].ids))
    done = 0
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(rows[i].ids) for i in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            scored = torch.zeros((len(batch), width - 1), dtype=torch.bool)
            for b, i in enumerate(batch):
                row = rows[i]
                input_ids[b, : len(row.ids)] = torch.tensor(row.ids)
                attention[b, : len(row.ids)] = 1
                # Position t predicts token t+1: the scored targets are tokens n_cond … end.
                scored[b, row.n_cond - 1 : len(row.ids) - 1] = True
            input_ids, attention, scored = input_ids.to(device), attention.to(device), scored.to(device)
            logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1), reduction="none"
            ).view(len(batch), width - 1)
            sums = (nll * scored).sum(dim=1).double().tolist()
            for b, i in enumerate(batch):
                bits[i] = sums[b] / math.log(2)
            done += len(batch)
            if progress is not None:
                progress(stage, done, len(rows))
    return [
        TextScore(bits[i], row.chars, len(row.ids) - row.n_cond, row.truncated, row.unk_tokens)
        for i, row in enumerate(rows)
    ]


__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_MAX_SEQ_LENGTH", "ProgressFn", "TextScore", "score_texts"]
