"""Streaming generation: a line and a polarity in, text pieces out, token by token.

``Generator.stream`` runs its own decoding loop over the model's forward pass with a KV
cache instead of ``model.generate``: the loop must check a cancel flag every step, pick up a
settings change from the next token, report each token's top-5 alternatives, and let lyric
constraints see every step. The logits processing is transformers' processors and warpers, in
the order ``generate`` applies them, except where an exact equivalent in
``kolyric.engine.processors`` was measured to be much cheaper (repetition penalty, no-repeat
n-grams, minimum length, top-k/top-p): with int8 weights a step's forward pass takes ~6 ms on a
CPU and the rest of the step must stay under 10% of it.

Greedy and sampling stream token by token (several sampled candidates run as one batch).
Beam search runs through ``model.generate`` and emits its tokens when the search ends:
beams are re-ranked until the last step, so a streamed "best beam" would rewrite itself.

Pieces never split a character: text is released only up to the last complete character
(a byte-level token can hold part of a syllable's UTF-8 bytes). Line breaks are text: a
vocabulary with ``\n``/``\n\n`` tokens streams its lines as it writes them, and each event says
whether its piece breaks a line (``TokenEvent.line_break``); lines that a constraint separates in
a vocabulary with no newline token are streamed as lines too, as the final text shows them.

Under a syllable count, lines end on whole words (``kolyric.engine.lyric.spec``): greedy and
sampling hold a line-completing token back until the next step's distribution says the model
would end its word there, and take it back otherwise (``kolyric.engine.lyric.lookahead``).

A constrained request with no explicit ``max_length`` gets one that fits its lines
(``LyricConstraints.length_budget``, within the model's window) instead of running out.
"""

from __future__ import annotations

import inspect
import secrets
import threading
import time
from dataclasses import replace
from typing import Any, Iterator

from kolyric.engine import processors as lean
from kolyric.engine import sampling
from kolyric.engine.lyric.lookahead import Choice, WordEndSearch, take_back
from kolyric.engine.lyric.report import ConstraintReport
from kolyric.engine.lyric.spec import LyricConstraints
from kolyric.engine.lyric.state import ConstraintState
from kolyric.engine.prompt import Detokenizer, clean_output, clean_piece, line_separator, normalize_polarity, \
    prefix_text, prompt_body
from kolyric.engine.results import Alternative, Candidate, DoneEvent, GenerationRequest, GenerationResult, \
    TokenEvent, TokenInfo
from kolyric.engine.settings import DecodingSettings

TOP_ALTERNATIVES = 5


class LiveControls:
    """Settings a UI may change while a stream runs; the loop reads them before each token."""

    def __init__(self, settings: DecodingSettings):
        self._lock = threading.Lock()
        self._settings = settings
        self.version = 0

    def update(self, settings: DecodingSettings) -> None:
        with self._lock:
            self._settings = settings
            self.version += 1

    @property
    def current(self) -> DecodingSettings:
        with self._lock:
            return self._settings


