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
(a byte-level token can hold part of a syllable's UTF-8 bytes).
"""

from __future__ import annotations

import inspect
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

from kolyric.engine import processors as lean
from kolyric.engine.prompt import UNK_SHOWN, clean_output, clean_piece, line_separator, normalize_polarity, \
    prefix_text, prompt_body
from kolyric.engine.settings import DecodingSettings

TOP_ALTERNATIVES = 5


@dataclass(frozen=True)
class GenerationRequest:
    """What to continue and how."""

    prompt: str
    """The line the user typed (may be empty)."""
    polarity: str | None = None
    """긍정, 부정 or None: the training-time prefix put before the text."""
    settings: DecodingSettings = field(default_factory=DecodingSettings)
    """Decoding controls."""
    context: tuple[str, ...] = ()
    """Earlier draft lines, oldest first; as many as fit the context window are kept, newest first."""
    forced_ids: tuple[int, ...] = ()
    """Generated token ids to force first (branching from a chosen alternative), then continue."""
    constraints: Any = None
    """Lyric constraints (kolyric.engine.constraints), or None."""


@dataclass(frozen=True)
class Alternative:
    token_id: int
    text: str
    prob: float


@dataclass(frozen=True)
class TokenInfo:
    """One generated token, its probability under the model and the model's top-5 there."""

    token_id: int
    text: str
    prob: float
    alternatives: tuple[Alternative, ...]


@dataclass(frozen=True)
class TokenEvent:
    candidate: int
    step: int
    text: str
    """New display text released by this token (may be empty while a character is incomplete)."""
    token: TokenInfo


@dataclass
class Candidate:
    text: str
    """The continuation, cleaned for display (no prefix, no specials)."""
    token_ids: list[int]
    tokens: list[TokenInfo]
    finish_reason: str
    """eos | length | cancelled | constraint"""
    constraint_report: Any = None
    full_text: str = ""
    """The prompt line and the continuation, joined as the model spaced them."""


@dataclass
class GenerationResult:
    candidates: list[Candidate]
    settings: DecodingSettings
    """The settings in force at the end, with the seed actually used."""
    prompt_text: str
    """The exact text fed to the model (prefix and context included)."""
    prompt_tokens: int
    elapsed_s: float
    new_tokens: int

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "candidates": [{"text": c.text, "full_text": c.full_text, "finish_reason": c.finish_reason, "token_ids": c.token_ids,
                            "constraints": getattr(c.constraint_report, "to_dict", lambda: c.constraint_report)()}
                           for c in self.candidates],
            "settings": self.settings.to_dict(),
            "prompt_text": self.prompt_text,
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "elapsed_s": round(self.elapsed_s, 4),
            "tokens_per_s": round(self.tokens_per_s, 2),
        }


