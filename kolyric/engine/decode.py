"""One greedy or sampled generation, step by step: the state ``Generator._loop``
(``kolyric.engine.stream``) carries from token to token, and the steps it takes.

A step: follow a live settings change; stop at the length limit, the window or a cancel; one
forward pass over the rows' last tokens on the KV cache; settle the tokens held for the
whole-word rule (``kolyric.engine.lyric.lookahead``); choose each row's next token (forced,
greedy or drawn, never one completing a banned phrase: ``kolyric.engine.phrases``); append it
and stream the text it completes (held back while it could begin a stop string).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy

from kolyric.engine import processors as lean
from kolyric.engine import sampling
from kolyric.engine.chain import top_within
from kolyric.engine.lyric.lookahead import Choice, WordEndSearch, take_back
from kolyric.engine.next_token import NextToken
from kolyric.engine.phrases import BAN_TRIES, BANNED_NOTE, PhraseBan, StopText
from kolyric.engine.prompt import Detokenizer
from kolyric.engine.results import Alternative, DoneEvent, GenerationRequest, GenerationResult, TokenEvent, TokenInfo

if TYPE_CHECKING:
    import threading

    import numpy as np
    import torch

    from kolyric.engine.kv_cache import Past
    from kolyric.engine.lyric.state import ConstraintState
    from kolyric.engine.settings import DecodingSettings
    from kolyric.engine.stream import Generator, LiveControls

TOP_ALTERNATIVES = 5


@dataclass
class Picked:
    """Each row's token of one step, and how it was chosen."""

    ids: list[int]
    probs: list[float]
    """The model's probability of each row's token."""
    alternatives: list[tuple[Alternative, ...]]
    choices: list[Choice | None]
    """The ranking each token won, to choose again without it (None: forced, or not kept)."""
    forced: bool


