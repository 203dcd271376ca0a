"""kolyric's own decoding loop (``Generator.stream``) against plain ``model.generate``.

One run on a KoGPT2-shaped model (random weights, vocab 51,200, 12 layers, width 768, fp32,
CPU): tokens/s and time to first token for greedy, the combined sampling preset and beam 3,
with the same 32-token prompt and the same number of new tokens on both sides (min length =
max length, so neither stops early). Repetitions are interleaved, so each ratio compares runs
made moments apart and holds on a noisy machine. The goal: the stream no more than 10% slower.

    python tests/benchmarks/bench_generation.py [--tokens 64] [--reps 5] [--threads N] [--json OUT]

Time to first token: kolyric's is the first ``TokenEvent``; plain generate's the first token
handed to a streamer (beam search takes no streamer, and kolyric's beam emits at the end, so
for beam both are the whole run). Tokens/s counts new tokens over the whole call, prompt
processing included; "decode tok/s" leaves the first token out.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

PRESET_NAMES = ("greedy", "combined", "beam-3")
_CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
clock = time.perf_counter
"""What every figure is timed with: wall-clock time, or with ``--clock cpu`` (one thread) the
CPU time of this thread, which time slices taken by other processes do not inflate."""


def use_clock(name: str, threads: int | None) -> int | None:
    """Select the clock; the CPU clock needs all work on this thread, so it forces one thread."""
    global clock
    clock = _CLOCKS[name]
    return 1 if name == "cpu" else threads


@dataclass
class Run:
    tokens: int
    elapsed_s: float
    ttft_s: float
    streamed: bool = True
    """False for beam search: its tokens all arrive at the end."""

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.elapsed_s

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens after the first, over the time after the first: the steady per-token rate."""
        rest = self.elapsed_s - self.ttft_s
        return (self.tokens - 1) / rest if self.streamed and self.tokens > 1 and rest > 0 else float("nan")


def settings_for(preset_name: str, tokens: int, seed: int = 1234) -> Any:
    from kolyric.engine.settings import preset

    return preset(preset_name, min_length=tokens, max_length=tokens, seed=seed)


def generation_config(settings: Any, tokenizer: Any) -> Any:
    """The GenerationConfig that makes plain ``generate`` do what ``settings`` asks of kolyric."""
    from transformers import GenerationConfig

    sample = settings.strategy == "sample"
    warpers = {"temperature": settings.temperature, "top_k": settings.top_k, "top_p": settings.top_p} if sample else {}
    return GenerationConfig(
        do_sample=sample,
        num_beams=settings.num_beams if settings.strategy == "beam" else 1,
        **warpers,
        repetition_penalty=settings.repetition_penalty,
        no_repeat_ngram_size=settings.no_repeat_ngram_size or None,
        min_new_tokens=settings.min_length or None,
        max_new_tokens=settings.max_length,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )


class _FirstToken:
    """A generate() streamer that only notes when the first new token arrives."""

    def __init__(self, started: float):
        self.started = started
        self.calls = 0
        self.first: float | None = None

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls == 2 and self.first is None:  # the first put() is the prompt itself
            self.first = clock() - self.started

    def end(self) -> None:
        pass


def time_generate(model: Any, tokenizer: Any, prompt_ids: list[int], settings: Any) -> Run:
    """Plain ``model.generate`` on ``prompt_ids``."""
    import torch

    config = generation_config(settings, tokenizer)
    ids = torch.tensor([prompt_ids], device=model.device)
    if settings.strategy == "sample":
        torch.manual_seed(int(settings.seed))
    started = clock()
    streamer = _FirstToken(started) if settings.strategy != "beam" else None
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config, streamer=streamer)
    elapsed = clock() - started
    tokens = out.shape[1] - ids.shape[1]
    ttft = streamer.first if streamer is not None and streamer.first is not None else elapsed
    return Run(tokens, elapsed, ttft, streamer is not None)


def time_stream(generator: Any, prompt: str, settings: Any) -> Run:
    """kolyric's ``Generator.stream`` on the text ``prompt``, consumed as the app consumes it."""
    from kolyric.engine.results import DoneEvent, GenerationRequest, TokenEvent

    started = clock()
    first = None
    result = None
    for event in generator.stream(GenerationRequest(prompt, settings=settings)):
        if first is None and isinstance(event, TokenEvent):
            first = clock() - started
        elif isinstance(event, DoneEvent):
            result = event.result
    elapsed = clock() - started
    assert result is not None
    tokens = result.new_tokens // max(1, len(result.candidates))  # beam: tokens per returned beam
    return Run(tokens, elapsed, first if first is not None else elapsed, settings.strategy != "beam")