@dataclass(frozen=True)
class DoneEvent:
    result: GenerationResult


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
        from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

        # kolyric.engine.processors' exact equivalents of transformers' processors where those
        # were measured to cost a step 40-100 µs each (see that module); transformers' own
        # elsewhere. The chain is a LogitsProcessorList without its per-step signature checks.
        procs = lean.ProcessorChain()
        if settings.repetition_penalty != 1.0:
            procs.append(lean.RepetitionPenalty(float(settings.repetition_penalty)))
        if settings.no_repeat_ngram_size > 0:
            procs.append(lean.NoRepeatNGram(settings.no_repeat_ngram_size))
        if settings.min_length > 0 and self.eos_id is not None:
            procs.append(lean.MinNewTokens(prompt_len, settings.min_length, self.eos_id))
        if constraint_state is not None:
            procs.append(constraint_state.processor)
        if settings.strategy == "sample":
            temperature = settings.temperature
            if settings.top_k > 0 and settings.top_p < 1.0:  # top-p sorts only the top-k survivors
                procs.append(lean.TopKThenTopP(settings.top_k, settings.top_p, temperature))
            elif settings.top_k > 0:  # the temperature divides only the survivors
                procs.append(lean.TopK(settings.top_k, temperature))
            else:
                if temperature != 1.0:
                    procs.append(TemperatureLogitsWarper(temperature))
                if settings.top_p < 1.0:
                    procs.append(TopPLogitsWarper(settings.top_p))
        return procs

    def _loop(self, request: GenerationRequest, controls: LiveControls,
              cancel: threading.Event) -> Iterator[TokenEvent | DoneEvent]:
        import torch

        started = time.perf_counter()
        settings = controls.current
        version = controls.version
        device = self.model.device
        prompt, prompt_text = self.prompt_ids(request, settings.max_length)
        rows = settings.n if settings.strategy == "sample" else 1
        prompt_len = len(prompt)
        seqs = torch.tensor([prompt] * rows, dtype=torch.long, device=device)
        # One generator per candidate, seeded seed+i: candidate i is the same whether it is
        # sampled alone or in a batch, so a CLI, the app and the server agree.
        rngs = [torch.Generator(device=device).manual_seed((int(settings.seed) + i) % 2**32) for i in range(rows)]
        constraint_state = self._constraint_state(request, prompt_len, rows)
        procs = self._processors(settings, prompt_len, constraint_state)
        detok = [_Detokenizer(self.tokenizer, prompt, self.unk_token) for _ in range(rows)]
        tokens: list[list[TokenInfo]] = [[] for _ in range(rows)]
        finish = [""] * rows
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
                if step >= settings.max_length or step >= self.context_window - prompt_len:
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
                top_ps, top_ids = lean.top_k(raw_probs, TOP_ALTERNATIVES)
                # the processors may change ``logits`` in place: it is not used after this
                if step < len(forced):
                    next_ids = torch.full((rows,), forced[step], dtype=torch.long, device=device)
                elif settings.strategy == "greedy":
                    next_ids = lean.argmax(procs(seqs, logits))
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
                    info = TokenInfo(tid, self._token_text(tid), chosen_p[i], tuple(
                        Alternative(a, self._token_text(a), p) for a, p in zip(top_ids[i], top_ps[i])))
                    tokens[i].append(info)
                    if tid == self.eos_id:
                        finish[i] = "eos"
                        continue
                    if constraint_state is not None and constraint_state.row_finished(i):
                        finish[i] = "constraint"
                    piece = detok[i].push(tid)
                    yield TokenEvent(i, step, piece, info)
                step += 1
                if all(finish):
                    break
        elapsed = time.perf_counter() - started
        candidates = []
        for i in range(rows):
            ids = [t.token_id for t in tokens[i] if t.token_id != self.eos_id]
            report = constraint_state.report(i, seqs[i, prompt_len:].tolist()) if constraint_state else None
            candidates.append(self._candidate(request, ids, tokens[i], finish[i] or "length", report))
        new_tokens = sum(len(t) for t in tokens)
        yield DoneEvent(GenerationResult(candidates, settings, prompt_text, prompt_len, elapsed, new_tokens))

    def _sample(self, procs: Any, seqs: Any, logits: Any, settings: DecodingSettings, rngs: list) -> Any:
        """One token per row, drawn from the processed scores with each row's generator.

        A row's draw depends on its own scores only, so candidate i is the same sampled alone or
        in a batch: another row's tie at the k-th score, or a row a constraint has closed,
        changes nothing for it. The row's pool is its tokens with a finite score, in token-id
        order (the processors' pool of k survivors when they can give one, else the full row),
        and a row with none ends with the end token.
        """
        import torch

        scores, pool_ids = procs.pool(seqs, logits)  # pool_ids None: full-vocabulary rows
        if scores.device.type == "cpu" and scores.dtype == torch.float32:
            values, ids = scores.numpy(), None if pool_ids is None else pool_ids.numpy()
            picks = [self._draw_numpy(values[i], None if ids is None else ids[i], rng) for i, rng in enumerate(rngs)]
        else:
            picks = [self._draw_torch(scores[i], None if pool_ids is None else pool_ids[i], rng)
                     for i, rng in enumerate(rngs)]
        return torch.tensor(picks, dtype=torch.long, device=scores.device)

    # One draw is torch.multinomial's own for one sample, an exponential race: Exp(1) noise from
    # the row's generator, then the largest probability / noise (``tests/functional/
    # test_stream.py`` checks it token for token, and the generator's state, against
    # multinomial). On a CPU it runs in NumPy: after a forward pass multinomial's checks and
    # calls cost ~50 µs a token.
    def _draw_numpy(self, values: Any, ids: Any, rng: Any) -> int:
        """One token from a row of float32 scores (NumPy) over ``ids``, or the whole vocabulary."""
        import numpy as np
        import torch

        if ids is None:
            pool = np.flatnonzero(np.isfinite(values))
            values = values[pool]
        else:
            keep = np.isfinite(values)
            pool, values = ids[keep], values[keep]
            order = np.argsort(pool, kind="stable")
            pool, values = pool[order], values[order]
        if not len(pool):  # every token masked (e.g. by a constraint): the row ends
            return self.eos_id
        weights = np.exp(values - values.max())
        noise = torch.empty(len(pool), dtype=torch.float32).exponential_(1, generator=rng).numpy()
        return int(pool[np.argmax(weights / weights.sum() / noise)])

    def _draw_torch(self, scores: Any, ids: Any, rng: Any) -> int:
        """``_draw_numpy`` in torch, for a GPU or another dtype."""
        import torch

        if ids is None:
            ids = torch.isfinite(scores).nonzero().squeeze(1)
            scores = scores[ids]
        else:
            keep = torch.isfinite(scores)
            ids, order = ids[keep].sort()
            scores = scores[keep][order]
        if ids.numel() == 0:
            return self.eos_id
        probs = torch.softmax(scores.float(), dim=-1)
        noise = torch.empty_like(probs).exponential_(1, generator=rng)
        return int(ids[(probs / noise).argmax()])

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

    def _constraint_state(self, request: GenerationRequest, prompt_len: int, rows: int) -> Any:
        if request.constraints is None:
            return None
        return request.constraints.start(self, prompt_len, rows, request=request)

    def _token_text(self, token_id: int) -> str:
        text = self._token_text_cache.get(token_id)
        if text is None:
            text = clean_piece(self.tokenizer.decode([token_id], skip_special_tokens=False), self.unk_token)
            if token_id == self.eos_id:
                text = "</s>"
            self._token_text_cache[token_id] = text
        return text

    # -- beam search ------------------------------------------------------------------------------
    def _beam(self, request: GenerationRequest, settings: DecodingSettings,
              cancel: threading.Event) -> Iterator[TokenEvent | DoneEvent]:
        import torch
        from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):  # noqa: ANN001
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool,
                                  device=input_ids.device)

        started = time.perf_counter()
        prompt, prompt_text = self.prompt_ids(request, settings.max_length)
        prompt_len = len(prompt)
        input_ids = torch.tensor([prompt + list(request.forced_ids)], device=self.model.device)
        config = GenerationConfig(
            num_beams=settings.num_beams, num_return_sequences=settings.n, do_sample=False,
            max_new_tokens=max(1, settings.max_length - len(request.forced_ids)), min_new_tokens=settings.min_length or None,
            repetition_penalty=settings.repetition_penalty,
            no_repeat_ngram_size=settings.no_repeat_ngram_size or None,
            eos_token_id=self.eos_id, pad_token_id=self.pad_id, bos_token_id=self.tokenizer.bos_token_id,
        )
        constraint_state = self._constraint_state(request, prompt_len, settings.num_beams)
        extra = [constraint_state.processor] if constraint_state is not None else []
        with torch.inference_mode():
            out = self.model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                      generation_config=config, logits_processor=extra,
                                      stopping_criteria=StoppingCriteriaList([_Cancelled()]))
            candidates = []
            new_tokens = 0
            for i, row in enumerate(out):
                gen = row[prompt_len:].tolist()
                while gen and gen[-1] == self.pad_id and self.pad_id != self.eos_id:
                    gen.pop()
                infos = self._score_tokens(prompt, gen)
                ended = bool(gen) and gen[-1] == self.eos_id
                detok = _Detokenizer(self.tokenizer, prompt, self.unk_token)
                for step, info in enumerate(infos):
                    if info.token_id == self.eos_id:
                        break
                    yield TokenEvent(i, step, detok.push(info.token_id), info)
                ids = [t for t in gen if t != self.eos_id]
                new_tokens += len(gen)
                reason = "cancelled" if cancel.is_set() else ("eos" if ended else "length")
                report = constraint_state.report(i, gen) if constraint_state else None
                candidates.append(self._candidate(request, ids, infos, reason, report))
        elapsed = time.perf_counter() - started
        yield DoneEvent(GenerationResult(candidates, settings, prompt_text, prompt_len, elapsed, new_tokens))

    def _score_tokens(self, prompt: list[int], generated: list[int]) -> list[TokenInfo]:
        """Probability and top-5 of each generated token, from one forward pass over the sequence."""
        import torch

        if not generated:
            return []
        ids = torch.tensor([prompt + generated], device=self.model.device)
        probs = torch.softmax(self.model(input_ids=ids).logits[0, len(prompt) - 1:-1].float(), dim=-1)
        top = torch.topk(probs, TOP_ALTERNATIVES, dim=-1)
        chosen = probs.gather(1, torch.tensor(generated, device=probs.device).unsqueeze(1)).squeeze(1).tolist()
        return [TokenInfo(t, self._token_text(t), p, tuple(Alternative(a, self._token_text(a), q)
                                                          for a, q in zip(ai, qi)))
                for t, p, ai, qi in zip(generated, chosen, top.indices.tolist(), top.values.tolist())]


