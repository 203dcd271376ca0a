"""Whole-word line ends for greedy and sampled decoding: a line-completing token is taken back
when the model would not end its word after it.

The rule is ``kolyric.engine.lyric.spec``'s (``WORD_END_MASS``): after the token that completes a
line's syllable count, the word-break tokens must hold at least half of the model's next-token
probability. The decoding loop (``kolyric.engine.stream``) runs it as a look-ahead that costs
nothing when the rule holds:

1. Every step, each row's choice is remembered (``Choice``): the ranking its token won
   (greedy: the processed scores; sampling: the exponential race's keys, in which the first of
   any set of tokens is a draw from the distribution restricted to that set) and the model's
   probabilities there.
2. A token that completes a line's count is held back from the stream.
3. The next step's forward pass, which decoding needs anyway, gives the distribution after it;
   ``WordEndSearch.resolve`` measures the rule there. A row that passes releases its token.
4. A row that fails takes its token back and walks down its ranking: the next tokens that
   would also complete the count are measured together, in one forward pass over copies of
   the row's KV cache (``sub_cache``), ``WORD_END_BATCH`` at first and twice as many each pass. The first in ranking
   order that passes is chosen. A token ranked before any passing one that does not complete
   the count (a shorter token, a space) is chosen instead: the line goes on, and ends later.
   Sampling's ranking holds only the tokens top-k/top-p left; when none of them will do, the
   search goes on down the model's own ranking of every token the constraint allows
   (``Choice.fallback``), as greedy's does.
5. After ``WORD_END_TRIES`` tokens measured on one line, or when the ranking has nothing left,
   the row keeps the ending it tried that was most likely to end its word, and the constraint
   report marks the line ``ends mid-word``.

Beam search (``model.generate``) cannot take a step back; it looks ahead instead
(``BeamLookAhead``): a forward hook keeps the KV cache of the step just run, and at each step
the constraint processor measures the continuations that would become its running hypotheses
(the ``num_beams`` best over all hypotheses that do not end) and complete a line's count, in one
forward pass over copies of their cache rows. One that fails the rule is penalised
(``WORD_PENALTY``), so the search keeps it only when nothing else is left; the continuations
that move up are measured in turn, within ``BEAM_SCREEN`` candidates a step.

When a row's token changes, the loop crops the KV cache by one position (``kv_cache.crop_cache``) and
redoes the step's forward pass; the rows that kept their tokens feed the same token again and
keep the logits they had. Tokens forced by a branch (``forced_ids``) are measured, never taken
back. In sampling the choice stays a draw: the first token of the race among those allowed
(passing, or not completing the line) is distributed as the model's probabilities restricted
to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from kolyric.engine.kv_cache import crop_cache, sub_cache
from kolyric.engine.lyric.spec import WORD_END_MASS, WORD_END_TRIES

if TYPE_CHECKING:
    import numpy as np
    import torch
    from transformers import PreTrainedModel
    from transformers.modeling_outputs import CausalLMOutputWithPast

    from kolyric.engine.kv_cache import Past
    from kolyric.engine.lyric.plan import Row
    from kolyric.engine.lyric.state import ConstraintState
    from kolyric.engine.results import TokenInfo
    from kolyric.engine.stream import Generator

    Ranking = np.ndarray | torch.Tensor
    """A row of scores or keys, NumPy on a CPU, torch elsewhere."""

WORD_END_BATCH = 4
"""Candidate endings measured in the first extra forward pass of a line end; each further pass
measures twice as many (the first choices usually include an ending that passes, while a hard
line end is searched deep at a few passes' cost)."""


@dataclass
class Choice:
    """How one row's token was chosen at one step: enough to choose again without it."""

    step: int
    keys: Ranking
    """The ranking, higher wins (a NumPy array or a torch tensor that nothing else reads):
    greedy's processed scores, or sampling's race keys."""
    ids: Ranking | None = None
    """Token ids of ``keys``' entries (NumPy or torch), or None: ``keys`` spans the vocabulary."""
    probs: torch.Tensor | None = None
    """The model's next-token probabilities at that step (a torch row)."""
    alternatives: tuple = ()
    """The model's top-5 there, as the loop reports it."""
    fallback: Ranking | None = None
    """Sampling: the scores before top-k/top-p/temperature over the whole vocabulary, ranked when
    ``keys`` has nothing left."""
    tried: dict[int, float] = field(default_factory=dict)
    """Tokens measured at this step, with their word-break probability."""
    settled: bool = False
    """The token in place is kept without another look (it passed, does not complete the line,
    or the tries are spent)."""
    banned: set[int] = field(default_factory=set)
    """Tokens struck because they would complete a banned phrase (``kolyric.engine.phrases``)."""

    def strike(self, token_id: int) -> None:
        import numpy as np

        if self.ids is None:
            if 0 <= token_id < self.keys.shape[-1]:
                self.keys[token_id] = -float("inf")
            return
        hit = self.ids == token_id
        if isinstance(self.keys, np.ndarray):
            self.keys[np.asarray(hit)] = -np.inf
        else:
            self.keys.masked_fill_(hit, -float("inf"))

    def widen(self) -> bool:
        """Rank the whole vocabulary (``fallback``) from now on, without the tokens tried; False
        when there is nothing wider."""
        if self.fallback is None:
            return False
        self.keys, self.ids, self.fallback = self.fallback, None, None
        for token_id in (*self.tried, *self.banned):
            self.strike(token_id)
        return True

    def ban(self, token_id: int) -> None:
        """Strike a token that would complete a banned phrase, for good (``widen`` too)."""
        self.banned.add(token_id)
        self.strike(token_id)

    def ranked(self, limit: int) -> list[int]:
        """The best ``limit`` token ids left, best first (ties: the lower index first)."""
        import numpy as np

        keys = self.keys
        if isinstance(keys, np.ndarray):
            limit = min(limit, keys.shape[0])
            if limit <= 0:
                return []
            top = np.argpartition(-keys, limit - 1)[:limit] if limit < keys.shape[0] else np.arange(keys.shape[0])
            top = top[np.lexsort((top, -keys[top]))]
            top = [int(j) for j in top if keys[j] > -np.inf]
        else:
            import torch

            limit = min(limit, keys.shape[0])
            values, top = torch.topk(keys, limit) if limit > 0 else (keys[:0], keys[:0].long())
            top = [int(j) for j, v in zip(top.tolist(), values.tolist()) if v > -float("inf")]
        return top if self.ids is None else [int(self.ids[j]) for j in top]


Measure = Callable[[int, list[int]], list[float]]
"""measure(row, tokens): the word-break probability after each token put in place of the row's
last one."""


class WordEndSearch:
    """Per generation: each row's last choice and the endings measured on its current line."""

    def __init__(
        self,
        rows: int,
        completes: Callable[[int, int], bool],
        tries: int = WORD_END_TRIES,
        batch: int = WORD_END_BATCH,
        threshold: float | None = None,
        allowed: Callable[[int, int], bool] | None = None,
    ):
        self.completes = completes
        """completes(row, token): whether the token, in place of the row's last, completes the line's count."""
        self.allowed = allowed
        """allowed(row, token): whether the token may take the row's last place at all (None: any
        token; banned phrases say no, ``kolyric.engine.phrases``)."""
        self.tries, self.batch = tries, batch
        self.threshold = WORD_END_MASS if threshold is None else threshold
        self.choices: list[Choice | None] = [None] * rows
        self._spent = [0] * rows
        self._line = [-2] * rows
        self.taken_back = 0
        """Tokens taken back in this generation."""
        self.measured = 0
        """Candidate endings measured in extra forward passes."""

    def remember(self, i: int, choice: Choice | None) -> None:
        """Row ``i``'s token of this step was chosen so (None: it was forced)."""
        self.choices[i] = choice

    def resolve(self, i: int, token_id: int, mass: float, line: int, measure: Measure) -> int | None:
        """Row ``i``'s last token ``token_id`` completed line ``line``'s count, and the word-break
        tokens hold ``mass`` of the distribution after it: None to keep it, else the token to
        put in its place."""
        choice = self.choices[i]
        if self._line[i] != line:
            self._line[i], self._spent[i] = line, 0
        if choice is None or choice.settled or mass >= self.threshold:
            return None
        choice.tried[token_id] = mass
        choice.strike(token_id)
        batch = self.batch
        while self._spent[i] < self.tries:
            endings, other = [], None
            size = min(batch, self.tries - self._spent[i])
            batch *= 2
            for t in choice.ranked(size + 1):
                if self.allowed is not None and not self.allowed(i, t):
                    choice.ban(t)
                    continue
                if not self.completes(i, t):
                    other = t  # goes on with the line: allowed, and ranked before what follows
                    break
                if len(endings) == size:
                    break
                endings.append(t)
            masses = measure(i, endings) if endings else []
            self._spent[i] += len(endings)
            self.measured += len(endings)
            for t, m in zip(endings, masses):
                choice.tried[t] = m
                choice.strike(t)
                if m >= self.threshold:
                    return self._settle(choice, t)
            if other is not None:
                return self._settle(choice, other)
            if not endings and not choice.widen():
                break  # the ranking has nothing left
        kept = max(choice.tried, key=choice.tried.__getitem__)  # the likeliest word end tried
        choice.settled = True
        return None if kept == token_id else self._settle(choice, kept)

    def _settle(self, choice: Choice, token_id: int) -> int:
        choice.settled = True
        self.taken_back += 1
        return token_id


BEAM_SCREEN = 48
"""Candidate endings beam search measures per step, at most."""


class BeamLookAhead:
    """The whole-word look-ahead inside ``model.generate``'s beam search (see the module's
    docstring). ``attach`` registers the forward hook; ``detach`` removes it.

    Only what beam search can choose is measured: the continuations that become its ``keep``
    (num_beams) running hypotheses, the best by running score that do not end (beam search
    picks them among its 2 x num_beams best). The processor runs last, so each
    hypothesis's running score is its parent's plus the score the parent's row gave its last
    token at the previous step, which this keeps (rows holding the same sequence, as at the
    first step, count once).
    """

    def __init__(self, state: ConstraintState, model: PreTrainedModel, cache_name: str, keep: int):
        self.state = state
        self.model = model
        self.cache_name = cache_name
        self.keep = keep
        self.cache: Past | None = None
        self.measured = 0
        self._busy = False
        self._handle: torch.utils.hooks.RemovableHandle | None = None
        self._running: dict[tuple[int, ...], float] = {}
        self._rows: dict[tuple[int, ...], torch.Tensor] = {}

    def attach(self) -> BeamLookAhead:
        def hook(module: torch.nn.Module, args: tuple, output: CausalLMOutputWithPast) -> None:
            if not self._busy:  # the look-ahead's own passes are not generate's
                self.cache = getattr(output, self.cache_name, None)

        self._handle = self.model.register_forward_hook(hook)
        return self

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.cache = None
        self._running, self._rows = {}, {}

    def screen(self, gens: list[tuple[int, ...]], rows: list[Row], scores: torch.Tensor, penalty: float) -> None:
        """Measure the line-completing continuations beam search could choose (``scores``: each
        hypothesis's processed log-probabilities, changed in place) and penalise those that fail
        the rule, until the ones it could choose pass or do not complete a line."""
        import torch

        state = self.state
        unique = list({g: b for b, g in reversed(list(enumerate(gens)))}.values())
        running = [self._score_of(gens[b]) for b in unique]
        if self.cache is not None and state.whole_words and any(state.line_open(rows[b]) for b in unique):
            self._screen(gens, rows, scores, penalty, unique, torch.tensor(running, device=scores.device))
        self._running = {gens[b]: r for b, r in zip(unique, running)}
        self._rows = {gens[b]: scores[b] for b in unique}

    def _score_of(self, gen: tuple[int, ...]) -> float:
        parent = gen[:-1]
        row = self._rows.get(parent)
        if not gen or row is None:
            return 0.0
        return self._running[parent] + float(row[gen[-1]])

    def _screen(
        self,
        gens: list[tuple[int, ...]],
        rows: list[Row],
        scores: torch.Tensor,
        penalty: float,
        unique: list[int],
        running: torch.Tensor,
    ) -> None:
        import torch

        state = self.state
        length = len(gens[0]) + state.prompt_len
        width = scores.shape[-1]
        seen: set[tuple[int, int]] = set()
        budget = BEAM_SCREEN
        while budget > 0:
            totals = (scores[unique] + running.unsqueeze(1)).reshape(-1)
            values, flat = torch.topk(totals, min(2 * self.keep, totals.shape[0]))
            todo, kept = [], 0
            for value, index in zip(values.tolist(), flat.tolist()):
                b, t = unique[index // width], index % width
                if value == -float("inf") or kept == self.keep:
                    break
                if t == state.eos:  # a finished hypothesis: it does not take a running beam's place
                    continue
                kept += 1
                if (b, t) not in seen and state.completes_after(gens[b], rows[b], t):
                    todo.append((b, t))
            if not todo:
                return
            todo = todo[:budget]
            seen.update(todo)
            budget -= len(todo)
            self._busy = True
            try:
                past = sub_cache(self.cache, [b for b, _ in todo], length)
                ids = torch.tensor([t for _, t in todo], dtype=torch.long, device=scores.device).unsqueeze(1)
                mask = torch.ones((len(todo), length + 1), dtype=torch.long, device=scores.device)
                out = self.model(input_ids=ids, attention_mask=mask, use_cache=True, **{self.cache_name: past})
            finally:
                self._busy = False
            masses = state.word_end_mass(torch.softmax(out.logits[:, -1, :].float(), dim=-1))
            self.measured += len(todo)
            failed = False
            for (b, t), mass in zip(todo, masses):
                state.word_masses[gens[b] + (t,)] = mass
                if mass < WORD_END_MASS:
                    scores[b, t] -= penalty
                    failed = True
            if not failed:  # nothing moved: what beam search can choose is measured
                return


def take_back(
    gen: Generator,
    search: WordEndSearch,
    state: ConstraintState,
    seqs: torch.Tensor,
    logits: torch.Tensor,
    raw_probs: torch.Tensor,
    past: Past,
    forward: Callable[..., CausalLMOutputWithPast],
    attention: torch.Tensor,
    tokens: list[list[TokenInfo]],
    finish: list[str],
) -> Past:
    """The whole-word rule for the rows whose last token completed a line's count, measured
    on this step's distribution (``kolyric.engine.lyric.lookahead``). A row that fails gets another
    token in that place, and the step is redone with the KV cache cropped by one position.
    ``seqs``, ``logits``, ``raw_probs`` and ``tokens`` are updated in place; the cache is
    returned."""
    import torch

    length = seqs.shape[1] - 1  # the positions before the tokens looked at

    def measure(i: int, candidates: list[int]) -> list[float]:
        rows = sub_cache(past, [i] * len(candidates), length)
        ids = torch.tensor(candidates, dtype=torch.long, device=seqs.device).unsqueeze(1)
        out = forward(
            input_ids=ids,
            attention_mask=attention[i : i + 1].expand(len(candidates), -1),
            use_cache=True,
            **gen.forward_kwargs(rows),
        )
        masses = state.word_end_mass(torch.softmax(out.logits[:, -1, :].float(), dim=-1))
        for t, mass in zip(candidates, masses):
            state.word_masses[state.generated(i)[:-1] + (t,)] = mass
        return masses

    while True:
        waiting = [i for i in range(len(finish)) if not finish[i] and state.needs_word_end(i)]
        if not waiting:
            return past
        redo = {}
        for i, mass in zip(waiting, state.word_end_mass(raw_probs[waiting])):
            state.word_masses[state.generated(i)] = mass
            other = search.resolve(i, int(seqs[i, -1]), mass, state.line_of(i), measure)
            if other is not None:
                redo[i] = other
        if not redo:
            return past
        past = crop_cache(past, length)
        for i, tid in redo.items():
            seqs[i, -1] = tid
            choice = search.choices[i]
            tokens[i][-1] = replace(
                tokens[i][-1],
                token_id=tid,
                text=gen.token_text(tid),
                prob=float(choice.probs[tid]),
                alternatives=choice.alternatives,
            )
        state.advance(seqs)
        # every row feeds its last token again (the same one, but for the rows redone); the
        # rows not redone keep the logits they had, so no row's result depends on another's
        out = forward(input_ids=seqs[:, -1:], attention_mask=attention, use_cache=True, **gen.forward_kwargs(past))
        past = getattr(out, gen.cache_name)
        idx = list(redo)
        fresh = out.logits[idx, -1, :].float()
        logits[idx] = fresh
        raw_probs[idx] = torch.softmax(fresh, dim=-1)


__all__ = ["BEAM_SCREEN", "WORD_END_BATCH", "BeamLookAhead", "Choice", "Measure", "WordEndSearch", "take_back"]
