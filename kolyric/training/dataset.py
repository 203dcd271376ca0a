"""Examples → token ids → padded batches.

Each example becomes ``"<polarity> <text>"`` (e.g. ``긍정 너무 재밌다``; just the text when it
has no polarity) followed by the EOS token, truncated to ``max_seq_length`` tokens. A text
that had to be cut keeps no EOS: it did not end there, and teaching the model that it did
would make it stop mid-sentence.

Rows are stored unpadded in one flat ``int32`` tensor. Batches are padded only to their own
longest row (dynamic padding), and padding positions get label -100 so they count neither in
the loss nor in ``val_loss``. The tutorial instead pads every row to 32 with ``</s>`` and
trains on that padding: most of each batch is then padding, which costs compute and makes
``val_loss`` look better than it is (predicting ``</s>`` after ``</s>`` is easy).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from kolyric.training.corpora import Example

ProgressFn = Callable[[int, int], None]
IGNORE_INDEX = -100


def format_example(example: Example) -> str:
    """The text the model learns: the polarity word first, when there is one."""
    return f"{example.polarity} {example.text}" if example.polarity else example.text


class TokenizedDataset(Dataset):
    """Token-id rows of varying length, held in one flat tensor plus offsets."""

    def __init__(self, flat: torch.Tensor, offsets: torch.Tensor) -> None:
        self.flat = flat
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.flat[self.offsets[index]:self.offsets[index + 1]]

    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def n_tokens(self) -> int:
        return int(self.flat.numel())


def tokenize_examples(examples: Sequence[Example], tokenizer: Any, max_seq_length: int, *,
                      chunk_size: int = 20_000, progress: ProgressFn | None = None) -> TokenizedDataset:
    """Tokenize ``examples`` in batches with the fast tokenizer; ``progress(done, total)`` per chunk."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token")
    # The backend (Rust) tokenizer directly: the transformers wrapper's batching costs twice
    # the time of the encoding itself.
    from kolyric.engine.loading import plain_backend

    backend = plain_backend(tokenizer)
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    total = len(examples)
    rows: list[list[int]] = []
    for start in range(0, total, chunk_size):
        texts = [format_example(ex) for ex in examples[start:start + chunk_size]]
        for enc in encode(texts, add_special_tokens=False):
            row = enc.ids
            # Shorter than the limit: the whole text fitted, so its end is real; mark it with EOS.
            rows.append(row[:max_seq_length] if len(row) >= max_seq_length else row + [eos])
        if progress is not None:
            progress(min(start + chunk_size, total), total)
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    flat = np.fromiter((t for r in rows for t in r), dtype=np.int32, count=int(lengths.sum()))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat, offsets = torch.from_numpy(flat), torch.from_numpy(offsets)
    return TokenizedDataset(flat, offsets)


class DynamicPaddingCollator:
    """Pad a batch to its longest row; padding is masked from attention and from the loss."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, :len(row)] = row
            attention_mask[i, :len(row)] = 1
        # Mask by position, not by id: the pad id may equal EOS, and EOS must still be learned.
        labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class FixedPaddingCollator:
    """The tutorial's scheme, kept for the benchmark: every row padded to ``width`` and the
    padding trained on like any other token."""

    def __init__(self, pad_token_id: int, width: int) -> None:
        self.pad_token_id = pad_token_id
        self.width = width

    def __call__(self, rows: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        input_ids = torch.full((len(rows), self.width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), self.width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, :len(row)] = row
            attention_mask[i, :len(row)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": input_ids.clone()}


class LengthGroupedBatchSampler:
    """Batches of rows of similar length, so dynamic padding has little left to pad.

    Random batches almost always hold one row at the length limit (NSMC at 32 tokens: 12 % of
    rows, so 98 % of batches of 32), and then pad to the limit anyway. Here each epoch the rows
    are shuffled, cut into pools of ``batch_size × pool_factor``, each pool sorted by length and
    cut into batches, and the batches shuffled: still random, nearly padding-free.
    With ``shuffle=False`` (validation) the whole set is sorted by length.

    Under torch.distributed each process takes every ``world_size``-th batch (and all take the
    same number), so Lightning's own distributed sampler must be off.
    """

    def __init__(self, lengths: torch.Tensor, batch_size: int, *, shuffle: bool = True, seed: int = 7,
                 pool_factor: int = 64) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.pool_factor = pool_factor
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this each epoch, so every epoch has its own order."""
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            order = torch.argsort(self.lengths, descending=True, stable=True).tolist()
            return [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(n, generator=generator)
        pool = self.batch_size * self.pool_factor
        batches: list[list[int]] = []
        for start in range(0, n, pool):
            idx = order[start:start + pool]
            idx = idx[torch.argsort(self.lengths[idx], descending=True, stable=True)].tolist()
            batches.extend(idx[i:i + self.batch_size] for i in range(0, len(idx), self.batch_size))
        shuffled = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in shuffled]

    def _shard(self, batches: list[list[int]]) -> list[list[int]]:
        rank, world = _rank_and_world()
        if world == 1:
            return batches
        per_rank = max(1, len(batches) // world)
        # Every process needs the same number of batches, or collective ops would hang.
        batches = (batches * world)[:per_rank * world] if len(batches) < world else batches[:per_rank * world]
        return batches[rank::world]

    def __iter__(self):
        return iter(self._shard(self._batches()))

    def __len__(self) -> int:
        n_batches = -(-len(self.lengths) // self.batch_size)
        _, world = _rank_and_world()
        return max(1, n_batches // world) if world > 1 else n_batches


def _rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