class _Detokenizer:
    """Incremental decoding that releases text only when it is complete.

    Decoding each token alone would lose the spaces a Metaspace/byte-level decoder derives from
    neighbouring tokens, and would show half of a syllable's bytes; decoding everything each
    step costs O(n²). So each step decodes a short window ending at the new token and releases
    the part past what the window's prefix already produced, unless it ends in U+FFFD (bytes of
    an unfinished character).
    """

    def __init__(self, tokenizer: Any, prompt: list[int], unk_token: str | None):
        self.tokenizer = tokenizer
        self.ids = list(prompt[-4:])  # a little prompt context for the first token's spacing
        self.prefix_offset = 0
        self.read_offset = len(self.ids)
        self.unk_token = unk_token

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        decode = self.tokenizer.decode
        prefix = decode(self.ids[self.prefix_offset:self.read_offset], skip_special_tokens=False)
        full = decode(self.ids[self.prefix_offset:], skip_special_tokens=False)
        pending = len(self.ids) - self.read_offset
        # A UTF-8 character spans at most 4 byte tokens: past that the bytes are invalid, not
        # unfinished, and are released (as U+FFFD, as the final text shows them).
        if len(full) <= len(prefix) or (full.endswith("\ufffd") and pending < 4):
            return ""
        piece = full[len(prefix):]
        self.prefix_offset = self.read_offset
        self.read_offset = len(self.ids)
        return clean_piece(piece, self.unk_token)


__all__ = ["Alternative", "Candidate", "DoneEvent", "GenerationRequest", "GenerationResult", "Generator",
           "LiveControls", "TokenEvent", "TokenInfo", "UNK_SHOWN"]
