"""Examples → token ids → padded batches.

Each example becomes ``"<polarity> <text>"`` (e.g. ``긍정 너무 재밌다``; just the text when it
has no polarity) followed by the EOS token. A text longer than ``max_seq_length`` tokens is not
cut off: it is split into windows (``split_windows``) that end on a line break where the text
has lines (else on a word break), overlap by about a quarter window so each window's first
lines have context, and each start with the example's polarity word. Only the last window of a
text ends in EOS: the others did not end there, and teaching the model that they did would
make it stop mid-song. ``Coverage`` reports what this did: every token of the corpus is trained
on, and a line longer than a whole window (cut mid-line) is counted and warned about.

Rows are stored unpadded in one flat ``int32`` tensor. Batches are padded only to their own
longest row (dynamic padding), and padding positions get label -100 so they count neither in
the loss nor in ``val_loss``. The tutorial instead pads every row to 32 with ``</s>`` and
trains on that padding: most of each batch is then padding, which costs compute and makes
``val_loss`` look better than it is (predicting ``</s>`` after ``</s>`` is easy).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from kolyric.training.corpora import Example

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerBase

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
        self.coverage = Coverage()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.flat[self.offsets[index] : self.offsets[index + 1]]

    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def n_tokens(self) -> int:
        return int(self.flat.numel())


@dataclass
class Coverage:
    """How a corpus became training rows."""

    examples: int = 0
    rows: int = 0
    corpus_tokens: int = 0
    """Tokens of the texts themselves (polarity word and EOS included once per example)."""
    trained_tokens: int = 0
    """Of those, the ones inside some row: all of them, since long texts are windowed."""
    row_tokens: int = 0
    """Tokens in all rows: more than ``corpus_tokens`` by the overlaps and repeated prefixes."""
    split_examples: int = 0
    """Examples longer than one row, split into windows."""
    cut_lines: int = 0
    """Windows of a text with lines that had to end inside a line (no line break in the window's
    second half)."""
    cut_words: int = 0
    """Windows that had to end inside a word (no word break in the window's second half)."""

    def add(self, other: Coverage) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self) -> str:
        share = self.trained_tokens / self.corpus_tokens if self.corpus_tokens else 1.0
        text = f"{self.trained_tokens:,} of {self.corpus_tokens:,} corpus tokens trained on ({share:.0%})"
        if self.split_examples:
            extra = self.row_tokens - self.corpus_tokens
            text += (
                f"; {self.split_examples:,} long text(s) split into windows (+{extra:,} tokens of overlap and prefixes)"
            )
        return text

    def warning(self, max_seq_length: int) -> str | None:
        parts = [
            f"{n:,} window(s) had to end mid-{what}"
            for n, what in ((self.cut_lines, "line"), (self.cut_words, "word"))
            if n
        ]
        if not parts:
            return None
        return (
            f"{' and '.join(parts)}: some lines (or texts without lines) run longer than half of "
            f"--max-seq-length "
            f"{max_seq_length} tokens; nothing is lost (the next window goes on from there), but a "
            f"longer --max-seq-length keeps such lines whole"
        )


