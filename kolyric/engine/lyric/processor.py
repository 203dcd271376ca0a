"""The constraint logits processor: every token that would break a lyric constraint is masked.

A transformers-style processor over whole sequences (prompt included), one row per candidate or
beam, for kolyric's own decoding loop and ``model.generate``'s beam search alike. The masks come
from the rows' states (``kolyric.engine.lyric.state``); in beam search it also applies the
whole-word rule, since no step can be taken back there (``kolyric.engine.lyric.lookahead``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kolyric.engine.lyric.spec import WORD_END_MASS

if TYPE_CHECKING:
    import torch

    from kolyric.engine.lyric.lookahead import BeamLookAhead
    from kolyric.engine.lyric.plan import Row
    from kolyric.engine.lyric.state import ConstraintState

FALLBACK_SCORE = -1e4  # the end token's score when nothing else may follow: finite, but a last resort
WORD_PENALTY = 1e3
"""Beam search: subtracted from every continuation of a hypothesis whose line ended inside a word,
so it is kept only when no other hypothesis is left (finite: never fewer beams than asked)."""


class ConstraintLogitsProcessor:
    """A transformers-style logits processor: ``scores`` with every disallowed token at -inf.

    ``input_ids`` are whole sequences (prompt included), one row per candidate or beam. A row
    with nothing left to choose gets only the end token, and its report says why.
    """

    def __init__(self, state: ConstraintState):
        self.state = state
        self._inverse: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.penalize_mid_word = False
        """Beam search: rank a hypothesis whose line ended inside a word below the others (the
        greedy and sampling loop takes such a token back instead; ``kolyric.engine.lyric.lookahead``)."""
        self.beam_look_ahead: BeamLookAhead | None = None
        """Beam search: a ``lookahead.BeamLookAhead`` that measures line endings before they are chosen."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        st = self.state
        gens = [tuple(r) for r in input_ids[:, st.prompt_len :].tolist()]
        rows = [st.state_for(g) for g in gens]
        masks = [st.mask_of(r) for r in rows]
        banned = [self._banned(m, scores) for m in masks]
        if all(b is banned[0] for b in banned):  # one state for every row (greedy, most beam steps)
            out = scores.masked_fill(banned[0], float("-inf"))
        else:
            out = scores.masked_fill(torch.stack(banned), float("-inf"))
        if self.penalize_mid_word and st.whole_words:
            self._penalize(gens, rows, scores, out)
            if self.beam_look_ahead is not None:
                self.beam_look_ahead.screen(gens, rows, out, WORD_PENALTY)
        dead = out.amax(dim=-1) == float("-inf")
        if bool(dead.any()):
            for i in dead.nonzero().flatten().tolist():
                if not (rows[i].done or rows[i].broken):
                    st.failures[gens[i]] = st.explain(rows[i], masks[i])
                eos_score = float(scores[i, st.eos])
                out[i] = float("-inf")
                out[i, st.eos] = eos_score if eos_score > FALLBACK_SCORE else FALLBACK_SCORE
        st.keep(gens, rows)
        return out

    def _penalize(self, gens: list[tuple[int, ...]], rows: list[Row], scores: torch.Tensor, out: torch.Tensor) -> None:
        """Where a row's last token completed a line, the rule's verdict: the measure the beam
        look-ahead took before the token was chosen, or else this step's; the rows that fail
        are penalised."""
        import torch

        waiting = [i for i, (g, r) in enumerate(zip(gens, rows)) if self.state.awaiting_word_end(r, len(g))]
        unmeasured = [i for i in waiting if gens[i] not in self.state.word_masses]
        if unmeasured:
            probs = torch.softmax(scores[unmeasured].float(), dim=-1)
            for i, mass in zip(unmeasured, self.state.word_end_mass(probs)):
                self.state.word_masses[gens[i]] = mass
        for i in waiting:
            if self.state.word_masses[gens[i]] < WORD_END_MASS:
                out[i] -= WORD_PENALTY

    def _banned(self, mask: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """The complement of a cached mask, fitted to the scores' width and device (memoised; the
        entry holds the mask itself, so its id stays unique)."""
        import torch

        found = self._inverse.get(id(mask))
        if found is None:
            banned = ~mask
            width = scores.shape[-1]
            if banned.shape[-1] > width:  # a model narrower or wider than the profile
                banned = banned[:width]
            elif banned.shape[-1] < width:
                banned = torch.cat([banned, banned.new_ones(width - banned.shape[-1])])
            if len(self._inverse) > 4096:
                self._inverse.clear()
            found = self._inverse[id(mask)] = (mask, banned.to(scores.device))
        return found[1]


__all__ = ["FALLBACK_SCORE", "WORD_PENALTY", "ConstraintLogitsProcessor"]
