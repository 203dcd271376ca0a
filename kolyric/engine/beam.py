"""Beam search for ``Generator.stream``: through ``model.generate``, emitted when it ends.

Beams are re-ranked until the last step, so a streamed "best beam" would rewrite itself; each
token's top-5 is scored afterwards in one extra forward pass. Lyric constraints run as a logits
processor; their whole-word rule looks ahead inside the search (``lookahead.BeamLookAhead``),
since no step can be taken back there.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

from kolyric.engine import incremental, sampling
from kolyric.engine.decode import TOP_ALTERNATIVES
from kolyric.engine.lyric.lookahead import BeamLookAhead
from kolyric.engine.phrases import BANNED_NOTE, BeamBan, PhraseBan, StopText, find_stop
from kolyric.engine.prompt import Detokenizer, line_break_ids
from kolyric.engine.results import Alternative, DoneEvent, GenerationRequest, GenerationResult, TokenEvent, TokenInfo
from kolyric.engine.settings import DecodingSettings
from kolyric.engine.stream import Generator


def beam_stream(
    gen: Generator, request: GenerationRequest, settings: DecodingSettings, cancel: threading.Event
) -> Iterator[TokenEvent | DoneEvent]:
    """Beam search over ``request``: each candidate's TokenEvents once the search ends, then a DoneEvent."""
    import torch
    from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

    class _Cancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

    class _Stopped(StoppingCriteria):
        """A hypothesis whose generated text holds a stop string is finished (beam search ranks
        each continuation with it, as it does the end token). transformers' StopStringCriteria
        does the same from token bytes, but fails on tokenizers without a byte or metaspace
        vocabulary it can read; this decodes the text itself."""

        def __call__(self, input_ids, scores, **kwargs):
            hits = [
                find_stop(gen.tokenizer.decode(row[prompt_len:], skip_special_tokens=False), settings.stop) is not None
                for row in input_ids.tolist()
            ]
            return torch.tensor(hits, dtype=torch.bool, device=input_ids.device)

    started = time.perf_counter()
    max_new = gen.max_new_tokens(request, settings)
    prompt, prompt_text = gen.prompt_ids(request, max_new)
    prompt_len = len(prompt)
    input_ids = torch.tensor([prompt + list(request.forced_ids)], device=gen.model.device)
    config = GenerationConfig(
        num_beams=settings.num_beams,
        num_return_sequences=settings.n,
        do_sample=False,
        max_new_tokens=max(1, max_new - len(request.forced_ids)),
        min_new_tokens=settings.min_length or None,
        repetition_penalty=settings.repetition_penalty,
        eos_token_id=gen.eos_id,
        pad_token_id=gen.pad_id,
        bos_token_id=gen.tokenizer.bos_token_id,
    )
    constraint_state = gen.constraints_for(request, prompt_len, max_new)
    extra: list = sampling.text_penalties(settings, gen.tokenizer)  # DRY and phrase bias, before the constraints
    if settings.no_repeat_ngram_size > 0:  # kolyric's: a line break stays allowed, as in the other strategies
        breaks = line_break_ids(gen.tokenizer)
        extra.insert(0, incremental.NoRepeatNGram(settings.no_repeat_ngram_size, exempt=breaks))
    look_ahead = None
    if constraint_state is not None:
        # no step can be taken back inside model.generate: the endings a hypothesis may
        # choose are measured before it chooses, and one that ends inside a word ranks it
        # below the others
        constraint_state.processor.penalize_mid_word = True
        if constraint_state.whole_words:
            look_ahead = BeamLookAhead(constraint_state, gen.model, gen.cache_name, settings.num_beams)
            constraint_state.processor.beam_look_ahead = look_ahead.attach()
        extra.append(constraint_state.processor)
    bans = PhraseBan(settings.ban, gen.tokenizer, gen.vocab_size, gen.eos_id) if settings.ban else None
    if bans is not None:  # last: it checks the tokens beam search will rank, as they will be ranked
        extra.append(BeamBan(bans, prompt_len, settings.num_beams))
    with torch.inference_mode():
        try:
            out = gen.model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=config,
                logits_processor=extra,
                stopping_criteria=StoppingCriteriaList([_Cancelled(), *([_Stopped()] if settings.stop else [])]),
            )
        finally:
            if look_ahead is not None:
                look_ahead.detach()
        candidates = []
        new_tokens = 0
        for i, row in enumerate(out):
            generated = row[prompt_len:].tolist()
            while generated and generated[-1] == gen.pad_id and gen.pad_id != gen.eos_id:
                generated.pop()
            infos = score_tokens(gen, prompt, generated)
            ended = bool(generated) and generated[-1] == gen.eos_id
            detok = Detokenizer(gen.tokenizer, prompt, gen.unk_token)
            starts = constraint_state.boundary_starts(generated) if constraint_state is not None else set()
            stop = StopText(settings.stop, settings.keep_stop)  # the stream ends where the text does
            shown = list(itertools.takewhile(lambda info: info.token_id != gen.eos_id, infos))
            pieces = [
                p for step, info in enumerate(shown) for p in stop.push(detok.push(info.token_id, step in starts))
            ]
            for step, (info, piece) in enumerate(zip(shown, pieces + stop.flush())):
                yield TokenEvent(i, step, piece, info, "\n" in piece)
            ids = [t for t in generated if t != gen.eos_id]
            new_tokens += len(generated)
            reason = "cancelled" if cancel.is_set() else ("eos" if ended else "length")
            text = gen.tokenizer.decode(ids, skip_special_tokens=False)
            if reason != "cancelled" and settings.stop and find_stop(text, settings.stop) is not None:
                reason = "stop"
            report = constraint_state.report(i, generated) if constraint_state else None
            if bans is not None and bans.empties:
                reason = "banned"
            candidate = gen.candidate(request, ids, infos, reason, report, settings)
            if reason == "banned":
                candidate.note = BANNED_NOTE
            candidates.append(candidate)
    elapsed = time.perf_counter() - started
    yield DoneEvent(GenerationResult(candidates, settings, prompt_text, prompt_len, elapsed, new_tokens))


def score_tokens(gen: Generator, prompt: list[int], generated: list[int]) -> list[TokenInfo]:
    """Probability and top-5 of each generated token, from one forward pass over the sequence."""
    import torch

    if not generated:
        return []
    ids = torch.tensor([prompt + generated], device=gen.model.device)
    probs = torch.softmax(gen.model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float(), dim=-1)
    top = torch.topk(probs, TOP_ALTERNATIVES, dim=-1)
    chosen = probs.gather(1, torch.tensor(generated, device=probs.device).unsqueeze(1)).squeeze(1).tolist()
    return [
        TokenInfo(t, gen.token_text(t), p, tuple(Alternative(a, gen.token_text(a), q) for a, q in zip(ai, qi)))
        for t, p, ai, qi in zip(generated, chosen, top.indices.tolist(), top.values.tolist())
    ]


__all__ = ["beam_stream", "score_tokens"]