class _Boundaries:
    """Which token ids end a line and which begin a word, for one tokenizer."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        vocab = tokenizer.get_vocab()
        self.line_ends = {i for t, i in vocab.items() if t and t.strip("\n") == "" and "\n" in t}
        # Metaspace marks a word start with ▁, byte-level BPE with Ġ (its space byte).
        self.word_starts = {i for t, i in vocab.items() if t[:1] in ("▁", "Ġ")}


@dataclass
class Windows:
    """One text as rows: the ``spans`` of the body each row holds, and how many had to end
    inside a line or a word."""

    rows: list[list[int]]
    spans: list[tuple[int, int]]
    cut_lines: int = 0
    cut_words: int = 0

    def covered(self) -> int:
        """Body positions inside some row (all of them, unless a window skipped some)."""
        seen, last = 0, 0
        for start, end in self.spans:
            seen += max(0, end - max(start, last))
            last = max(last, end)
        return seen


def split_windows(
    body: Sequence[int], prefix: Sequence[int], eos: int, max_seq_length: int, boundaries: _Boundaries
) -> Windows:
    """``prefix + body + [eos]`` as rows of at most ``max_seq_length`` tokens: one row when it
    fits, else windows as the module docstring says."""
    if len(prefix) + len(body) + 1 <= max_seq_length:
        return Windows([[*prefix, *body, eos]], [(0, len(body))])
    room = max_seq_length - len(prefix)
    if room < 2:  # the prefix leaves no room: plain windows, no prefix
        prefix, room = (), max_seq_length
    line_starts = [i for i in range(1, len(body)) if body[i - 1] in boundaries.line_ends]
    word_starts = [i for i in range(1, len(body)) if body[i] in boundaries.word_starts]
    out = Windows([], [])
    start = 0
    while True:
        if len(body) - start + 1 <= room:
            out.rows.append([*prefix, *body[start:], eos])
            out.spans.append((start, len(body)))
            return out
        low, high = start + room // 2, start + room
        end = _last_in(line_starts, low, high)
        if end is None:
            out.cut_lines += bool(line_starts)
            end = _last_in(word_starts, low, high)
            if end is None:
                out.cut_words += 1
                end = high
        out.rows.append([*prefix, *body[start:end]])
        out.spans.append((start, end))
        # The next window starts at a line (else word) start about a quarter window back.
        back = max(end - room // 4, start + 1)
        start = _first_in(line_starts, back, end) or _first_in(word_starts, back, end) or end


def _last_in(sorted_positions: list[int], low: int, high: int) -> int | None:
    i = bisect.bisect_right(sorted_positions, high) - 1
    return sorted_positions[i] if i >= 0 and sorted_positions[i] > low else None


def _first_in(sorted_positions: list[int], low: int, high: int) -> int | None:
    i = bisect.bisect_left(sorted_positions, low)
    return sorted_positions[i] if i < len(sorted_positions) and sorted_positions[i] <= high else None


def tokenize_examples(
    examples: Sequence[Example],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    *,
    chunk_size: int = 20_000,
    progress: ProgressFn | None = None,
) -> TokenizedDataset:
    """Tokenize ``examples`` in batches with the fast tokenizer; ``progress(done, total)`` per chunk.
    The result's ``coverage`` says how many tokens were trained on and whether any line was cut."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token")
    if max_seq_length < 2:
        raise ValueError(f"max_seq_length: must be at least 2, got {max_seq_length}")
    # The backend (Rust) tokenizer directly: the transformers wrapper's batching costs twice
    # the time of the encoding itself.
    from kolyric.engine.loading import plain_backend

    backend = plain_backend(tokenizer)
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    boundaries = _Boundaries(tokenizer)
    prefixes: dict[str, list[int]] = {}
    coverage = Coverage()
    total = len(examples)
    rows: list[list[int]] = []
    for start in range(0, total, chunk_size):
        chunk = examples[start : start + chunk_size]
        for example, enc in zip(chunk, encode([format_example(ex) for ex in chunk], add_special_tokens=False)):
            ids = enc.ids
            prefix = _prefix(example.polarity, ids, prefixes, backend)
            windows = split_windows(ids[len(prefix) :], prefix, eos, max_seq_length, boundaries)
            rows.extend(windows.rows)
            coverage.add(
                Coverage(
                    examples=1,
                    rows=len(windows.rows),
                    corpus_tokens=len(ids) + 1,
                    trained_tokens=len(prefix) + windows.covered() + 1,
                    row_tokens=sum(map(len, windows.rows)),
                    split_examples=int(len(windows.rows) > 1),
                    cut_lines=windows.cut_lines,
                    cut_words=windows.cut_words,
                )
            )
        if progress is not None:
            progress(min(start + chunk_size, total), total)
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    flat = np.fromiter((t for r in rows for t in r), dtype=np.int32, count=int(lengths.sum()))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    dataset = TokenizedDataset(torch.from_numpy(flat), torch.from_numpy(offsets))
    dataset.coverage = coverage
    return dataset


def _prefix(polarity: str | None, ids: list[int], cache: dict[str, list[int]], backend: Tokenizer) -> list[int]:
    """The polarity word's tokens at the head of ``ids`` (none when the tokenizer merged them
    with the text, so they cannot be repeated on their own)."""
    if not polarity:
        return []
    if polarity not in cache:
        cache[polarity] = backend.encode(polarity, add_special_tokens=False).ids
    prefix = cache[polarity]
    return prefix if ids[: len(prefix)] == prefix else []


class DynamicPaddingCollator:
    """Pad a batch to its longest row; padding is masked from attention and from the loss."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = row
            attention_mask[i, : len(row)] = 1
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
            input_ids[i, : len(row)] = row
            attention_mask[i, : len(row)] = 1
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

    def __init__(
        self, lengths: torch.Tensor, batch_size: int, *, shuffle: bool = True, seed: int = 7, pool_factor: int = 64
    ) -> None:
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
            return [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(n, generator=generator)
        pool = self.batch_size * self.pool_factor
        batches: list[list[int]] = []
        for start in range(0, n, pool):
            idx = order[start : start + pool]
            idx = idx[torch.argsort(self.lengths[idx], descending=True, stable=True)].tolist()
            batches.extend(idx[i : i + self.batch_size] for i in range(0, len(idx), self.batch_size))
        shuffled = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in shuffled]

    def _shard(self, batches: list[list[int]]) -> list[list[int]]:
        rank, world = _rank_and_world()
        if world == 1:
            return batches
        per_rank = max(1, len(batches) // world)
        # Every process needs the same number of batches, or collective ops would hang.
        batches = (batches * world)[: per_rank * world] if len(batches) < world else batches[: per_rank * world]
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
