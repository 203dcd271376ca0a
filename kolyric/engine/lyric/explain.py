"""Why a row of the constraint state cannot go on, or stopped: the messages the report and the
logits processor give (``kolyric.engine.lyric.state`` mixes these in)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kolyric.engine.lyric.report import key_text
from kolyric.korean.rhyme import family_label

if TYPE_CHECKING:
    import torch

    from kolyric.engine.lyric.plan import Row
    from kolyric.engine.lyric.vocab_profile import Key


class ConstraintExplanations:
    """Mixed into ``ConstraintState``: it provides ``lines``, ``counted``, ``profile``, ``failures``,
    ``max_length``, ``window``, ``prompt_len``, ``spec`` and ``_key``."""

    def _where(self, row: Row) -> str:
        if row.line == -1:
            return "the break after the prompt line"
        line = self.lines[row.line]
        have = f", {row.count} of {line.target} syllables" if line.target is not None else ""
        return f"line {row.line + 1} of {len(self.lines)}{have}"

    def _rhyme(self, key: Key) -> str | None:
        """A rhyme to reach as the writer reads it: every vowel of its family (ㅐ/ㅔ)."""
        return family_label(key_text(key), self.spec.families)

    def explain(self, row: Row, mask: torch.Tensor) -> str:
        """Why no token may follow ``row``."""
        if bool(mask.any()):
            return (
                f"{self._where(row)}: every token that fits was ruled out by the other decoding controls "
                "(min_length, no_repeat_ngram_size …)"
            )
        j = row.line
        if j == -1 or (self.counted and row.count == self.lines[j].target and j + 1 < len(self.lines)):
            key = self._key(row, j + 1)  # the next line cannot start
            rhyme = f" (it must end on the rhyme {self._rhyme(key)})" if key else ""
            return f"{self._where(row)}: no token in the vocabulary can start line {j + 2}{rhyme}"
        key = self._key(row, j)
        rhyme = f" ending on the rhyme {self._rhyme(key)}" if key else ""
        return f"{self._where(row)}: no token in the vocabulary can continue the line{rhyme}"

    def _why(self, row: Row, tid: int, pos: int, seq: Sequence[int]) -> str:
        found = self.failures.get(tuple(seq[:pos]))
        if found:
            return found
        text = self.profile.texts[tid] if 0 <= tid < self.profile.size else "?"
        return (
            f"{self._where(row)}: token {text!r} breaks the constraint (forced, or kept by beam search "
            "after every allowed continuation was ruled out)"
        )

    def _stop_cause(self, generated: int) -> str:
        window = self.window
        if self.max_length is not None and generated >= self.max_length:
            return f"max_length ({self.max_length} new tokens) ran out"
        if window is not None and self.prompt_len + generated >= window:
            return f"the model's context window ({window} tokens) ran out"
        return "generation stopped early (cancelled, or the end token was forced)"


__all__ = ["ConstraintExplanations"]