class DecodeRun:
    """The state of one greedy or sampled generation (see the module's docstring)."""

    def __init__(self, gen: Generator, request: GenerationRequest, controls: LiveControls):
        import torch

        self.gen = gen
        self.request = request
        self.started = time.perf_counter()
        self.settings = controls.current
        self.version = controls.version
        device = gen.model.device
        self.max_new = gen.max_new_tokens(request, self.settings)
        self.window = gen.context_window  # read from the config once: ~20 µs a step otherwise
        prompt, self.prompt_text = gen.prompt_ids(request, self.max_new)
        self.rows = rows = self.settings.n if self.settings.strategy == "sample" else 1
        self.prompt_len = len(prompt)
        self.seqs = torch.tensor([prompt] * rows, dtype=torch.long, device=device)
        # on a CPU the sequences grow in a NumPy buffer the tensor views (no torch.cat a step)
        self.buffer: np.ndarray | None = None
        self.kept: np.ndarray | None = None
        """The step's logits before the processors (``NextToken.keep``), reused every step."""
        if device.type == "cpu":
            self.buffer = numpy.empty((rows, 2 * len(prompt) + 64), dtype=numpy.int64)
            self.buffer[:, : len(prompt)] = self.seqs.numpy()
        # One generator per candidate, seeded seed+i: candidate i is the same whether it is
        # sampled alone or in a batch, so a CLI, the app and the server agree.
        self.rngs = [
            torch.Generator(device=device).manual_seed((int(self.settings.seed) + i) % 2**32) for i in range(rows)
        ]
        self.constraints: ConstraintState | None = gen.constraints_for(request, self.prompt_len, self.max_new)
        self.procs = gen.processors(self.settings, self.prompt_len, self.constraints)
        self.lowers = _lowers_only(self.procs)
        self.bans = self._bans(self.settings)
        self.search = (
            WordEndSearch(rows, self.constraints.completes_line, allowed=self._allowed)
            if self.constraints is not None and self.constraints.whole_words
            else None
        )
        self.detok = [Detokenizer(gen.tokenizer, prompt, gen.unk_token) for _ in range(rows)]
        self.stops = [StopText(self.settings.stop, self.settings.keep_stop) for _ in range(rows)]
        self.pending: list[list[tuple[int, TokenInfo]]] = [[] for _ in range(rows)]
        """Per row: tokens whose text is held back while it could begin a stop string."""
        self.tokens: list[list[TokenInfo]] = [[] for _ in range(rows)]
        self.finish = [""] * rows
        self.notes: list[str | None] = [None] * rows
        self.held: list[tuple[int, bool] | None] = [None] * rows
        """A line-completing token not yet streamed: (its step, whether it starts a line)."""
        self.forced = list(request.forced_ids)
        self.past: Past | None = None
        self.ones = torch.ones((rows, 0), dtype=torch.long, device=device)
        self.ones_view: np.ndarray | None = None
        self.step_input = self.seqs
        self.step = 0
        self.redone = False
        """Whether this step's look-ahead may have replaced a token (``chain.StepCache.given``)."""

    # -- the steps ---------------------------------------------------------------------------------
    def follow(self, controls: LiveControls) -> None:
        """A live settings change applies from this token on (the seed, count and strategy stay)."""
        if controls.version == self.version:
            return
        new, old = controls.current, self.settings
        self.settings = replace(
            new, seed=old.seed, n=old.n, strategy=new.strategy if new.strategy != "beam" else old.strategy
        )
        self.version = controls.version
        self.procs = self.gen.processors(self.settings, self.prompt_len, self.constraints)
        self.lowers = _lowers_only(self.procs)
        self.max_new = self.gen.max_new_tokens(self.request, self.settings)
        if self.constraints is not None:
            self.constraints.max_length = self.max_new
        if self.settings.ban != old.ban:
            self.bans = self._bans(self.settings)
        for stop in self.stops:
            stop.watch(self.settings.stop, self.settings.keep_stop)

    def over(self, cancel: threading.Event) -> bool:
        """Whether every row ends here: the length limit, the model's window, or a cancel."""
        reason = (
            "length"
            if self.step >= self.max_new or self.step >= self.window - self.prompt_len
            else "cancelled"
            if cancel.is_set()
            else ""
        )
        if reason:
            self.finish = [f or reason for f in self.finish]
        return bool(reason) or all(self.finish)

    def forward(self) -> tuple[torch.Tensor, NextToken]:
        """One forward pass over the rows' last tokens on the KV cache: the next-token logits
        (float32) and the model's distribution (its full probabilities only where the whole-word
        look-ahead reads them)."""
        import torch

        length = self.prompt_len + self.step
        if self.ones.shape[1] < length:  # one mask of ones, grown by doubling, sliced per step
            self.ones = torch.ones((self.rows, 2 * length), dtype=torch.long, device=self.seqs.device)
            self.ones_view = self.ones.numpy() if self.buffer is not None else None
        # a NumPy slice's view costs a step less than torch's ``narrow``
        self.attention = (
            torch.from_numpy(self.ones_view[:, :length])
            if self.ones_view is not None
            else self.ones.narrow(1, 0, length)
        )
        # int8 on CPU may run decoding steps on ONNX Runtime (kolyric.engine.quantize)
        self.model_forward = getattr(self.gen.model, "kolyric_decoder", None) or self.gen.model
        out = self.model_forward(
            input_ids=self.step_input,
            attention_mask=self.attention,
            use_cache=True,
            **self.gen.forward_kwargs(self.past),
        )
        self.past = getattr(out, self.gen.cache_name)
        top = getattr(out, "kolyric_next", None)
        if top is not None and top.last is not None and top.last.shape[0] == self.rows:
            # the graph's float32 output as it is: no torch call to select its last position
            logits = torch.from_numpy(top.last)
            return logits, NextToken(logits, top, full=self.search is not None, view=top.last)
        logits = out.logits.select(1, -1)  # one call: indexing with slices parses each
        if logits.dtype != torch.float32:
            logits = logits.float()
        return logits, NextToken(logits, top, full=self.search is not None)

    def settle_held(self, logits: torch.Tensor, dist: NextToken) -> Iterator[TokenEvent]:
        """Whole words: each held line-completing token is kept, or taken back and replaced, now
        that the distribution after it is known; then it is streamed."""
        if all(h is None for h in self.held):
            return
        self.redone = True  # a token may be replaced: the processors compare the sequences again
        self.past = take_back(
            self.gen,
            self.search,
            self.constraints,
            self.seqs,
            logits,
            dist.probs,
            self.past,
            self.model_forward,
            self.attention,
            self.tokens,
            self.finish,
        )
        for i in range(self.rows):
            yield from self._release(i)

    def choose(self, logits: torch.Tensor, dist: NextToken) -> Picked:
        """Each row's next token: forced, greedy or drawn, none completing a banned phrase. The
        processors may change ``logits`` in place: it is not used after this."""
        settings, procs, seqs = self.settings, self.procs, self.seqs
        # the inspector's k (1-20) as lists, read before the processors change the logits
        top_ps, top_ids = dist.alternatives(settings.alternatives)
        ranked = self.search is not None or self.bans is not None  # keep each row's ranking
        keys: np.ndarray | torch.Tensor | None = None
        races: list | None = [] if ranked else None
        forced = self.step < len(self.forced)
        plain = not len(procs) and self.bans is None  # nothing changes the logits
        # the raw top entries bound the processed scores' top-k while no processor raises a score
        procs.cache.bound = bound = dist.bound() if self.lowers else None
        greedy = settings.strategy == "greedy" or sampling.acts_greedy(settings, logits)
        # a chain that ranks the bound alone leaves the logits as they are: nothing to keep
        untouched = (
            bound is not None
            and not ranked
            and not forced
            and (procs.base.lowers_on_pool if greedy else procs.leaves_scores())
        )
        if not plain and not untouched:
            view = dist.view
            if view is not None and (self.kept is None or self.kept.shape != view.shape):
                self.kept = numpy.empty_like(view)
            dist.keep(self.kept)
        procs.cache.seed_view(logits, dist.view)
        # the sequences as NumPy, and whether they only grew by the last step's tokens
        length = self.prompt_len + self.step
        grown, self.redone = not self.redone and self.step > 0, False
        procs.cache.given = (seqs, self.buffer[:, :length].copy(), grown) if self.buffer is not None else None
        if self.bans is not None:
            self.bans.apply(logits)
        if forced:
            next_ids = [self.forced[self.step]] * self.rows
        elif plain and settings.strategy == "greedy" and dist.top_ids() is not None:
            next_ids = dist.top_ids()  # the graph's top logit is argmax's choice
        elif greedy:
            # the first maximum of each row, as torch's argmax (NaN counts as the maximum): from
            # the bound alone where it can be, else over the row (a copy, where nothing was kept)
            found = procs.base.lowered_top(seqs, logits, 1) if untouched else None
            if found is None:
                scores = procs.base(seqs, logits.clone() if untouched else logits) if len(procs) else logits
                view = lean.numpy_view(scores)
                found = top_within(view, bound, 1) if bound is not None and view is not None else None
            if found is not None:
                next_ids = found[1][:, 0].tolist()
            else:
                next_ids = view.argmax(axis=-1).tolist() if view is not None else lean.argmax(scores)
            if ranked:
                keys = view if view is not None else scores
        elif ranked:  # the warpers leave the scores before them as they are
            base = procs.base(seqs, logits)
            next_ids = self.gen.sample(procs.warpers, seqs, base, settings, self.rngs, races)
            view = lean.numpy_view(base)
            base = view if view is not None else base
            races = [(pool, race, base[i]) for i, (pool, race) in enumerate(races)]
        else:
            next_ids = self.gen.sample(procs, seqs, logits, settings, self.rngs)
        ids = next_ids if isinstance(next_ids, list) else next_ids.tolist()
        text = self.gen.token_text
        alternatives = [
            tuple(Alternative(a, text(a), p) for a, p in zip(top_ids[i], top_ps[i])) for i in range(self.rows)
        ]
        choices: list[Choice | None] = [None] * self.rows
        for i in range(self.rows):
            if forced or not ranked:
                continue
            if keys is not None:
                choices[i] = Choice(self.step, keys[i], None, dist.row(i), alternatives[i])
            else:
                pool, race, fallback = races[i] if races else (None, None, None)
                if pool is not None:
                    choices[i] = Choice(self.step, race, pool, dist.row(i), alternatives[i], fallback=fallback)
        for i in range(self.rows):
            if self.finish[i]:
                ids[i] = self.gen.pad_id
            elif self.bans is not None and not forced:
                ids[i] = self._unbanned(i, ids[i], choices[i])
        probs = [dist.prob(i, t) for i, t in enumerate(ids)]
        return Picked(ids, probs, alternatives, choices, forced)

    def append(self, picked: Picked) -> Iterator[TokenEvent]:
        """The chosen tokens join the sequences (and the constraint state); each row streams
        what its token completes, or holds it for the whole-word rule."""

        gen, state, search = self.gen, self.constraints, self.search
        self._grow(picked.ids)
        if state is not None:
            state.advance(self.seqs)
        for i in range(self.rows):
            if self.finish[i]:
                continue
            tid = picked.ids[i]
            info = TokenInfo(tid, gen.token_text(tid), picked.probs[i], picked.alternatives[i])
            self.tokens[i].append(info)
            if tid == gen.eos_id:
                self.finish[i] = "eos"
                continue
            if search is not None:  # how it was chosen, to choose again without it (not forced)
                search.remember(i, picked.choices[i])
            new_line = state is not None and state.starts_line(i)
            if search is not None and state.needs_word_end(i):
                self.held[i] = (self.step, new_line)  # streamed once the next step says it ends its word
                continue
            if state is not None and state.row_finished(i):
                self.finish[i] = "constraint"
            yield from self._push(i, self.step, info, new_line)
        self.step += 1

    def done(self) -> Iterator[TokenEvent | DoneEvent]:
        """The tokens still held or held back are streamed as they are; then the result."""
        for i in range(self.rows):
            yield from self._release(i)
            yield from self._emit(i, self.stops[i].flush())
        gen = self.gen
        elapsed = time.perf_counter() - self.started
        candidates = []
        for i in range(self.rows):
            ids = [t.token_id for t in self.tokens[i] if t.token_id != gen.eos_id]
            state = self.constraints
            report = state.report(i, self.seqs[i, self.prompt_len :].tolist()) if state is not None else None
            candidate = gen.candidate(
                self.request, ids, self.tokens[i], self.finish[i] or "length", report, self.settings
            )
            candidate.note = self.notes[i]
            candidates.append(candidate)
        new_tokens = sum(len(t) for t in self.tokens)
        yield DoneEvent(
            GenerationResult(candidates, self.settings, self.prompt_text, self.prompt_len, elapsed, new_tokens)
        )

    # -- helpers -----------------------------------------------------------------------------------
    def _grow(self, ids: list[int]) -> None:
        """The rows' new tokens join the sequences (and are the next step's input)."""
        import torch

        buffer = self.buffer
        if buffer is None:
            column = torch.tensor([[t] for t in ids], dtype=torch.long, device=self.seqs.device)
            self.seqs = torch.cat([self.seqs, column], dim=1)
            self.step_input = column
            return
        length = self.seqs.shape[1]
        if length == buffer.shape[1]:
            self.buffer = buffer = numpy.concatenate([buffer, numpy.empty_like(buffer)], axis=1)
        column = buffer[:, length]
        column[:] = ids
        self.seqs = torch.from_numpy(buffer[:, : length + 1])
        self.step_input = torch.from_numpy(column.reshape(-1, 1).copy())

    def _bans(self, settings: DecodingSettings) -> PhraseBan | None:
        gen = self.gen
        return PhraseBan(settings.ban, gen.tokenizer, gen.vocab_size, gen.eos_id) if settings.ban else None

    def _allowed(self, i: int, token_id: int) -> bool:
        """Whether ``token_id`` may replace row ``i``'s last token (it completes no banned phrase)."""
        return self.bans is None or self.bans.completes(self.seqs[i, self.prompt_len : -1].tolist(), token_id) is None

    def _unbanned(self, i: int, token_id: int, choice: Choice | None) -> int:
        """Row ``i``'s token, or when it would complete a banned phrase the next one down its
        ranking that does not; the end token (the row ends "banned") when none is left."""
        bans = self.bans
        generated = self.seqs[i, self.prompt_len :].tolist()
        # no ranking (a sampled row with no token left) or a greedy pick among none: nothing to choose
        nothing = choice is None or (choice.ids is None and not float(choice.keys[token_id]) > -float("inf"))
        phrase = None if bans.empties or nothing else bans.completes(generated, token_id)
        if phrase is None and not (bans.empties or nothing):
            return token_id
        found, size = None, 8
        if phrase is not None:
            choice.ban(token_id)
            while found is None and len(choice.banned) < BAN_TRIES:
                ranked = choice.ranked(size)
                size *= 2
                if not ranked:
                    if choice.widen():
                        continue
                    break
                for t in ranked:
                    if bans.completes(generated, t) is None:
                        found = t
                        break
                    choice.ban(t)
        if found is not None:
            return found
        self.finish[i] = "banned"
        self.notes[i] = BANNED_NOTE + (f" (last tried: {phrase!r})" if phrase else "") + "; the candidate ends here"
        return self.gen.pad_id

    def _release(self, i: int) -> Iterator[TokenEvent]:
        """Stream row ``i``'s held token (the one in place after the look-ahead), if any."""
        if self.held[i] is None:
            return
        step, new_line = self.held[i]
        self.held[i] = None
        info = self.tokens[i][-1]
        if info.token_id == self.gen.eos_id:  # chosen in place of a token that did not end its word
            self.finish[i] = "eos"
            return
        if self.constraints.row_finished(i):
            self.finish[i] = self.finish[i] or "constraint"
        yield from self._push(i, step, info, new_line)

    def _push(self, i: int, step: int, info: TokenInfo, new_line: bool) -> Iterator[TokenEvent]:
        """Row ``i``'s token text into its stream; what the stop strings let through is released."""
        self.pending[i].append((step, info))
        yield from self._emit(i, self.stops[i].push(self.detok[i].push(info.token_id, new_line)))
        if self.stops[i].stopped:
            self.finish[i] = "stop"

    def _emit(self, i: int, pieces: list[str]) -> Iterator[TokenEvent]:
        """Events for row ``i``'s first pending tokens, with these texts."""
        for (step, info), piece in zip(self.pending[i], pieces):
            yield TokenEvent(i, step, piece, info, "\n" in piece)
        del self.pending[i][: len(pieces)]


def _lowers_only(procs: lean.ProcessorChain) -> bool:
    """Whether no processor before sampling's top-k (or greedy's argmax) raises a score, so
    the raw logits' top entries bound what they look for (``chain.StepCache.bound``)."""
    warpers = procs.warpers
    return all(getattr(p, "lowers_only", False) for p in procs.base) and (
        not len(warpers) or isinstance(warpers[0], lean.TopK)
    )


__all__ = ["TOP_ALTERNATIVES", "DecodeRun", "Picked"]
