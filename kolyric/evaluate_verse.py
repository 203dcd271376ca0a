"""Measuring a model on verse: a ``.jsonl`` of poems (or any texts with line breaks).

**Bits per character** over whole poems, line (``\\n``) and stanza (``\\n\\n``) breaks counted as
characters like any other, plus one character for the end (the EOS), as ``kolyric.evaluate``
counts reviews. A poem longer than the model's window is scored with a sliding window: each
window after the first starts half a window back, so every token is scored exactly once and
with at least half a window of the poem before it. The first token is scored after the
tokenizer's start token, as ``kolyric.evaluate`` does for texts without a prefix.

**Tokenizing.** ``<unk>`` share of the poems' tokens; whether the tokenizer has line and stanza
break tokens of its own; the share of poems that come back unchanged from encode + decode.

**Sampled lines.** One continuation per prompt with no polarity (the ``combined`` preset, seed
``seed + i``). Prompts are the first lines of the poems evaluated. A sample's lines are its
text split at line breaks; the last one is dropped when the sample stopped on its length
limit (it was cut, not ended). Reported: the share of samples that wrote a line break at all,
the spread of Hangul syllables per line (beside the same spread of the poems' own lines), the
share of lines holding a movie-review marker (``영화``, ``ㅋㅋ``, ``평점`` …: the other register
of a model trained with NSMC), and the **copy rate**: the share of sampled lines of at least
``MIN_COPY_SYLLABLES`` syllables found verbatim (spaces folded) among the lines of the training
verse. A small model memorises a small corpus; this says how much it recites.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kolyric.korean import count_syllables

if TYPE_CHECKING:
    from kolyric.engine.loading import LoadedModel

ProgressFn = Callable[[str, int, int], None]
MIN_COPY_SYLLABLES = 4
SAMPLE_PRESET = "combined"
SAMPLE_MAX_LENGTH = 60
REVIEW_MARKERS = re.compile(r"영화|평점|별점|배우|연기|감독|스토리|드라마|ㅋㅋ|ㅎㅎ|\^\^|ㅠㅠ|재밌|재미")


@dataclass(frozen=True)
class Spread:
    """Hangul syllables per line."""

    lines: int
    mean: float
    stdev: float
    quartiles: tuple[int, int, int]
    low: int
    high: int

    @classmethod
    def of(cls, lines: Sequence[str]) -> Spread | None:
        counts = [count_syllables(line) for line in lines if line.strip()]
        if not counts:
            return None
        q = statistics.quantiles(counts, n=4, method="inclusive") if len(counts) > 1 else [counts[0]] * 3
        return cls(
            len(counts),
            statistics.fmean(counts),
            statistics.pstdev(counts),
            (round(q[0]), round(q[1]), round(q[2])),
            min(counts),
            max(counts),
        )

    def format(self) -> str:
        return (
            f"{self.mean:.1f} ± {self.stdev:.1f} syllables (quartiles {self.quartiles[0]}/{self.quartiles[1]}/"
            f"{self.quartiles[2]}, {self.low}–{self.high}, {self.lines} lines)"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "lines": self.lines,
            "mean": round(self.mean, 3),
            "stdev": round(self.stdev, 3),
            "quartiles": list(self.quartiles),
            "min": self.low,
            "max": self.high,
        }


@dataclass
class VerseReport:
    poems: int
    bits: float
    chars: int
    tokens: int
    unk_tokens: int
    line_tokens: bool
    """The tokenizer has line and stanza break tokens of its own."""
    round_trips: int
    """Poems that encode + decode gives back unchanged."""
    samples: list[str] = field(default_factory=list)
    sample_lines: list[str] = field(default_factory=list)
    samples_with_break: int = 0
    review_lines: int = 0
    copied: list[str] = field(default_factory=list)
    copy_checked: int = 0
    sample_spread: Spread | None = None
    poem_spread: Spread | None = None

    @property
    def bits_per_char(self) -> float:
        return self.bits / self.chars if self.chars else math.nan

    @property
    def unk_share(self) -> float:
        return self.unk_tokens / self.tokens if self.tokens else 0.0

    @property
    def copy_rate(self) -> float:
        return len(self.copied) / self.copy_checked if self.copy_checked else 0.0

    def format(self) -> str:
        lines = [
            f"verse bits/char    {self.bits_per_char:.4f}   ({self.poems} poems, {self.chars} chars incl. "
            f"line breaks and one end each, {self.tokens} tokens)",
            f"tokenizing         <unk> {100 * self.unk_share:.2f}% of tokens · line break tokens: "
            f"{'yes' if self.line_tokens else 'no'} · {self.round_trips}/{self.poems} poems round-trip",
        ]
        if self.poem_spread:
            lines.append(f"poems' lines       {self.poem_spread.format()}")
        if self.samples:
            n = len(self.samples)
            lines.append(f"sampled            {n} samples, {self.samples_with_break}/{n} wrote a line break")
            if self.sample_spread:
                lines.append(f"sampled lines      {self.sample_spread.format()}")
            lines.append(
                f"review register    {self.review_lines}/{len(self.sample_lines)} sampled lines hold a "
                f"movie-review marker"
            )
            lines.append(
                f"copy rate          {self.copy_rate:.3f}   ({len(self.copied)}/{self.copy_checked} lines of "
                f"≥ {MIN_COPY_SYLLABLES} syllables found verbatim in the training verse)"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {
            "bits_per_char": _round(self.bits_per_char),
            "bits": round(self.bits, 2),
            "chars": self.chars,
            "tokens": self.tokens,
            "poems": self.poems,
            "unk_tokens": self.unk_tokens,
            "unk_share": _round(self.unk_share),
            "line_break_tokens": self.line_tokens,
            "round_trips": self.round_trips,
            "samples": self.samples,
            "samples_with_line_break": self.samples_with_break,
            "review_marker_lines": self.review_lines,
            "sampled_lines": len(self.sample_lines),
            "copy_rate": _round(self.copy_rate),
            "copied_lines": self.copied,
            "copy_checked": self.copy_checked,
            "sample_spread": self.sample_spread.to_dict() if self.sample_spread else None,
            "poem_spread": self.poem_spread.to_dict() if self.poem_spread else None,
            "min_copy_syllables": MIN_COPY_SYLLABLES,
            "preset": SAMPLE_PRESET,
        }


def poem_lines(texts: Sequence[str]) -> list[str]:
    return [line.strip() for text in texts for line in text.split("\n") if line.strip()]


def _fold(line: str) -> str:
    return " ".join(line.split())


def score_poems(
    loaded: LoadedModel, texts: Sequence[str], progress: ProgressFn | None = None
) -> tuple[float, int, int, int]:
    """(bits, chars, tokens, unk tokens) of ``texts`` + EOS each, every token scored once (see
    the module docstring for the sliding window)."""
    import torch

    from kolyric.engine.window import context_window

    model, tokenizer = loaded.model, loaded.tokenizer
    eos, unk = tokenizer.eos_token_id, tokenizer.unk_token_id
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    if start is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to start a poem")
    window = max(2, context_window(model.config))
    device = next(model.parameters()).device
    bits = 0.0
    chars = tokens = unks = 0
    with torch.inference_mode():
        for done, text in enumerate(texts, start=1):
            ids = tokenizer.encode(text, add_special_tokens=False) + ([eos] if eos is not None else [])
            seq = [start, *ids]
            scored_to, begin = 1, 0  # seq[scored_to] is the next target to score
            while scored_to < len(seq):
                end = min(begin + window, len(seq))
                chunk = torch.tensor([seq[begin:end]], device=device)
                logp = torch.log_softmax(model(input_ids=chunk).logits[0].float(), dim=-1)
                targets = torch.tensor(seq[scored_to:end], device=device)
                rows = torch.arange(scored_to - begin - 1, end - begin - 1, device=device)
                bits -= float(logp[rows, targets].sum()) / math.log(2)
                scored_to = end
                begin = max(0, scored_to - window // 2)
            chars += len(text) + (1 if eos is not None else 0)
            tokens += len(ids)
            unks += sum(1 for t in ids if t == unk) if unk is not None else 0
            if progress is not None:
                progress("verse", done, len(texts))
    return bits, chars, tokens, unks


def sample_verse(
    loaded: LoadedModel, prompts: Sequence[str], *, seed: int, progress: ProgressFn | None = None
) -> list[tuple[str, bool]]:
    """One continuation per prompt, no polarity: (text, stopped on its length limit)."""
    from kolyric.engine.results import GenerationRequest
    from kolyric.engine.settings import preset
    from kolyric.engine.stream import Generator

    generator = Generator(loaded)
    out = []
    for i, prompt in enumerate(prompts):
        settings = preset(SAMPLE_PRESET, seed=(seed + i) % 2**32, max_length=SAMPLE_MAX_LENGTH)
        candidate = generator.generate(GenerationRequest(prompt, None, settings)).candidates[0]
        out.append((candidate.text, candidate.finish_reason == "length"))
        if progress is not None:
            progress("samples", i + 1, len(prompts))
    return out


def evaluate_verse(
    loaded: LoadedModel,
    texts: Sequence[str],
    *,
    train_texts: Sequence[str] = (),
    samples: int = 20,
    seed: int = 7,
    progress: ProgressFn | None = None,
) -> VerseReport:
    """The verse report for ``texts`` (held-out poems); ``train_texts`` is the verse the model
    was trained on, for the copy rate; ``samples`` continuations are drawn (0: none)."""
    from kolyric.training.scratch import keeps_line_breaks

    tokenizer = loaded.tokenizer
    bits, chars, tokens, unks = score_poems(loaded, texts, progress)
    round_trips = sum(
        1
        for t in texts
        if tokenizer.decode(tokenizer.encode(t, add_special_tokens=False), clean_up_tokenization_spaces=False) == t
    )
    report = VerseReport(
        len(texts),
        bits,
        chars,
        tokens,
        unks,
        keeps_line_breaks(tokenizer),
        round_trips,
        poem_spread=Spread.of(poem_lines(texts)),
    )
    if samples <= 0:
        return report
    firsts = [t.split("\n", 1)[0].strip() for t in texts if t.strip()]
    prompts = [firsts[i % len(firsts)] for i in range(samples)]
    known = {_fold(line) for line in poem_lines(train_texts)}
    for text, cut in sample_verse(loaded, prompts, seed=seed, progress=progress):
        report.samples.append(text)
        report.samples_with_break += "\n" in text.strip()
        lines = [line.strip() for line in text.split("\n")]
        if cut and len(lines) > 1:
            lines = lines[:-1]
        lines = [line for line in lines if line]
        report.sample_lines.extend(lines)
        report.review_lines += sum(1 for line in lines if REVIEW_MARKERS.search(line))
        for line in lines:
            if count_syllables(line) >= MIN_COPY_SYLLABLES:
                report.copy_checked += 1
                if _fold(line) in known:
                    report.copied.append(line)
    report.sample_spread = Spread.of(report.sample_lines)
    return report


def _round(x: float, digits: int = 6) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)
