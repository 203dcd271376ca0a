"""A decoding step's logits processors (``processor_chain``), and drawing a token from the processed
scores row by row, as ``torch.multinomial`` would.

One draw is torch.multinomial's own for one sample, an exponential race: Exp(1) noise from the
row's generator, then the largest probability / noise (``tests/functional/test_stream.py``
checks it token for token, and the generator's state, against multinomial). On a CPU it runs
in NumPy: after a forward pass multinomial's checks and calls cost ~50 µs a token.

The race's keys rank every token of the pool, and the first of any subset of the pool in that
ranking is a draw from the distribution restricted to the subset: the whole-word look-ahead
(``kolyric.engine.lookahead``) chooses again from a row's race so when it takes a token back.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from kolyric.engine import incremental, penalties, samplers
from kolyric.engine import processors as lean
from kolyric.engine.prompt import line_break_ids

if TYPE_CHECKING:
    import numpy as np
    import torch
    from numpy.typing import NDArray
    from transformers import LogitsProcessor, PreTrainedTokenizerBase

    from kolyric.engine.settings import DecodingSettings

NUMPY_DRAWS = True
"""Draw CPU float32 rows in NumPy (False: torch's way everywhere, as on a GPU; the tests compare)."""


def processor_chain(
    settings: DecodingSettings,
    prompt_len: int,
    constraint_state: LogitsProcessor | None,
    eos_id: int | None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> lean.ProcessorChain:
    """The logits processors of a decoding step, in the one order kolyric applies them (README,
    "Decoding"):

    base (every strategy): 1 repetition penalty, 2 no-repeat n-grams, 3 DRY, 4 phrase bias,
    5 minimum length, 6 lyric constraints;
    warpers (sampling): 7 top-nσ (its deviation over the whole row), 8 temperature and top-k,
    9 dynamic temperature, 10 top-p, 11 min-p, 12 typical-p, 13 epsilon, 14 eta, 15 XTC,
    16 mirostat v2.

    A fixed temperature commutes with top-k, so 8 is transformers' temperature-then-top-k; a
    dynamic one replaces it and is measured on what top-k left. Top-nσ and top-k both keep the
    scores above a line, so top-nσ is applied as a cut of top-k's pool at its whole-row floor.
    DRY and phrase bias read token texts: they need the ``tokenizer``.
    """
    # kolyric.engine.processors' exact equivalents of transformers' processors where those
    # were measured to cost a step 40-100 µs each (see that module); transformers' own
    # elsewhere. The chain is a LogitsProcessorList without its per-step signature checks.
    procs = lean.ProcessorChain()
    if settings.repetition_penalty != 1.0:
        procs.append(incremental.RepetitionPenalty(float(settings.repetition_penalty)))
    if settings.no_repeat_ngram_size > 0:
        # a line ending as another line ended is a refrain or a rhyme, not a loop: line breaks
        # stay allowed (a constrained line must be able to end where the draft's did)
        breaks = line_break_ids(tokenizer) if tokenizer is not None else frozenset()
        procs.append(incremental.NoRepeatNGram(settings.no_repeat_ngram_size, exempt=breaks))
    for processor in text_penalties(settings, tokenizer):
        procs.append(processor)
    if settings.min_length > 0 and eos_id is not None:
        procs.append(incremental.MinNewTokens(prompt_len, settings.min_length, eos_id))
    if constraint_state is not None:
        procs.append(constraint_state.processor)
    procs.warpers_from = len(procs)
    if settings.strategy == "sample":
        _warpers(procs, settings)
    return procs


def text_penalties(
    settings: DecodingSettings, tokenizer: PreTrainedTokenizerBase | None
) -> list[penalties.Dry | penalties.PhraseBias]:
    """DRY and phrase bias (3 and 4 of the chain) as the settings ask: they read token texts, so
    they need the tokenizer. Beam search adds them to ``model.generate``'s processors."""
    if settings.dry_multiplier <= 0 and not settings.bias:
        return []
    if tokenizer is None:
        raise ValueError("DRY and phrase bias read token texts: they need the tokenizer")
    texts = penalties.vocab_texts(tokenizer)
    out: list[penalties.Dry | penalties.PhraseBias] = []
    if settings.dry_multiplier > 0:
        out.append(
            penalties.Dry(
                settings.dry_multiplier,
                settings.dry_base,
                settings.dry_allowed_length,
                penalties.breaker_ids(texts, settings.dry_breakers),
            )
        )
    if settings.bias:
        out.append(penalties.PhraseBias(settings.bias, texts))
    return out


def _warpers(procs: lean.ProcessorChain, settings: DecodingSettings) -> None:
    dynamic = settings.dynatemp_range > 0
    sigma = settings.top_n_sigma > 0
    temperature = 1.0 if dynamic else settings.temperature
    # top-p goes inside the top-k (sorting only its survivors) unless something must come between
    top_p_inside = settings.top_p < 1.0 and not dynamic and not sigma
    if sigma and settings.top_k > 0:  # the floor from the whole row, the cut on top-k's pool
        floor = samplers.SigmaFloor(settings.top_n_sigma)
        procs.append(floor)
        procs.append(lean.TopK(settings.top_k, temperature))
        procs.append(samplers.SigmaCut(floor, temperature))
    elif sigma:  # the whole row, then a pool of what is left
        procs.append(samplers.TopNSigma(settings.top_n_sigma))
        if temperature != 1.0:
            procs.append(samplers.Temperature(temperature))
    elif settings.top_k > 0 and top_p_inside:  # top-p sorts only the top-k survivors
        procs.append(lean.TopKThenTopP(settings.top_k, settings.top_p, temperature))
    elif settings.top_k > 0:  # the temperature divides only the survivors
        procs.append(lean.TopK(settings.top_k, temperature))
    else:
        from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

        if temperature != 1.0:
            procs.append(TemperatureLogitsWarper(temperature))
        if top_p_inside:
            procs.append(TopPLogitsWarper(settings.top_p))
    if dynamic:
        procs.append(
            samplers.DynamicTemperature(settings.temperature, settings.dynatemp_range, settings.dynatemp_exponent)
        )
    if settings.top_p < 1.0 and not top_p_inside:
        procs.append(samplers.TopP(settings.top_p))
    if settings.min_p > 0:
        procs.append(samplers.MinP(settings.min_p))
    if settings.typical_p < 1.0:
        procs.append(samplers.TypicalP(settings.typical_p))
    if settings.epsilon > 0:
        procs.append(samplers.EpsilonCutoff(settings.epsilon))
    if settings.eta > 0:
        procs.append(samplers.EtaCutoff(settings.eta))
    if settings.xtc_probability > 0:
        procs.append(
            samplers.XTC(settings.xtc_probability, settings.xtc_threshold, int(settings.seed or 0), rows=settings.n)
        )
    if settings.mirostat_tau > 0:
        procs.append(samplers.MirostatV2(settings.mirostat_tau, settings.mirostat_eta))


def sample(
    procs: lean.ProcessorChain,
    seqs: torch.Tensor,
    logits: torch.Tensor,
    rngs: list[torch.Generator],
    eos_id: int,
    races: list | None = None,
) -> list[int] | torch.Tensor:
    """One token per row, drawn from the processed scores with each row's generator (a list on
    a CPU, where the draw runs in NumPy).

    A row's draw depends on its own scores only, so candidate i is the same sampled alone or in
    a batch: another row's tie at the k-th score, or a row a constraint has closed, changes
    nothing for it. The row's pool is its tokens with a finite score, in token-id order (the
    processors' pool of k survivors when they can give one, else the full row), and a row with
    none ends with the end token. ``races`` gets each row's (pool ids, race keys).
    """
    import numpy as np
    import torch

    # pool_ids None: full-vocabulary rows; a pool top-k found in NumPy comes as NumPy arrays
    scores, pool_ids = procs.pool(seqs, logits, arrays=NUMPY_DRAWS)
    picks = []
    if isinstance(scores, np.ndarray):
        on_cpu, values, ids = True, scores, pool_ids
    else:
        on_cpu = NUMPY_DRAWS and scores.device.type == "cpu" and scores.dtype == torch.float32
        values, ids = (scores.numpy(), None if pool_ids is None else pool_ids.numpy()) if on_cpu else (None, None)
    for i, rng in enumerate(rngs):
        if on_cpu:
            pool, keys = race_numpy(values[i], None if ids is None else ids[i], rng)
        else:
            pool, keys = race_torch(scores[i], None if pool_ids is None else pool_ids[i], rng)
        picks.append(eos_id if pool is None else int(pool[int(keys.argmax())]))
        if races is not None:
            races.append((pool, keys))
    return picks if on_cpu else torch.tensor(picks, dtype=torch.long, device=scores.device)


def race_numpy(
    values: NDArray[np.float32], ids: NDArray[np.int64] | None, rng: torch.Generator
) -> tuple[NDArray[np.int64] | None, NDArray[np.float32] | None]:
    """(pool ids, race keys) of a row of float32 scores (NumPy) over ``ids`` or the whole
    vocabulary, or (None, None) when every token is masked (e.g. by a constraint)."""
    import numpy as np
    import torch

    if ids is None:
        pool = np.flatnonzero(np.isfinite(values))
        values = values[pool]
    else:
        keep = np.isfinite(values)
        pool, values = ids[keep], values[keep]
        order = pool.argsort(kind="stable")
        pool, values = pool[order], values[order]
    if not len(pool):
        return None, None
    weights = np.exp(values - values.max())
    # one torch call for the noise, into this thread's buffer of that length (after a forward
    # pass each torch call costs 10-20 µs: empty, exponential_ and numpy were three); the keys
    # are a new array, so the buffer is free again when this returns
    buffers = _NOISE.__dict__
    buffer = buffers.get(len(pool))
    if buffer is None:
        if len(buffers) > 64:
            buffers.clear()
        with torch.inference_mode(False):  # an inference tensor could not be written outside that mode
            tensor = torch.empty(len(pool), dtype=torch.float32)
        buffer = buffers[len(pool)] = (tensor, tensor.numpy())
    buffer[0].exponential_(1, generator=rng)
    return pool, weights / weights.sum() / buffer[1]


_NOISE = threading.local()
"""Each thread's noise tensors for ``race_numpy`` by length, with their NumPy views."""


def race_torch(
    scores: torch.Tensor, ids: torch.Tensor | None, rng: torch.Generator
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``race_numpy`` in torch, for a GPU or another dtype."""
    import torch

    if ids is None:
        ids = torch.isfinite(scores).nonzero().squeeze(1)
        scores = scores[ids]
    else:
        keep = torch.isfinite(scores)
        ids, order = ids[keep].sort()
        scores = scores[keep][order]
    if ids.numel() == 0:
        return None, None
    probs = torch.softmax(scores.float(), dim=-1)
    noise = torch.empty_like(probs).exponential_(1, generator=rng)
    return ids, probs / noise


def acts_greedy(settings: DecodingSettings, logits: torch.Tensor) -> bool:
    """Whether a sampling step is greedy in effect: its temperature is too small to divide the
    scores by in float32 (they would overflow to infinity, and the probabilities to NaN: an
    empty candidate). The limit of sampling as the temperature goes to 0 is the most likely
    token of the scores before temperature and top-k/top-p, which is what the step then takes."""
    temperature = settings.temperature
    if temperature >= 1e-3:  # |score| / t overflows only past 3.4e35, far beyond any model's logits
        return False
    magnitude = float(logits.abs().amax()) * max(1.0, float(settings.repetition_penalty))
    return lean.overflows_float32(magnitude, temperature)


__all__ = ["NUMPY_DRAWS", "acts_greedy", "processor_chain", "race_numpy", "race_torch", "sample", "text_penalties"]
