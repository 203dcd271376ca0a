"""Measuring a model on NSMC: bits per character, polarity accuracy, distinct-n.

**Bits per character (BPC).** For each review, the text the model learned is
``"<polarity> <review></s>"`` (``kolyric train``'s format). BPC is the total negative log2
probability of the review's tokens *and of the EOS that ends it*, given the polarity prefix,
divided by the review's characters **plus one for the end**. Counting the end keeps the
numerator and denominator symmetric (the EOS is what a model pays to say "the review stops
here", like the newline in enwik8's BPC) and rewards a model that knows when reviews end.
Characters are Python ``str`` characters of the review as read (stripped), so every
tokenizer is measured against the same denominator and models with different tokenizers
compare. The separator space after the polarity word belongs to the prompt format and is not
counted as a character; whatever it costs is folded into the first review token. Caveat:
a tokenizer that maps characters to ``<unk>`` pays for one cheap ``<unk>`` instead of the
real characters, so its BPC is too good; ``unk_share`` reports how often that happened.

**Polarity accuracy.** The model as a generative classifier: a review counts as correct when
log P(review + EOS | its true prefix) is strictly greater than under the other prefix
(a tie is wrong). Reviews without a polarity are skipped. NSMC's test split is ~50 % 긍정, so
0.5 is chance.

**Distinct-n.** Continuations are sampled for a fixed prompt set (``PROMPTS`` × 긍정/부정)
with the ``combined`` preset and a fixed seed (pair ``i`` uses ``seed + i``). Distinct-n is
the number of distinct n-grams over the total number of n-grams, pooled over all samples
(n-grams never cross two samples). Units are whitespace-separated words (eojeol): they do not
depend on the tokenizer and are Korean's natural spacing unit. The prompt itself is not part
of the measured text.

Everything here is a plain function over a ``LoadedModel``; the scoring pass (and how it truncates)
is ``kolyric.evaluate_scores``; the CLI is ``kolyric.cli.evaluate``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from kolyric.engine.loading import LoadedModel
from kolyric.engine.prompt import POLARITIES, normalize_polarity
from kolyric.engine.window import context_window
from kolyric.evaluate_scores import DEFAULT_BATCH_SIZE, DEFAULT_MAX_SEQ_LENGTH, ProgressFn, TextScore, score_texts
from kolyric.training.corpora import Example

METRICS = ("bpc", "accuracy", "distinct")
DEFAULT_SEED = 7
DISTINCT_PRESET = "combined"
# Short lyric openings: each is continued once under 긍정 and once under 부정.
PROMPTS: tuple[str, ...] = (
    "사랑해",
    "오늘 밤",
    "너를 처음 만난 날",
    "비가 내리면",
    "우리 함께 걷던 길",
    "잊지 못할 거야",
    "바람이 불어오면",
    "그대 없는 하루",
    "다시 시작해",
    "이 노래가 끝나면",
)


# -- bits per character ------------------------------------------------------------------------------
@dataclass(frozen=True)
class BitsPerChar:
    bits_per_char: float
    bits: float
    chars: int
    tokens: int
    examples: int
    truncated: int
    unk_tokens: int

    @property
    def bits_per_token(self) -> float:
        return self.bits / self.tokens if self.tokens else math.nan

    @property
    def unk_share(self) -> float:
        return self.unk_tokens / self.tokens if self.tokens else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "bits_per_char": _round(self.bits_per_char),
            "bits_per_token": _round(self.bits_per_token),
            "bits": _round(self.bits, 2),
            "chars": self.chars,
            "tokens": self.tokens,
            "examples": self.examples,
            "truncated": self.truncated,
            "unk_tokens": self.unk_tokens,
            "unk_share": _round(self.unk_share),
            "eos_counted": True,
        }


def summarize_bits(scores: Sequence[TextScore]) -> BitsPerChar:
    bits = sum(s.bits for s in scores)
    chars = sum(s.chars for s in scores)
    return BitsPerChar(
        bits / chars if chars else math.nan,
        bits,
        chars,
        sum(s.tokens for s in scores),
        len(scores),
        sum(s.truncated for s in scores),
        sum(s.unk_tokens for s in scores),
    )


def bits_per_char(
    loaded: LoadedModel,
    examples: Sequence[Example],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
    progress: ProgressFn | None = None,
) -> BitsPerChar:
    """BPC of ``examples`` given their own polarity prefix (none when ``polarity`` is None)."""
    scores = score_texts(
        loaded,
        [e.text for e in examples],
        [e.polarity for e in examples],
        batch_size=batch_size,
        max_seq_length=max_seq_length,
        progress=progress,
    )
    return summarize_bits(scores)


# -- polarity accuracy --------------------------------------------------------------------------------
@dataclass(frozen=True)
class PolarityAccuracy:
    accuracy: float
    correct: int
    examples: int
    ties: int
    by_polarity: dict[str, tuple[int, int]] = field(default_factory=dict)
    """polarity → (correct, examples)."""

    def to_dict(self) -> dict[str, object]:
        return {
            "accuracy": _round(self.accuracy),
            "correct": self.correct,
            "examples": self.examples,
            "ties": self.ties,
            "by_polarity": {
                p: {"accuracy": _round(c / n if n else math.nan), "correct": c, "examples": n}
                for p, (c, n) in self.by_polarity.items()
            },
        }


def _other(polarity: str) -> str:
    return POLARITIES[1] if polarity == POLARITIES[0] else POLARITIES[0]


def polarity_accuracy(
    loaded: LoadedModel,
    examples: Sequence[Example],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
    progress: ProgressFn | None = None,
    true_scores: Sequence[TextScore] | None = None,
) -> PolarityAccuracy:
    """Share of ``examples`` more likely under their own polarity prefix than under the other.

    ``true_scores`` (``score_texts`` of the same examples under their own polarity, e.g. from
    the BPC pass) saves half the forward passes.
    """
    indices = [i for i, e in enumerate(examples) if normalize_polarity(e.polarity) is not None]
    labels = [normalize_polarity(examples[i].polarity) for i in indices]
    texts = [examples[i].text for i in indices]
    opts = {"batch_size": batch_size, "max_seq_length": max_seq_length, "progress": progress, "stage": "accuracy"}
    if true_scores is None:
        true = score_texts(loaded, texts, labels, **opts)
    else:
        if len(true_scores) != len(examples):
            raise ValueError(f"true_scores: expected {len(examples)} scores, got {len(true_scores)}")
        true = [true_scores[i] for i in indices]
    other = score_texts(loaded, texts, [_other(p) for p in labels], **opts)
    by: dict[str, list[int]] = {p: [0, 0] for p in POLARITIES}
    correct = ties = 0
    for label, t, o in zip(labels, true, other):
        hit = t.bits < o.bits
        ties += t.bits == o.bits
        correct += hit
        by[label][0] += hit
        by[label][1] += 1
    n = len(labels)
    return PolarityAccuracy(correct / n if n else math.nan, correct, n, ties, {p: (c, k) for p, (c, k) in by.items()})


# -- distinct-n ------------------------------------------------------------------------------------------
def ngrams(text: str, n: int, unit: str = "word") -> list[tuple[str, ...]]:
    units = text.split() if unit == "word" else list("".join(text.split()))
    return [tuple(units[i : i + n]) for i in range(len(units) - n + 1)]


def distinct_n(texts: Sequence[str], n: int, unit: str = "word") -> float:
    """Distinct n-grams / all n-grams, pooled over ``texts``; 0.0 when there are none.

    ``unit``: ``word`` (whitespace split) or ``char`` (characters, whitespace ignored).
    """
    if n < 1:
        raise ValueError(f"n: must be at least 1, got {n}")
    if unit not in ("word", "char"):
        raise ValueError(f"unit: must be 'word' or 'char', got {unit!r}")
    grams = [g for text in texts for g in ngrams(text, n, unit)]
    return len(set(grams)) / len(grams) if grams else 0.0


@dataclass(frozen=True)
class Sample:
    prompt: str
    polarity: str
    seed: int
    text: str


@dataclass(frozen=True)
class Distinct:
    distinct_1: float
    distinct_2: float
    samples: list[Sample]
    settings: dict[str, object]
    unit: str = "word"

    def to_dict(self) -> dict[str, object]:
        return {
            "distinct_1": _round(self.distinct_1),
            "distinct_2": _round(self.distinct_2),
            "unit": self.unit,
            "preset": DISTINCT_PRESET,
            "settings": self.settings,
            "samples": [
                {"prompt": s.prompt, "polarity": s.polarity, "seed": s.seed, "text": s.text} for s in self.samples
            ],
        }


def sample_continuations(
    loaded: LoadedModel,
    prompts: Sequence[str] = PROMPTS,
    *,
    seed: int = DEFAULT_SEED,
    progress: ProgressFn | None = None,
) -> list[Sample]:
    """One ``combined``-preset continuation per prompt and polarity; pair ``i`` uses ``seed + i``."""
    from kolyric.engine.results import GenerationRequest
    from kolyric.engine.settings import preset
    from kolyric.engine.stream import Generator

    generator = Generator(loaded)
    pairs = [(p, pol) for p in prompts for pol in POLARITIES]
    samples = []
    for i, (prompt, polarity) in enumerate(pairs):
        pair_seed = (seed + i) % 2**32
        result = generator.generate(GenerationRequest(prompt, polarity, preset(DISTINCT_PRESET, seed=pair_seed)))
        samples.append(Sample(prompt, polarity, pair_seed, result.candidates[0].text))
        if progress is not None:
            progress("distinct", i + 1, len(pairs))
    return samples


def distinct_of_samples(samples: Sequence[Sample], unit: str = "word") -> Distinct:
    from kolyric.engine.settings import preset

    texts = [s.text for s in samples]
    settings = preset(DISTINCT_PRESET).to_dict()
    settings.pop("seed", None)
    return Distinct(distinct_n(texts, 1, unit), distinct_n(texts, 2, unit), list(samples), settings, unit)


# -- the whole report -----------------------------------------------------------------------------------
@dataclass
class EvalReport:
    model: str
    corpus: str
    examples: int
    batch_size: int
    max_seq_length: int
    """The limit actually applied: the smaller of the requested one and the model's window."""
    seed: int
    bits: BitsPerChar | None = None
    accuracy: PolarityAccuracy | None = None
    distinct: Distinct | None = None
    elapsed_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "corpus": self.corpus,
            "examples": self.examples,
            "bits_per_char": _round(self.bits.bits_per_char) if self.bits else None,
            "polarity_accuracy": _round(self.accuracy.accuracy) if self.accuracy else None,
            "distinct_1": _round(self.distinct.distinct_1) if self.distinct else None,
            "distinct_2": _round(self.distinct.distinct_2) if self.distinct else None,
            "details": {
                "bits": self.bits.to_dict() if self.bits else None,
                "accuracy": self.accuracy.to_dict() if self.accuracy else None,
                "distinct": self.distinct.to_dict() if self.distinct else None,
            },
            "options": {"batch_size": self.batch_size, "max_seq_length": self.max_seq_length, "seed": self.seed},
            "elapsed_s": {k: round(v, 3) for k, v in self.elapsed_s.items()},
        }

    def format(self) -> str:
        """A few aligned lines for the terminal."""
        lines = [f"model              {self.model}", f"corpus             {self.corpus} · {self.examples} texts"]
        if self.bits:
            b = self.bits
            extra = f"; {b.truncated} truncated at {self.max_seq_length} tokens" if b.truncated else ""
            lines.append(
                f"bits/char          {b.bits_per_char:.4f}   ({b.chars} chars incl. one end each, "
                f"{b.tokens} tokens, {b.bits_per_token:.3f} bits/token{extra}; "
                f"<unk> {100 * b.unk_share:.2f}% of tokens)"
            )
        if self.accuracy:
            a = self.accuracy
            parts = ", ".join(f"{p} {c / n:.3f} of {n}" for p, (c, n) in a.by_polarity.items() if n)
            lines.append(f"polarity accuracy  {a.accuracy:.4f}   ({a.correct}/{a.examples}; {parts}; 0.5 is chance)")
        if self.distinct:
            d = self.distinct
            lines.append(
                f"distinct-1 / -2    {d.distinct_1:.4f} / {d.distinct_2:.4f}   ({len(d.samples)} samples, "
                f"{d.unit}s, preset {DISTINCT_PRESET}, seed {self.seed})"
            )
        return "\n".join(lines)


