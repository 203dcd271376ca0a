"""Stop strings and banned phrases, checked on the decoded text, for the decoding loop
(``kolyric.engine.stream``).

Both are about text, not token ids: a phrase can be spelled by many token sequences (``사랑``
as one token, or ``사`` + ``랑``, or byte tokens), so ids alone would miss most of them.

* **Stop strings** (``StopText``): a row's streamed text is watched as it is released; text
  that could be the start of a stop string is held back until the next tokens tell, so a stop
  string that spans tokens is never half-streamed. When one appears the row ends
  (``finish_reason`` "stop"), its text cut before the stop string, or after it with
  ``keep_stop``; the text's leading whitespace is not searched (``find_stop``).
  transformers' ``StopStringCriteria`` does this for beam search
  (``kolyric.engine.beam``); this is the same check, incremental, on the text the stream shows.
* **Banned phrases** (``PhraseBan``): a phrase never appears in a row's generated text. A token
  whose own text holds a phrase is masked every step (one cached mask). A token that completes
  a phrase with the text before it (``사`` then ``랑``) is found after it is chosen and before it
  is fed to the model: the loop takes it back and chooses again down the same ranking (greedy's
  scores, sampling's race: ``kolyric.engine.lyric.lookahead.Choice``), so the KV cache never
  holds it. A row with nothing left to choose ends with ``finish_reason`` "banned" and a note
  saying why; it never loops. Overlapping phrases are each checked on the whole text.
  Beam search cannot take a step back inside ``model.generate``; it chooses each step's
  hypotheses among every row's ``2 x num_beams`` best tokens, so ``BeamBan`` checks those
  before it chooses and masks the ones that would complete a phrase, until they are clean.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from kolyric.engine.prompt import clean_piece

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

BANNED_NOTE = "ban: every token the model could write next is banned or completes a banned phrase"
FALLBACK_SCORE = -1e4
"""Beam search: the end token's score in a row the ban leaves nothing in (finite: a row of -inf
would make its log-probabilities NaN)."""
BAN_TRIES = 4096
"""Tokens struck from one row's ranking at one step before the row gives up (ends "banned")."""


def find_stop(text: str, stops: Sequence[str], start: int = 0) -> tuple[int, str] | None:
    """The earliest stop string in ``text`` at or after ``start`` (the longest at a tie), as
    (index, string), or None.

    A match lying wholly in the text's leading whitespace does not count: a continuation of the
    next line begins with the line break that opens it, and ``--stop '\n'`` means "end this
    line", not "end before anything is written"."""
    lead = len(text) - len(text.lstrip())
    best: tuple[int, str] | None = None
    for stop in stops:
        at = text.find(stop, start)
        while at >= 0 and at + len(stop) <= lead:
            at = text.find(stop, at + 1)
        if at >= 0 and (best is None or at < best[0] or (at == best[0] and len(stop) > len(best[1]))):
            best = (at, stop)
    return best


def cut_at_stop(text: str, stops: Sequence[str], keep: bool) -> str | None:
    """``text`` up to its first stop string (through it with ``keep``), or None when it has none."""
    found = find_stop(text, stops)
    if found is None:
        return None
    at, stop = found
    return text[: at + len(stop)] if keep else text[:at]


class StopText:
    """One row's streamed text, watched for stop strings (see the module's docstring).

    ``push`` takes each token's piece and gives back the pieces to stream now, one per token
    still pending, oldest first: none while the text's end could begin a stop string, all of
    them (the last cut at the stop string) once it is known."""

    def __init__(self, stops: Sequence[str], keep: bool):
        self.text = ""
        """Everything pushed so far."""
        self.sent = 0
        """How much of ``text`` has been released."""
        self.pieces: list[str] = []
        """The pieces not yet released (together ``text[sent:]``)."""
        self.stopped = False
        self.watch(stops, keep)

    def watch(self, stops: Sequence[str], keep: bool) -> None:
        """Watch for these stop strings from now on (a live settings change)."""
        self.stops = tuple(s for s in stops if s)
        self.keep = keep
        self._longest = max((len(s) for s in self.stops), default=0)

    def push(self, piece: str) -> list[str]:
        if self.stopped:
            return [""]
        self.pieces.append(piece)
        self.text += piece
        if not self.stops:
            return self._release(len(self.text))
        found = find_stop(self.text, self.stops, max(0, self.sent - self._longest + 1))
        if found is not None:
            at, stop = found
            self.stopped = True
            return self._release(max(at + len(stop) if self.keep else at, self.sent))
        return [] if self._held_back() else self._release(len(self.text))

    def flush(self) -> list[str]:
        """The pending pieces as they are, at the end of the row (no stop string came)."""
        return self._release(len(self.text))

    def _held_back(self) -> bool:
        """Whether the unreleased text ends with the beginning of a stop string."""
        text = self.text
        for n in range(min(self._longest - 1, len(text) - self.sent), 0, -1):
            tail = text[-n:]
            if any(s.startswith(tail) for s in self.stops):
                return True
        return False

    def _release(self, end: int) -> list[str]:
        """Every pending piece, cut so that together they hold ``text[sent:end]``."""
        out, left = [], end - self.sent
        for piece in self.pieces:
            out.append(piece[: max(0, left)])
            left -= len(piece)
        self.pieces = []
        self.sent = len(self.text)
        return out