def interleaved(
    contenders: dict[str, Callable[[], Run]],
    reps: int,
    warmup: int = 1,
    on_rep: Callable[[int, dict[str, Run]], None] | None = None,
) -> dict[str, list[Run]]:
    """Run every contender once per repetition, rotating who goes first; warm-up runs dropped."""
    names = list(contenders)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for rep in range(warmup + reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        this: dict[str, Run] = {}
        for name in order:
            gc.collect()
            this[name] = contenders[name]()
        if rep >= warmup:
            for name in names:
                runs[name].append(this[name])
            if on_rep:
                on_rep(rep - warmup, this)
    return runs


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def paired_ratio(runs: dict[str, list[Run]], a: str, b: str, attr: str = "tokens_per_s") -> float:
    """Median over repetitions of a's figure / b's figure in the same repetition."""
    return median([getattr(x, attr) / getattr(y, attr) for x, y in zip(runs[a], runs[b])])


def summary_row(name: str, runs: list[Run]) -> dict:
    return {
        "name": name,
        "tokens": runs[0].tokens if runs else 0,
        "tokens_per_s": median([r.tokens_per_s for r in runs]),
        "decode_tokens_per_s": median([r.decode_tokens_per_s for r in runs]),
        "ttft_ms": median([r.ttft_s * 1e3 for r in runs]),
        "spread_tokens_per_s": (min(r.tokens_per_s for r in runs), max(r.tokens_per_s for r in runs)),
    }


def print_rows(rows: list[dict], extra: Callable[[dict], str] | None = None) -> None:
    print(f"  {'':28} {'tok/s':>7} {'(min-max)':>15} {'decode tok/s':>12} {'TTFT ms':>8}")
    for row in rows:
        lo, hi = row["spread_tokens_per_s"]
        tail = extra(row) if extra else ""
        print(
            f"  {row['name']:28} {row['tokens_per_s']:7.1f} {f'({lo:.1f}-{hi:.1f})':>15} "
            f"{row['decode_tokens_per_s']:12.1f} {row['ttft_ms']:8.0f}{tail}"
        )


def load_line() -> str:
    """The machine's load average: figures taken under load are slower, ratios less so."""
    try:
        one, five, _ = os.getloadavg()
    except (AttributeError, OSError):
        return "load average: unknown"
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def setup(threads: int | None) -> tuple[Any, Any, str, list[int]]:
    """The KoGPT2-shaped model (fp32), a Generator over it, and the 32-token prompt."""
    import torch

    from kolyric.engine.stream import Generator

    from tests.benchmarks._kogpt2_shape import kogpt2_shaped, prompt_text_of_tokens

    if threads:
        torch.set_num_threads(threads)
    loaded = kogpt2_shaped()
    text = prompt_text_of_tokens(loaded.tokenizer, 32)
    generator = Generator(loaded)
    prompt_ids, _ = generator.prompt_ids(_request(text), 64)
    assert len(prompt_ids) == 32, len(prompt_ids)
    return loaded, generator, text, prompt_ids


def _request(text: str) -> Any:
    from kolyric.engine.results import GenerationRequest

    return GenerationRequest(text)


def add_timing_arguments(parser: argparse.ArgumentParser) -> None:
    """--tokens, --reps, --threads and --clock: how the generation benchmarks time a contender."""
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per run (min = max length)")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per contender")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall-clock time, or this thread's CPU time (one thread; for a busy machine)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_timing_arguments(parser)
    parser.add_argument("--presets", default=",".join(PRESET_NAMES), help="comma-separated presets")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = parser.parse_args(argv)

    import torch

    loaded, generator, text, prompt_ids = setup(use_clock(args.clock, args.threads))
    print(
        f"model: KoGPT2-shaped GPT-2, {loaded.n_params / 1e6:.1f}M params, vocab {len(loaded.tokenizer)}, "
        f"cpu fp32, {torch.get_num_threads()} threads, torch {torch.__version__}, {args.clock} clock"
    )
    print(f"prompt: {len(prompt_ids)} tokens; {args.tokens} new tokens per run; {args.reps} interleaved reps")
    print(f"before: {load_line()}\n")
    report: dict[str, Any] = {
        "tokens": args.tokens,
        "reps": args.reps,
        "threads": torch.get_num_threads(),
        "presets": {},
    }
    worst = 0.0
    for name in [p.strip() for p in args.presets.split(",") if p.strip()]:
        settings = settings_for(name, args.tokens)
        runs = interleaved(
            {
                "generate": lambda: time_generate(loaded.model, loaded.tokenizer, prompt_ids, settings),
                "kolyric stream": lambda: time_stream(generator, text, settings),
            },
            args.reps,
        )
        ratio = paired_ratio(runs, "kolyric stream", "generate")
        slower = 1.0 - ratio
        worst = max(worst, slower)
        print(f"{name}:")
        print_rows([summary_row(n, r) for n, r in runs.items()])
        print(
            f"  stream / generate tokens/s: {ratio:.3f}  ({'slower' if slower > 0 else 'faster'} by "
            f"{abs(slower) * 100:.1f}%; goal: no more than 10% slower)\n"
        )
        report["presets"][name] = {"rows": [summary_row(n, r) for n, r in runs.items()], "ratio": ratio}
    print(f"after: {load_line()}")
    verdict = "PASS" if worst <= 0.10 else "FAIL"
    print(f"{verdict}: worst slowdown of the stream against plain generate: {worst * 100:.1f}%")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