def evaluate(
    loaded: LoadedModel,
    examples: Sequence[Example],
    *,
    metrics: Sequence[str] = METRICS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
    seed: int = DEFAULT_SEED,
    prompts: Sequence[str] = PROMPTS,
    corpus: str = "",
    progress: ProgressFn | None = None,
) -> EvalReport:
    """The metrics named in ``metrics`` (any of ``bpc``, ``accuracy``, ``distinct``)."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"metrics: unknown {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    report = EvalReport(
        getattr(loaded, "description", "") or str(getattr(loaded, "source", "")),
        corpus,
        len(examples),
        batch_size,
        min(max_seq_length, context_window(loaded.model.config)),
        seed,
    )
    opts = {"batch_size": batch_size, "max_seq_length": max_seq_length, "progress": progress}
    true_scores = None
    if "bpc" in metrics or "accuracy" in metrics:
        started = time.perf_counter()
        true_scores = score_texts(loaded, [e.text for e in examples], [e.polarity for e in examples], **opts)
        if "bpc" in metrics:
            report.bits = summarize_bits(true_scores)
        report.elapsed_s["bits"] = time.perf_counter() - started
    if "accuracy" in metrics:
        started = time.perf_counter()
        report.accuracy = polarity_accuracy(loaded, examples, true_scores=true_scores, **opts)
        report.elapsed_s["accuracy"] = time.perf_counter() - started
    if "distinct" in metrics:
        started = time.perf_counter()
        report.distinct = distinct_of_samples(sample_continuations(loaded, prompts, seed=seed, progress=progress))
        report.elapsed_s["distinct"] = time.perf_counter() - started
    return report


def _round(x: float, digits: int = 6) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)