class PhraseBan:
    """The banned phrases of one generation over one tokenizer (see the module's docstring)."""

    def __init__(
        self, phrases: Sequence[str], tokenizer: PreTrainedTokenizerBase, vocab_size: int | None, eos_id: int | None
    ):
        self.phrases = tuple(dict.fromkeys(p for p in phrases if p))
        self.tokenizer = tokenizer
        self.eos_id = eos_id
        self.unk_token = tokenizer.unk_token
        self._longest = max((len(p) for p in self.phrases), default=0)
        self.token_ids, self.empties = _holding(tokenizer, vocab_size, self.phrases)
        """``token_ids``: tokens whose own text holds a banned phrase, masked every step;
        ``empties``: whether that leaves no token that writes any text (only the end token and the like)."""
        self._index: dict[str, torch.Tensor] = {}
        backend = getattr(tokenizer, "backend_tokenizer", None)
        # the Rust decoder directly where there is one: a step decodes twice per row
        self._decode: Callable[[list[int]], str] = (
            (lambda ids: backend.decode(ids, skip_special_tokens=False))
            if backend is not None
            else (lambda ids: tokenizer.decode(ids, skip_special_tokens=False))
        )

    def apply(self, scores: torch.Tensor) -> torch.Tensor:
        """``scores`` with the always-banned tokens at -inf (in place)."""
        if not self.token_ids:
            return scores
        key = str(scores.device)
        index = self._index.get(key)
        if index is None:
            import torch

            index = self._index[key] = torch.tensor(self.token_ids, dtype=torch.long, device=scores.device)
        width = scores.shape[-1]
        scores.index_fill_(-1, index if int(index[-1]) < width else index[index < width], float("-inf"))
        return scores

    def completes(self, generated: Sequence[int], token_id: int) -> str | None:
        """The banned phrase that ``token_id`` completes after the ``generated`` ids, or None.

        Only the end of the text is decoded: enough tokens to hold the longest phrase before the
        new token's text (more when byte tokens spell few characters each)."""
        if not self.phrases or token_id == self.eos_id:
            return None
        decode = self._decode
        ids = list(generated)
        window = self._longest + 2
        while True:
            before = clean_piece(decode(ids[-window:]), self.unk_token) if ids else ""
            if len(before) >= self._longest or window >= len(ids):
                break
            window *= 2
        after = clean_piece(decode(ids[-window:] + [int(token_id)]), self.unk_token)
        # a phrase counts only where it ends in the new text (what ``before`` had was checked before)
        keep = _shared_start(before, after)
        start = max(0, keep - self._longest + 1)
        tail = after[start:]
        for phrase in self.phrases:
            at = tail.find(phrase)
            while at >= 0:
                if start + at + len(phrase) > keep:
                    return phrase
                at = tail.find(phrase, at + 1)
        return None


_CACHE: weakref.WeakKeyDictionary[PreTrainedTokenizerBase, dict[tuple, tuple]] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _holding(tokenizer: PreTrainedTokenizerBase, size: int | None, phrases: tuple[str, ...]) -> tuple[list[int], bool]:
    """The tokens whose text holds one of ``phrases``, and whether they are all the tokens that
    write any text; cached per tokenizer (its texts, and the last few ban lists)."""
    from kolyric.engine.lyric.vocab_profile import profile_for

    profile = profile_for(tokenizer, size)
    with _CACHE_LOCK:
        per = _CACHE.setdefault(tokenizer, {})
        found = per.get((profile.size, phrases))
        if found is not None:
            return found
        texts = per.get((profile.size,))
        if texts is None:
            special = profile.special.tolist()
            texts = per[(profile.size,)] = tuple(
                clean_piece(text, tokenizer.unk_token) if not special[i] else "" for i, text in enumerate(profile.texts)
            )
        ids = [i for i, text in enumerate(texts) if text and any(p in text for p in phrases)]
        if len(per) > 16:  # the texts and the last ban lists
            for key in [k for k in per if len(k) == 2]:
                del per[key]
        found = per[(profile.size, phrases)] = (ids, len(ids) == sum(1 for text in texts if text))
        return found


class BeamBan:
    """Banned phrases as a logits processor for ``model.generate``'s beam search (see the
    module's docstring). It runs after every other processor, on the scores beam search ranks."""

    def __init__(self, ban: PhraseBan, prompt_len: int, num_beams: int):
        self.ban = ban
        self.prompt_len = prompt_len
        self.width = 2 * num_beams
        self.struck = 0
        """Tokens masked because they would complete a phrase with a hypothesis's text."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        ban = self.ban
        ban.apply(scores)
        width = min(self.width, scores.shape[-1])
        for b, row in enumerate(input_ids[:, self.prompt_len :].tolist()):
            checked: set[int] = set()
            while len(checked) < BAN_TRIES:
                values, ids = torch.topk(scores[b], width)
                fresh = [t for v, t in zip(values.tolist(), ids.tolist()) if v > -float("inf") and t not in checked]
                if not fresh:
                    break
                checked.update(fresh)
                bad = [t for t in fresh if ban.completes(row, t) is not None]
                if bad:
                    scores[b, bad] = -float("inf")
                    self.struck += len(bad)
            if ban.eos_id is not None and not bool(torch.isfinite(scores[b]).any()):
                scores[b, ban.eos_id] = FALLBACK_SCORE
        return scores


def _shared_start(a: str, b: str) -> int:
    """How many characters ``a`` and ``b`` share from their start."""
    n = min(len(a), len(b))
    return next((k for k in range(n) if a[k] != b[k]), n)


__all__ = ["BANNED_NOTE", "BAN_TRIES", "FALLBACK_SCORE", "BeamBan", "PhraseBan", "StopText", "cut_at_stop", "find_stop"]
