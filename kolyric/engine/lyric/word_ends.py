"""The whole-word rule on the constraint state's side: which rows await a word end, its measure,
and its verdict in the report.

The rule (``kolyric.engine.lyric.spec``): after the token that completes a counted line, the
word-break tokens must hold at least ``WORD_END_MASS`` of the model's next-token probability.
A row *awaits its word end* when its last token completed the current line's count; the next
step's distribution gives the measure (``word_end_mass``), recorded per token sequence
(``word_masses``) so the report can judge each line. ``ConstraintState`` mixes this in; the
search that acts on it is ``kolyric.engine.lyric.lookahead``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kolyric.engine.lyric.report import LineReport
from kolyric.engine.lyric.spec import WORD_END_MASS

if TYPE_CHECKING:
    import torch

    from kolyric.engine.lyric.plan import Row


class WordEndRule:
    """Mixed into ``ConstraintState``: it provides ``whole_words``, ``profile``, ``lines``,
    ``word_masses``, ``_break_vectors``, ``_current``, ``_gens``, ``step`` and ``state_for``."""

    def awaiting_word_end(self, row: Row, length: int) -> bool:
        """Whether the last of ``length`` generated tokens completed the current line's count (and
        the rule applies): the next distribution decides whether that ends a word."""
        return (
            self.whole_words
            and length > 0
            and row.line >= 0
            and not (row.done or row.broken or row.ended)
            and len(row.word_ends) == row.line + 1
            and row.word_ends[-1] == length - 1
        )

    def word_end_mass(self, probs: torch.Tensor) -> list[float]:
        """The word-break tokens' share of each row of ``probs`` (rows of next-token probabilities)."""
        import torch

        width = probs.shape[-1]
        key = (str(probs.device), probs.dtype, width)
        vector = self._break_vectors.get(key)
        if vector is None:
            breaks = self.profile.word_break[:width]
            if breaks.shape[0] < width:
                breaks = torch.cat([breaks, breaks.new_zeros(width - breaks.shape[0])])
            vector = self._break_vectors[key] = breaks.to(device=probs.device, dtype=probs.dtype)
        return (probs @ vector).tolist()

    def needs_word_end(self, i: int) -> bool:
        """``awaiting_word_end`` for row ``i`` of the decoding loop's last ``advance``."""
        return i < len(self._current) and self.awaiting_word_end(self._current[i], len(self._gens[i]))

    def line_open(self, row: Row) -> bool:
        """Whether a counted line is being written, its count not yet complete (the rule applies)."""
        return (
            self.whole_words
            and row.line >= 0
            and not (row.done or row.broken or row.ended)
            and row.count < (self.lines[row.line].target or 0)
        )

    def completes_after(self, gen: tuple[int, ...], row: Row, token_id: int) -> bool:
        """Whether ``token_id`` after ``gen`` (whose state is ``row``) completes the line's count."""
        seq = gen + (int(token_id),)
        return self.awaiting_word_end(self.step(row, int(token_id), len(gen), seq), len(seq))

    def completes_line(self, i: int, token_id: int) -> bool:
        """Whether ``token_id`` in place of row ``i``'s last token completes the line's count
        (and awaits its word end)."""
        parent = self._gens[i][:-1]
        seq = parent + (int(token_id),)
        row = self.step(self.state_for(parent), int(token_id), len(parent), seq)
        return self.awaiting_word_end(row, len(seq))

    def check_word_end(self, line: LineReport, pos: int, ids: list[int]) -> None:
        """The whole-word rule on a finished line, from the probability measured after its last token."""
        if pos < 0:
            return
        mass = self.word_masses.get(tuple(ids[: pos + 1]))
        line.word_end = None if mass is None else round(mass, 4)
        if not self.whole_words or mass is None or mass >= WORD_END_MASS:
            return
        words = line.text.split()
        last = words[-1] if words else line.text
        problem = (
            f"ends mid-word on {last!r}: after it the model gives a word break {mass:.0%}, under the "
            f"{WORD_END_MASS:.0%} the whole-word rule asks (no ending of this line that meets it was found)"
        )
        line.ok = False
        line.problem = f"{line.problem}; {problem}" if line.problem else problem


__all__ = ["WordEndRule"]
