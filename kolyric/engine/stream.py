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
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from kolyric.engine import processors as lean
from kolyric.engine import sampling
from kolyric.engine.decode import DecodeRun
from kolyric.engine.lyric.report import ConstraintReport
from kolyric.engine.lyric.spec import LyricConstraints
from kolyric.engine.lyric.state import ConstraintState
from kolyric.engine.phrases import cut_at_stop
from kolyric.engine.prompt import (
    clean_output,
    clean_piece,
    line_separator,
    normalize_polarity,
    prefix_text,
    prompt_body,
)
from kolyric.engine.results import Candidate, DoneEvent, GenerationRequest, GenerationResult, TokenEvent, TokenInfo
from kolyric.engine.settings import DecodingSettings
from kolyric.engine.window import context_window

if TYPE_CHECKING:
    import numpy as np
    import torch
    from transformers import PreTrainedModel

    from kolyric.engine.kv_cache import Past
    from kolyric.engine.loading import LoadedModel


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

    def __init__(self, loaded: LoadedModel):
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
        self.cache_name = "cache" if "cache" in params else "past_key_values"
        self._logits_to_keep = "logits_to_keep" in params
        self.vocab_size = _output_size(self.model)
        """The model's output width (the constraint masks span it)."""

    # -- prompt ---------------------------------------------------------------------------------
    @property
    def context_window(self) -> int:
        return context_window(self.model.config)

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
            ids = prefix_ids + ids[len(prefix_ids) :][-(budget - len(prefix_ids)) :]
        if not ids:  # an empty prompt starts from the beginning-of-text token
            ids = [self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.eos_id]
        return ids, text

    # -- public API -------------------------------------------------------------------------------
    def generate(
        self, request: GenerationRequest, cancel: threading.Event | None = None, controls: LiveControls | None = None
    ) -> GenerationResult:
        result = None
        for event in self.stream(request, cancel=cancel, controls=controls):
            if isinstance(event, DoneEvent):
                result = event.result
        assert result is not None
        return result

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None, controls: LiveControls | None = None
    ) -> Iterator[TokenEvent | DoneEvent]:
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
    def processors(
        self, settings: DecodingSettings, prompt_len: int, constraint_state: ConstraintState | None
    ) -> lean.ProcessorChain:
        """A step's logits processors (the int8 benchmark times them through this one door)."""
        return sampling.processor_chain(settings, prompt_len, constraint_state, self.eos_id, self.tokenizer)

    def max_new_tokens(self, request: GenerationRequest, settings: DecodingSettings) -> int:
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

    def _loop(
        self, request: GenerationRequest, controls: LiveControls, cancel: threading.Event
    ) -> Iterator[TokenEvent | DoneEvent]:
        import torch

        # the prompt, each row's seeded generator, the constraint state, processors, bans and stops
        run = DecodeRun(self, request, controls)
        with torch.inference_mode():
            while True:
                # a live settings change applies from this token on
                run.follow(controls)
                # every row ends at the length limit, the model's window or a cancel
                if run.over(cancel):
                    break
                # one forward pass over the rows' last tokens, on the KV cache
                logits, dist = run.forward()
                # whole words: a held line-ending token is kept, or taken back now that the
                # distribution after it is known
                yield from run.settle_held(logits, dist)
                # each row's next token: forced, greedy or drawn; none completes a banned phrase
                picked = run.choose(logits, dist)
                # into the sequences and the constraint state; streamed, or held
                yield from run.append(picked)
        # what is still held is streamed as it is, then the candidates
        yield from run.done()

    def sample(
        self,
        procs: lean.ProcessorChain,
        seqs: torch.Tensor,
        logits: torch.Tensor,
        settings: DecodingSettings,
        rngs: list[torch.Generator],
        races: list | None = None,
    ) -> list[int] | torch.Tensor:
        """One token per row drawn from the processed scores (``sampling.sample``)."""
        return sampling.sample(procs, seqs, logits, rngs, self.eos_id, races)

    def _draw_numpy(self, values: np.ndarray, ids: np.ndarray | None, rng: torch.Generator) -> int:
        """One token from a row of float32 scores (NumPy) over ``ids``, or the whole vocabulary."""
        pool, keys = sampling.race_numpy(values, ids, rng)
        return self.eos_id if pool is None else int(pool[keys.argmax()])

    def _draw_torch(self, scores: torch.Tensor, ids: torch.Tensor | None, rng: torch.Generator) -> int:
        """``_draw_numpy`` in torch, for a GPU or another dtype."""
        pool, keys = sampling.race_torch(scores, ids, rng)
        return self.eos_id if pool is None else int(pool[keys.argmax()])

    def forward_kwargs(self, past: Past | None) -> dict[str, object]:
        """The cache argument under this transformers version's name (``cache`` since 5.x, before
        that ``past_key_values``), and logits for the last position only where supported."""
        kwargs = {self.cache_name: past}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        return kwargs

    def candidate(
        self,
        request: GenerationRequest,
        ids: list[int],
        infos: list[TokenInfo],
        reason: str,
        report: ConstraintReport | None,
        settings: DecodingSettings,
    ) -> Candidate:
        """A finished row as the caller sees it: display text, the prompt line with it, the report."""
        raw = self.tokenizer.decode(ids, skip_special_tokens=False)
        text = clean_output(raw, self.unk_token)
        joiner = " " if raw[:1].isspace() and request.prompt.strip() else ""
        full = clean_output(request.prompt.strip() + joiner + text, self.unk_token)
        if report is not None and report.display is not None:  # constrained lines, one per line
            text, full = report.display
        cut = cut_at_stop(text, settings.stop, settings.keep_stop) if reason == "stop" else None
        if cut is not None:  # the text ends at the stop string (through it with keep_stop)
            head = full[: len(full) - len(text)] if full.endswith(text) else request.prompt.strip() + joiner
            text = clean_output(cut, self.unk_token)
            full = clean_output(head + text, self.unk_token)
        return Candidate(text, ids, infos, reason, report, full)

    def constraint_state(
        self,
        spec: LyricConstraints,
        prompt_len: int,
        request: GenerationRequest | None = None,
        max_new: int | None = None,
    ) -> ConstraintState:
        """The per-generation state of ``spec`` over this model, for a prompt of ``prompt_len``
        tokens (``request``: its line and draft lines; ``max_new``: the limit its report names)."""
        return ConstraintState(
            spec,
            self.tokenizer,
            vocab_size=self.vocab_size,
            separator=self._separator,
            window=self.context_window,
            prompt_len=prompt_len,
            prompt=request.prompt if request is not None else "",
            context=request.context if request is not None else (),
            max_length=max_new if max_new is not None or request is None else request.settings.max_length,
        )

    def constraints_for(self, request: GenerationRequest, prompt_len: int, max_new: int) -> ConstraintState | None:
        """The request's constraint state, or None when it has no constraints."""
        if request.constraints is None:
            return None
        return self.constraint_state(request.constraints, prompt_len, request, max_new)

    def _beam(
        self, request: GenerationRequest, settings: DecodingSettings, cancel: threading.Event
    ) -> Iterator[TokenEvent | DoneEvent]:
        from kolyric.engine.beam import beam_stream

        return beam_stream(self, request, settings, cancel)

    def token_text(self, token_id: int) -> str:
        """One token's text as the inspector shows it (cached)."""
        text = self._token_text_cache.get(token_id)
        if text is None:
            text = clean_piece(self.tokenizer.decode([token_id], skip_special_tokens=False), self.unk_token)
            if token_id == self.eos_id:
                text = "</s>"
            self._token_text_cache[token_id] = text
        return text


def _output_size(model: PreTrainedModel) -> int | None:
    try:
        return int(model.get_output_embeddings().weight.shape[0])
    except (AttributeError, TypeError):
        return getattr(getattr(model, "config", None), "vocab_size", None)


__all__ = ["Generator", "LiveControls"]
