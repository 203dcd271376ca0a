"""The decoding controls: each one's name, type, help text and valid range, stated once.

Everything that shows or accepts a decoding control (the CLI flags, the app's controls panel,
the HTTP server's JSON) reads ``FIELDS`` here. Lengths count **new tokens** (the prompt, the
polarity prefix and draft context are not included). Imports nothing heavy: the app builds its
controls from this before torch loads.
"""

from __future__ import annotations

from typing import Literal

from kolyric.engine.fields import FieldSpec

Strategy = Literal["greedy", "beam", "sample"]
STRATEGIES: tuple[str, ...] = ("greedy", "beam", "sample")
MAX_SEED = 2**32 - 1
FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec(
            "strategy", str, "greedy: most likely token; beam: beam search; sample: random sampling", choices=STRATEGIES
        ),
        FieldSpec("num_beams", int, "beams kept by beam search", 2, 16),
        FieldSpec("top_k", int, "sample only from the k most likely tokens (0 = off)", 0, 51200),
        FieldSpec(
            "top_p",
            float,
            "sample from the smallest set of tokens whose probability reaches p (1 = off)",
            0.0,
            1.0,
            low_open=True,
        ),
        FieldSpec(
            "temperature",
            float,
            "divide the logits by this before sampling (<1 sharper, >1 flatter)",
            0.0,
            1e6,
            low_open=True,
        ),
        FieldSpec("repetition_penalty", float, "penalise tokens already in the text (1 = off)", 1.0, 10.0),
        FieldSpec("no_repeat_ngram_size", int, "never repeat an n-gram of this size (0 = off)", 0, 10),
        FieldSpec("min_p", float, "remove tokens less likely than min_p times the most likely one (0 = off)", 0.0, 1.0),
        FieldSpec(
            "typical_p",
            float,
            "locally typical sampling: keep the tokens whose surprise is closest to "
            "the expected one, up to this probability (1 = off)",
            0.0,
            1.0,
            low_open=True,
        ),
        FieldSpec("epsilon", float, "epsilon cutoff: remove tokens with a probability below this (0 = off)", 0.0, 0.5),
        FieldSpec("eta", float, "eta cutoff: like epsilon, lowered where the distribution is flat (0 = off)", 0.0, 0.5),
        FieldSpec(
            "top_n_sigma", float, "keep the tokens within n standard deviations of the best score (0 = off)", 0.0, 10.0
        ),
        FieldSpec(
            "xtc_probability", float, "XTC: chance at each token of excluding the top choices (0 = off)", 0.0, 1.0
        ),
        FieldSpec(
            "xtc_threshold",
            float,
            "XTC: tokens at least this likely are top choices (all but the least likely of them are excluded)",
            0.0,
            0.5,
        ),
        FieldSpec(
            "dry_multiplier",
            float,
            "DRY: penalty on a token that extends a repeat of earlier text (0 = off)",
            0.0,
            10.0,
        ),
        FieldSpec("dry_base", float, "DRY: the penalty grows by this factor per repeated token", 1.0, 10.0),
        FieldSpec("dry_allowed_length", int, "DRY: repeats up to this many tokens long cost nothing", 1, 50),
        FieldSpec(
            "dry_breakers",
            tuple,
            "DRY: a repeat never runs across a token holding one of these",
            max_items=32,
            max_chars=16,
        ),
        FieldSpec(
            "dynatemp_range",
            float,
            "dynamic temperature: the temperature moves within ± this by the step's entropy (0 = off)",
            0.0,
            10.0,
        ),
        FieldSpec(
            "dynatemp_exponent",
            float,
            "dynamic temperature: exponent on the normalised entropy",
            0.0,
            10.0,
            low_open=True,
        ),
        FieldSpec("mirostat_tau", float, "mirostat v2: target surprise in bits per token (0 = off)", 0.0, 20.0),
        FieldSpec(
            "mirostat_eta", float, "mirostat v2: how fast its threshold follows the target", 0.0, 1.0, low_open=True
        ),
        FieldSpec("min_length", int, "new tokens before the end token is allowed", 0, 1024),
        FieldSpec("max_length", int, "most new tokens to generate", 1, 1024),
        FieldSpec(
            "seed", int, "random seed; the same seed and settings give the same text", 0, MAX_SEED, optional=True
        ),
        FieldSpec("n", int, "number of candidates", 1, 16),
        FieldSpec(
            "stop", tuple, "end a candidate where its text contains one of these strings", max_items=16, max_chars=64
        ),
        FieldSpec("keep_stop", bool, "keep the stop string that ended a candidate in its text (off: trim it)"),
        FieldSpec(
            "ban",
            tuple,
            "words or phrases that never appear in the output, however they are spelled in tokens",
            max_items=128,
            max_chars=64,
        ),
        FieldSpec(
            "bias",
            dict,
            "raise (+) or lower (-) the log-probability of words or phrases, e.g. 사랑=-2",
            -100.0,
            100.0,
            max_items=128,
            max_chars=64,
        ),
        FieldSpec("alternatives", int, "top alternatives shown for each token", 1, 20),
    )
}

__all__ = ["FIELDS", "MAX_SEED", "STRATEGIES", "Strategy"]
