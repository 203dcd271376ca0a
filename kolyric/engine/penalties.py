"""Penalties that read the text so far: DRY against repeated sequences, and phrase bias.

Both belong to the base of the chain (greedy decoding feels them too) and read token *texts*,
taken once per tokenizer (``VocabTexts``): DRY's sequence breakers are strings, and a phrase
may be spelled by many token sequences.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from kolyric.engine.chain import _numpy_view
from kolyric.engine.incremental import Incremental

if TYPE_CHECKING:
    from torch import Tensor

DRY_MAX_MATCH = 50
"""DRY extends a match back at most this far (the reference's cap: base**length overflows past it)."""


@dataclass
class VocabTexts:
    """Each token's text as it reads in context (a word-start token keeps its leading space)."""

    texts: list[str]
    _starts: dict[str, NDArray[np.int64]] = field(default_factory=dict)
    _contains: dict[str, NDArray[np.int64]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    _order: list[int] | None = None
    _sorted: list[str] | None = None

    def starting_with(self, text: str) -> NDArray[np.int64]:
        """Token ids whose text starts with ``text`` (cached): a range of the texts in sorted
        order, found by bisection, so a hostile phrase list costs no scan per prefix."""
        with self._lock:
            found = self._starts.get(text)
            if found is None:
                if self._sorted is None:
                    self._order = sorted(range(len(self.texts)), key=self.texts.__getitem__)
                    self._sorted = [self.texts[i] for i in self._order]
                low = bisect.bisect_left(self._sorted, text)
                high = bisect.bisect_left(self._sorted, text + "\U0010ffff", low)
                found = np.sort(np.array(self._order[low:high], dtype=np.int64))
                if len(self._starts) > 65536:  # bounded: rebuilt on demand
                    self._starts.clear()
                self._starts[text] = found
            return found

    def containing(self, text: str) -> NDArray[np.int64]:
        """Token ids whose text contains ``text`` (cached)."""
        with self._lock:
            found = self._contains.get(text)
            if found is None:
                found = np.array([i for i, t in enumerate(self.texts) if text in t], dtype=np.int64)
                self._contains[text] = found
            return found


_TEXTS: weakref.WeakKeyDictionary[object, VocabTexts] = weakref.WeakKeyDictionary()
_TEXTS_LOCK = threading.Lock()


def vocab_texts(tokenizer: object) -> VocabTexts:
    """The tokenizer's ``VocabTexts``, made once per tokenizer."""
    from kolyric.engine.lyric.vocab_profile import token_texts

    with _TEXTS_LOCK:
        found = _TEXTS.get(tokenizer)
        if found is None:
            found = VocabTexts(token_texts(tokenizer))
            _TEXTS[tokenizer] = found
        return found


def breaker_ids(texts: VocabTexts, breakers: Iterable[str]) -> frozenset[int]:
    """Tokens whose text holds one of the breaker strings: a DRY match never crosses them."""
    found: set[int] = set()
    for breaker in breakers:
        found.update(texts.containing(breaker).tolist())
    return frozenset(found)


class Dry(Incremental):
    """DRY, "Don't Repeat Yourself" (p-e-w, text-generation-webui PR #5677; llama.cpp's ``dry``):
    a token that would extend the end of the text into a repeat of an earlier sequence is
    penalised by ``multiplier * base ** (match length - allowed_length)``, where the match length
    is how many tokens before it already repeat the text before that earlier occurrence; matches
    shorter than ``allowed_length`` cost nothing. Matches stop at sequence breakers (tokens
    whose text holds one of the breaker strings, e.g. a line break) and at ``DRY_MAX_MATCH``.
    The penalty is subtracted from the score. The whole sequence, prompt included, is searched.
    """

    def __init__(self, multiplier: float, base: float, allowed_length: int, breakers: frozenset[int]):
        self.multiplier = multiplier
        self.base = base
        self.lowers_only = multiplier >= 0 and base > 0
        """Penalties are subtracted, never added (``chain.StepCache.bound``)."""
        self.allowed_length = allowed_length
        self.breakers = breakers
        super().__init__()  # the chain's step cache: the scores' view and the loop's sequences
        self._now: list[dict[int, float]] = []
        """Each row's penalties for its next token (``follow``)."""

    def penalties(self, seq: list[int], array: NDArray[np.int64] | None = None) -> dict[int, float]:
        """token -> penalty for the next token after ``seq`` (the reference algorithm);
        ``array``: the same sequence as NumPy, where the caller has it."""
        if len(seq) < 2 or seq[-1] in self.breakers:
            return {}
        breakers = self.breakers
        last = seq[-1]
        n = len(seq)
        lengths: dict[int, int] = {}
        earlier = array[:-1] if array is not None else np.asarray(seq[:-1])
        for i in np.flatnonzero(earlier == last).tolist():
            following = seq[i + 1]
            if following in breakers:
                continue
            length = 1
            while length < DRY_MAX_MATCH:
                j = i - length
                if j < 0:
                    break
                previous = seq[n - 1 - length]
                if seq[j] != previous or previous in breakers:
                    break
                length += 1
            if length > lengths.get(following, 0):
                lengths[following] = length
        return {
            token: self.multiplier * self.base ** (length - self.allowed_length)
            for token, length in lengths.items()
            if length >= self.allowed_length
        }

    def _update(self, input_ids: Tensor, width: int) -> None:
        # the loop's NumPy sequences where it has them: no torch call
        given = self.step.given if self.step is not None else None
        arrays = given[1] if given is not None and given[0] is input_ids else None
        seqs = arrays.tolist() if arrays is not None else input_ids.tolist()
        self._now = []
        for row, seq in enumerate(seqs):
            found = self.penalties(seq, arrays[row] if arrays is not None else None)
            self._now.append({t: p for t, p in found.items() if 0 <= t < width} if found else found)

    def lower_pool(self, values: NDArray[np.float32], ids: list[list[int]]) -> None:
        for row, penalties in enumerate(self._now):
            if penalties:
                for j, token in enumerate(ids[row]):
                    penalty = penalties.get(token)
                    if penalty is not None:
                        values[row, j] -= penalty

    def lower_row(self, scores: Tensor) -> Tensor:
        # the chain's NumPy view where it has it: no torch call
        view = _numpy_view(scores, self.step)
        if view is None and scores.device.type == "cpu" and not scores.requires_grad:
            view = scores.numpy()
        for row, penalties in enumerate(self._now):
            for token, penalty in penalties.items():
                if view is not None:
                    view[row, token] -= penalty
                else:
                    scores[row, token] -= penalty
        return scores


class PhraseBias(Incremental):
    """Adds ``bias`` to the score of every token that completes one of the phrases, however the
    phrase is spelled in tokens: a token holding the whole phrase, or one that continues a
    partial match (the text so far ends with the phrase's first characters, and the token's text
    starts with the rest). A phrase in several tokens is biased once, at the token that
    completes it; its log-probability moves by about ``bias``, as a one-token phrase's does.
    Phrases match anywhere in the text, spaced or not ("사랑" in "첫사랑" and " 사랑")."""

    def __init__(self, bias: Iterable[tuple[str, float]], texts: VocabTexts):
        super().__init__()
        self.texts = texts
        self.phrases = [(phrase, float(value)) for phrase, value in bias if phrase]
        self._whole = [texts.containing(phrase) for phrase, _ in self.phrases]
        self._keep = max((len(p) for p, _ in self.phrases), default=1) - 1
        self._tails: list[str] = []

    def _feed(self, rows: list[list[int]], rebuilt: bool) -> None:
        if rebuilt:
            self._tails = [""] * len(rows)
        texts = self.texts.texts
        for r, tokens in enumerate(rows):
            tail = self._tails[r] + "".join(texts[t] for t in tokens if 0 <= t < len(texts))
            self._tails[r] = tail[len(tail) - self._keep :] if self._keep else ""

    def targets(self, row: int) -> list[tuple[NDArray[np.int64], float]]:
        """(token ids, bias) for the next token of ``row``."""
        tail = self._tails[row] if row < len(self._tails) else ""
        out = []
        for (phrase, value), whole in zip(self.phrases, self._whole):
            parts = [whole]
            for m in range(1, len(phrase)):
                if tail.endswith(phrase[:m]):
                    parts.append(self.texts.starting_with(phrase[m:]))
            ids = parts[0] if len(parts) == 1 else np.unique(np.concatenate(parts))
            if len(ids):
                out.append((ids, value))
        return out

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        rebuilt, new = self._advance(input_ids)
        self._feed(new, rebuilt)
        view = scores.numpy() if scores.device.type == "cpu" and not scores.requires_grad else None
        width = scores.shape[-1]
        for row in range(scores.shape[0]):
            for ids, value in self.targets(row):
                ids = ids[ids < width]
                if view is not None:
                    view[row, ids] += view.dtype.type(value)
                else:
                    scores[row, ids.tolist()] += value
        return scores


__all__ = ["DRY_MAX_MATCH", "Dry", "PhraseBias", "VocabTexts", "breaker_ids", "vocab_texts"]