class Generator:
    """Generation over one loaded model. One stream at a time per instance (a lock enforces it)."""

    def __init__(self, loaded: Any):
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self._lock = threading.Lock()
        self._separator = line_separator(self.tokenizer)
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_id
        self.unk_token = self.tokenizer.unk_token
        self._token_text_cache: dict[int, str] = {}
        params = inspect.signature(self.model.forward).parameters
        self._cache_name = "cache" if "cache" in params else "past_key_values"
        self._logits_to_keep = "logits_to_keep" in params
        self.vocab_size = _output_size(self.model)
        """The model's output width (the constraint masks span it)."""

    # -- prompt ---------------------------------------------------------------------------------
    @property
    def context_window(self) -> int:
        config = self.model.config
        return int(getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", 1024))

    def prompt_ids(self, request: GenerationRequest, max_new: int) -> tuple[list[int], str]:
        """Token ids of prefix + context + line, trimmed from the oldest context to fit the window."""
        prefix = prefix_text(request.polarity)
        budget = max(1, self.context_window - max_new)
        context = list(request.context)
        while True:
            body = prompt_body(request.prompt, context, self._separator)
            text = prefix + body
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            if len(ids) <= budget or not context:
                break
            context.pop(0)  # drop the oldest line first
        if len(ids) > budget:  # a single line longer than the window: keep its end
            prefix_ids = self.tokenizer.encode(prefix, add_special_tokens=False) if prefix else []
            ids = prefix_ids + ids[len(prefix_ids):][-(budget - len(prefix_ids)):]
        if not ids:  # an empty prompt starts from the beginning-of-text token
            ids = [self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.eos_id]
        return ids, text

    # -- public API -------------------------------------------------------------------------------
    def generate(self, request: GenerationRequest, cancel: threading.Event | None = None,
                 controls: LiveControls | None = None) -> GenerationResult:
        result = None
        for event in self.stream(request, cancel=cancel, controls=controls):
            if isinstance(event, DoneEvent):
                result = event.result
        assert result is not None
        return result

    def stream(self, request: GenerationRequest, cancel: threading.Event | None = None,
               controls: LiveControls | None = None) -> Iterator[TokenEvent | DoneEvent]:
        """Yield a TokenEvent per generated token (per candidate), then one DoneEvent."""
        normalize_polarity(request.polarity)  # fail early with the field's message
        cancel = cancel or threading.Event()
        controls = controls or LiveControls(request.settings)
        settings = controls.current
        if settings.seed is None:  # report the seed used, so any result can be reproduced
            settings = replace(settings, seed=secrets.randbelow(2**32))
            controls.update(settings)
        with self._lock:
            if settings.strategy == "beam":
                yield from self._beam(request, settings, cancel)
            else:
                yield from self._loop(request, controls, cancel)

    # -- greedy and sampling ----------------------------------------------------------------------
    def _processors(self, settings: DecodingSettings, prompt_len: int, constraint_state: Any) -> Any:
        return sampling.processor_chain(settings, prompt_len, constraint_state, self.eos_id, self.tokenizer)

    def _max_new(self, request: GenerationRequest, settings: DecodingSettings) -> int:
        """The new-token limit: ``settings.max_length``, or for a constrained request whose
        max_length the user did not choose, what its lines need if that is more (within the
        window, leaving room for the prompt line itself)."""
        chosen = request.max_length_set
        if chosen is None:
            chosen = settings.max_length != DecodingSettings.__dataclass_fields__["max_length"].default
        if request.constraints is None or chosen:
            return settings.max_length
        line = prefix_text(request.polarity) + request.prompt.strip()
        room = self.context_window - max(1, len(self.tokenizer.encode(line, add_special_tokens=False)))
        return max(settings.max_length, min(request.constraints.length_budget(), room, 1024))

    def _loop(self, request: GenerationRequest, controls: LiveControls,
              cancel: threading.Event) -> Iterator[TokenEvent | DoneEvent]:
        import torch

        started = time.perf_counter()
        settings = controls.current
        version = controls.version
        device = self.model.device
        max_new = self._max_new(request, settings)
        prompt, prompt_text = self.prompt_ids(request, max_new)
        rows = settings.n if settings.strategy == "sample" else 1
        prompt_len = len(prompt)
        seqs = torch.tensor([prompt] * rows, dtype=torch.long, device=device)
        # One generator per candidate, seeded seed+i: candidate i is the same whether it is
        # sampled alone or in a batch, so a CLI, the app and the server agree.
        rngs = [torch.Generator(device=device).manual_seed((int(settings.seed) + i) % 2**32) for i in range(rows)]
        constraint_state = self._constraint_state(request, prompt_len, max_new)
        procs = self._processors(settings, prompt_len, constraint_state)
        search = (WordEndSearch(rows, constraint_state.completes_line)
                  if constraint_state is not None and constraint_state.whole_words else None)
        detok = [Detokenizer(self.tokenizer, prompt, self.unk_token) for _ in range(rows)]
        tokens: list[list[TokenInfo]] = [[] for _ in range(rows)]
        finish = [""] * rows
        held: list[tuple[int, bool] | None] = [None] * rows
        """A line-completing token not yet streamed: (its step, whether it starts a line)."""
        forced = list(request.forced_ids)
        past = None
        ones = torch.ones((rows, 0), dtype=torch.long, device=device)
        step_input = seqs
        step = 0
        with torch.inference_mode():
            while True:
                if controls.version != version:  # a live change applies from this token on
                    new = controls.current
                    settings = replace(new, seed=settings.seed, n=settings.n,
                                       strategy=new.strategy if new.strategy != "beam" else settings.strategy)
                    version = controls.version
                    procs = self._processors(settings, prompt_len, constraint_state)
                    max_new = self._max_new(request, settings)
                    if constraint_state is not None:
                        constraint_state.max_length = max_new
                if step >= max_new or step >= self.context_window - prompt_len:
                    for i in range(rows):
                        finish[i] = finish[i] or "length"
                    break
                if cancel.is_set():
                    for i in range(rows):
                        finish[i] = finish[i] or "cancelled"
                    break
                if ones.shape[1] < seqs.shape[1]:  # one mask of ones, grown by doubling, sliced per step
                    ones = torch.ones((rows, 2 * seqs.shape[1]), dtype=torch.long, device=device)
                attention = ones[:, :seqs.shape[1]]
                # int8 on CPU may run decoding steps on ONNX Runtime (kolyric.engine.quantize)
                forward = getattr(self.model, "kolyric_decoder", None) or self.model
                out = forward(input_ids=step_input, attention_mask=attention, use_cache=True,
                              **self._forward_kwargs(past))
                past = getattr(out, self._cache_name)
                logits = out.logits[:, -1, :].float()
                raw_probs = torch.softmax(logits, dim=-1)
                if any(h is not None for h in held):  # the look-ahead: do those tokens end their words?
                    past = take_back(self, search, constraint_state, seqs, logits, raw_probs, past, forward,
                                     attention, tokens, finish)
                    for i in range(rows):
                        yield from self._release(i, held, tokens, detok, finish, constraint_state)
                top_ps, top_ids = lean.top_k(raw_probs, TOP_ALTERNATIVES)
                # the processors may change ``logits`` in place: it is not used after this
                keys: Any = None
                races: list | None = [] if search is not None else None
                is_forced = step < len(forced)
                if is_forced:
                    next_ids = torch.full((rows,), forced[step], dtype=torch.long, device=device)
                elif settings.strategy == "greedy" or sampling.acts_greedy(settings, logits):
                    scores = procs.base(seqs, logits)
                    next_ids = lean.argmax(scores)
                    if search is not None:
                        view = lean.numpy_view(scores)
                        keys = view if view is not None else scores
                elif search is not None:  # the warpers leave the scores before them as they are
                    base = procs.base(seqs, logits)
                    next_ids = self._sample(procs.warpers, seqs, base, settings, rngs, races)
                    view = lean.numpy_view(base)
                    base = view if view is not None else base
                    races = [(pool, race, base[i]) for i, (pool, race) in enumerate(races)]
                else:
                    next_ids = self._sample(procs, seqs, logits, settings, rngs)
                done_rows = [i for i in range(rows) if finish[i]]
                if done_rows:
                    next_ids[done_rows] = self.pad_id
                probs_view = lean.numpy_view(raw_probs)
                chosen_p = (probs_view[range(rows), next_ids.numpy()].tolist() if probs_view is not None
                            else raw_probs.gather(1, next_ids.unsqueeze(1)).squeeze(1).tolist())
                top_ids, top_ps = top_ids.tolist(), top_ps.tolist()
                next_list = next_ids.tolist()
                seqs = torch.cat([seqs, next_ids.unsqueeze(1)], dim=1)
                step_input = next_ids.unsqueeze(1)
                if constraint_state is not None:
                    constraint_state.advance(seqs)
                for i in range(rows):
                    if finish[i]:
                        continue
                    tid = next_list[i]
                    alternatives = tuple(Alternative(a, self._token_text(a), p) for a, p in zip(top_ids[i], top_ps[i]))
                    info = TokenInfo(tid, self._token_text(tid), chosen_p[i], alternatives)
                    tokens[i].append(info)
                    if tid == self.eos_id:
                        finish[i] = "eos"
                        continue
                    if search is not None:  # how it was chosen, to choose again without it (not forced)
                        if is_forced:
                            choice = None
                        elif keys is not None:
                            choice = Choice(step, keys[i], None, raw_probs[i], alternatives)
                        else:
                            pool, race, fallback = races[i] if races else (None, None, None)
                            choice = (Choice(step, race, pool, raw_probs[i], alternatives, fallback=fallback)
                                      if pool is not None else None)
                        search.remember(i, choice)
                    new_line = constraint_state is not None and constraint_state.starts_line(i)
                    if search is not None and constraint_state.needs_word_end(i):
                        held[i] = (step, new_line)  # streamed once the next step says it ends its word
                        continue
                    if constraint_state is not None and constraint_state.row_finished(i):
                        finish[i] = "constraint"
                    piece = detok[i].push(tid, new_line)
                    yield TokenEvent(i, step, piece, info, "\n" in piece)
                step += 1
                if all(finish):
                    break
        for i in range(rows):  # stopped with a token still held: it is streamed as it is
            yield from self._release(i, held, tokens, detok, finish, constraint_state)
        elapsed = time.perf_counter() - started
        candidates = []
        for i in range(rows):
            ids = [t.token_id for t in tokens[i] if t.token_id != self.eos_id]
            report = constraint_state.report(i, seqs[i, prompt_len:].tolist()) if constraint_state else None
            candidates.append(self._candidate(request, ids, tokens[i], finish[i] or "length", report))
        new_tokens = sum(len(t) for t in tokens)
        yield DoneEvent(GenerationResult(candidates, settings, prompt_text, prompt_len, elapsed, new_tokens))

    def _release(self, i: int, held: list, tokens: list[list[TokenInfo]], detok: list[Detokenizer],
                 finish: list[str], state: Any) -> Iterator[TokenEvent]:
        """Stream row ``i``'s held token (the one in place after the look-ahead), if any."""
        if held[i] is None:
            return
        step, new_line = held[i]
        held[i] = None
        info = tokens[i][-1]
        if info.token_id == self.eos_id:  # chosen in place of a token that did not end its word
            finish[i] = "eos"
            return
        if state.row_finished(i):
            finish[i] = finish[i] or "constraint"
        piece = detok[i].push(info.token_id, new_line)
        yield TokenEvent(i, step, piece, info, "\n" in piece)

    def _sample(self, procs: Any, seqs: Any, logits: Any, settings: DecodingSettings, rngs: list,
                races: list | None = None) -> Any:
        return sampling.sample(procs, seqs, logits, rngs, self.eos_id, races)

    def _draw_numpy(self, values: Any, ids: Any, rng: Any) -> int:
        """One token from a row of float32 scores (NumPy) over ``ids``, or the whole vocabulary."""
        pool, keys = sampling.race_numpy(values, ids, rng)
        return self.eos_id if pool is None else int(pool[keys.argmax()])

    def _draw_torch(self, scores: Any, ids: Any, rng: Any) -> int:
        """``_draw_numpy`` in torch, for a GPU or another dtype."""
        pool, keys = sampling.race_torch(scores, ids, rng)
        return self.eos_id if pool is None else int(pool[keys.argmax()])

    def _forward_kwargs(self, past: Any) -> dict:
        """The cache argument under this transformers version's name (``cache`` since 5.x, before
        that ``past_key_values``), and logits for the last position only where supported."""
        kwargs = {self._cache_name: past}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        return kwargs

    def _candidate(self, request: GenerationRequest, ids: list[int], infos: list[TokenInfo], reason: str,
                   report: Any) -> Candidate:
        raw = self.tokenizer.decode(ids, skip_special_tokens=False)
        text = clean_output(raw, self.unk_token)
        joiner = " " if raw[:1].isspace() and request.prompt.strip() else ""
        full = clean_output(request.prompt.strip() + joiner + text, self.unk_token)
        if getattr(report, "display", None) is not None:  # constrained lines, one per line
            text, full = report.display
        return Candidate(text, ids, infos, reason, report, full)

    def constraint_state(self, spec: LyricConstraints, prompt_len: int, request: GenerationRequest | None = None,
                         max_new: int | None = None) -> ConstraintState:
        """The per-generation state of ``spec`` over this model, for a prompt of ``prompt_len``
        tokens (``request``: its line and draft lines; ``max_new``: the limit its report names)."""
        return ConstraintState(spec, self.tokenizer, vocab_size=self.vocab_size, separator=self._separator,
                               window=self.context_window, prompt_len=prompt_len,
                               prompt=request.prompt if request is not None else "",
                               context=request.context if request is not None else (),
                               max_length=max_new if max_new is not None or request is None
                               else request.settings.max_length)

    def _constraint_state(self, request: GenerationRequest, prompt_len: int, max_new: int) -> ConstraintState | None:
        if request.constraints is None:
            return None
        return self.constraint_state(request.constraints, prompt_len, request, max_new)

    def _beam(self, request: GenerationRequest, settings: DecodingSettings,
              cancel: threading.Event) -> Iterator[TokenEvent | DoneEvent]:
        from kolyric.engine.beam import beam_stream

        return beam_stream(self, request, settings, cancel)

    def _token_text(self, token_id: int) -> str:
        text = self._token_text_cache.get(token_id)
        if text is None:
            text = clean_piece(self.tokenizer.decode([token_id], skip_special_tokens=False), self.unk_token)
            if token_id == self.eos_id:
                text = "</s>"
            self._token_text_cache[token_id] = text
        return text

def _output_size(model: Any) -> int | None:
    try:
        return int(model.get_output_embeddings().weight.shape[0])
    except (AttributeError, TypeError):
        return getattr(getattr(model, "config", None), "vocab_size", None)


__all__ = ["Generator", "LiveControls"]
