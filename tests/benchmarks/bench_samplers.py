"""What each sampler costs a decoding step, and what DRY does to repetition. One run prints:

1. on the KoGPT2-shaped model (random weights, vocab 51,200, 12 layers, width 768) in int8
   (decoding steps on ONNX Runtime when it is installed), per token: the step, its forward
   pass, the logits processors (each one's µs), and the rest (softmax, top alternatives, the
   draw, bookkeeping), for greedy, the combined preset, and combined plus each sampler; with the
   time outside the forward pass as a share of the step (goal: at most 10% with combined + min-p
   + DRY);
2. greedy against combined sampling decode tok/s at ``--threads`` (default 2), interleaved,
   and the sampling step's share outside the forward pass (goal: within 10% of greedy, and
   at most 10% of a step);
3. on the shipped model (kolyric-mini), the repetition rate: repeated token 4-grams per 100
   generated tokens, over 50 samples, without and with DRY (and with combined's no-repeat rule).

    OMP_NUM_THREADS=2 python tests/benchmarks/bench_samplers.py [--tokens 48] [--reps 3] [--threads 2]
                                                                [--skip-speed] [--skip-repetition] [--json OUT]

The machine's load average is printed beside the figures: read the ratios on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks import bench_generation as bg

COMBINED_PLUS = {
    "combined": {},
    "+ min-p 0.05": {"min_p": 0.05},
    "+ typical-p 0.9": {"typical_p": 0.9},
    "+ epsilon 3e-4": {"epsilon": 3e-4},
    "+ eta 3e-4": {"eta": 3e-4},
    "+ top-n-sigma 1.0": {"top_n_sigma": 1.0},
    "+ XTC 0.5/0.1": {"xtc_probability": 0.5, "xtc_threshold": 0.1},
    "+ DRY 0.8": {"dry_multiplier": 0.8},
    "+ dynatemp ±0.3": {"dynatemp_range": 0.3},
    "+ mirostat 5": {"mirostat_tau": 5.0},
    "+ bias 3 phrases": {"bias": {"사랑": -2.0, "그대": 1.0, "눈물": -1.0}},
    "+ min-p + DRY": {"min_p": 0.05, "dry_multiplier": 0.8},
}
OTHER = {"greedy": ("greedy", {}), "lyrics-min-p (no top-k)": ("lyrics-min-p", {}), "lyrics-dry": ("lyrics-dry", {})}


class Timer:
    def __init__(self) -> None:
        self.total = 0.0


def _timed_class(cls: type, timer: Timer, methods: tuple[str, ...]) -> type:
    """A subclass of ``cls`` whose ``methods`` add their time to ``timer`` (isinstance still holds)."""

    def wrap(name: str) -> Callable:
        inner = getattr(cls, name)

        def timed(self: object, *args: object, **kwargs: object) -> object:
            t = bg.clock()
            try:
                return inner(self, *args, **kwargs)
            finally:
                timer.total += bg.clock() - t

        return timed

    return type(f"Timed{cls.__name__}", (cls,), {name: wrap(name) for name in methods})


def breakdown(generator: object, text: str, settings: object) -> dict:
    """Per-token ms of the steps after the first: forward, each processor, detokenizer, rest."""
    from kolyric.engine import processors as lean
    from kolyric.engine.prompt import Detokenizer
    from kolyric.engine.results import GenerationRequest, TokenEvent

    forward, detok = Timer(), Timer()
    timers: dict[str, Timer] = {}
    model = generator.model
    decoder = getattr(model, "kolyric_decoder", None)
    inner = decoder if decoder is not None else model

    def timed_forward(*args: object, **kwargs: object) -> object:
        t = bg.clock()
        out = inner(*args, **kwargs)
        forward.total += bg.clock() - t
        return out

    original = generator.processors

    def timed_processors(*args: object, **kwargs: object) -> object:
        chain = original(*args, **kwargs)
        for processor in chain:
            cls = type(processor)
            timer = timers.setdefault(cls.__name__, Timer())
            if isinstance(processor, lean.PoolWarper):
                methods = ("warp",)
            elif callable(getattr(processor, "lower_pool", None)):  # a Lowering: its __call__ is these
                methods = ("follow", "lower_pool", "lower_row")
            else:
                methods = ("__call__", "pool") if hasattr(cls, "pool") else ("__call__",)
            processor.__class__ = _timed_class(cls, timer, methods)
        return chain

    push = Detokenizer.push

    def timed_push(self: object, *args: object) -> str:
        t = bg.clock()
        out = push(self, *args)
        detok.total += bg.clock() - t
        return out

    model.kolyric_decoder = timed_forward
    generator.processors = timed_processors
    Detokenizer.push = timed_push
    stamps: list[float] = []
    first: dict[str, float] = {}
    try:
        for event in generator.stream(GenerationRequest(text, settings=settings)):
            if isinstance(event, TokenEvent):
                stamps.append(bg.clock())
                if len(stamps) == 1:
                    first = {"forward": forward.total, "detok": detok.total, **{k: t.total for k, t in timers.items()}}
    finally:
        if decoder is not None:
            model.kolyric_decoder = decoder
        else:
            del model.kolyric_decoder
        del generator.processors
        Detokenizer.push = push
    steps = len(stamps) - 1
    step = (stamps[-1] - stamps[0]) / steps * 1e3
    per_us = {k: (t.total - first.get(k, 0.0)) / steps * 1e6 for k, t in timers.items()}
    fwd = (forward.total - first["forward"]) / steps * 1e3
    det = (detok.total - first["detok"]) / steps * 1e3
    procs = sum(per_us.values()) / 1e3
    return {
        "step_ms": step,
        "forward_ms": fwd,
        "processors_us": procs * 1e3,
        "detok_us": det * 1e3,
        "rest_us": (step - fwd - procs - det) * 1e3,
        "outside_share": 1 - fwd / step,
        "per_us": per_us,
    }


def median_of(rows: list[dict]) -> dict:
    out = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "per_us"}
    out["per_us"] = {k: statistics.median(r["per_us"].get(k, 0.0) for r in rows) for k in rows[0]["per_us"]}
    return out


def micro(args: argparse.Namespace, report: dict) -> None:
    """Each configuration's processors and draw alone, per token, on the KoGPT2-shaped model's own
    logits (51,200 entries) over a growing sequence: CPU time of this thread (one thread), so
    other processes' time slices stay out; median of ``--micro-steps`` steps, µs."""
    import torch

    from kolyric.engine import sampling
    from kolyric.engine.settings import preset
    from kolyric.engine.stream import Generator

    from tests.benchmarks._kogpt2_shape import kogpt2_shaped, prompt_text_of_tokens

    torch.set_num_threads(1)
    loaded = kogpt2_shaped()
    gen = Generator(loaded)
    text = prompt_text_of_tokens(loaded.tokenizer, 32)
    prompt, _ = gen.prompt_ids(bg._request(text), 64)
    with torch.inference_mode():
        rows = loaded.model(torch.tensor([prompt] * 8)).logits[0, -8:].float()  # 8 real score rows
    configs = {name: preset(p, **extra) for name, (p, extra) in OTHER.items()}
    configs.update({name: preset("combined", **extra) for name, extra in COMBINED_PLUS.items()})
    print(
        f"\nprocessors + draw per token, alone (CPU time, 1 thread, median of {args.micro_steps} steps; "
        f"{bg.load_line()}):"
    )
    table = {}
    for name, settings in configs.items():
        settings = settings.replace(seed=5)
        procs = sampling.processor_chain(settings, len(prompt), None, gen.eos_id, loaded.tokenizer)
        rngs = [torch.Generator().manual_seed(5)]
        seqs = torch.tensor([prompt])
        times = []
        with torch.inference_mode():
            for step in range(args.micro_steps):
                logits = rows[step % len(rows)].clone()[None, :]
                t = time.thread_time()
                if settings.strategy == "greedy":
                    from kolyric.engine import processors as lean

                    token = lean.argmax(procs.base(seqs, logits))
                else:
                    token = torch.as_tensor(sampling.sample(procs, seqs, logits, rngs, gen.eos_id), dtype=torch.long)
                times.append(time.thread_time() - t)
                seqs = torch.cat([seqs, token[:, None]], dim=1)
        table[name] = statistics.median(times) * 1e6
        print(f"  {name:26} {table[name]:8.0f} µs")
    report["micro_us"] = table


def speed(args: argparse.Namespace, report: dict) -> None:
    import torch

    from kolyric.engine.settings import preset
    from kolyric.engine.stream import Generator

    from tests.benchmarks._kogpt2_shape import kogpt2_shaped_dir, prompt_text_of_tokens
    from tests.benchmarks.bench_int8 import load_int8

    threads = bg.use_clock(args.clock, args.threads)
    torch.set_num_threads(threads)
    path = kogpt2_shaped_dir()
    started = time.perf_counter()
    loaded = load_int8(path, "onnxruntime") or load_int8(path, "torch")
    print(
        f"KoGPT2-shaped int8 loaded in {time.perf_counter() - started:.0f} s; {threads} threads, {args.clock} clock; "
        f"{bg.load_line()}"
    )
    gen = Generator(loaded)
    text = prompt_text_of_tokens(loaded.tokenizer, 32)
    configs = {name: preset(p, **extra) for name, (p, extra) in OTHER.items()}
    configs.update({name: preset("combined", **extra) for name, extra in COMBINED_PLUS.items()})
    configs = {n: s.replace(min_length=args.tokens, max_length=args.tokens, seed=1234) for n, s in configs.items()}
    rows: dict[str, list[dict]] = {name: [] for name in configs}
    for rep in range(args.reps + 1):  # the first round warms up
        for name, settings in configs.items():
            result = breakdown(gen, text, settings)
            if rep:
                rows[name].append(result)
    print(f"\nper token, {args.tokens} new tokens after a 32-token prompt, median of {args.reps} ({bg.load_line()}):")
    print(f"  {'':26} {'step ms':>8} {'forward':>8} {'procs µs':>9} {'rest µs':>8} {'outside':>8}   processors (µs)")
    table = {}
    for name, found in rows.items():
        m = median_of(found)
        table[name] = m
        parts = ", ".join(f"{k} {v:.0f}" for k, v in m["per_us"].items())
        print(
            f"  {name:26} {m['step_ms']:8.2f} {m['forward_ms']:8.2f} {m['processors_us']:9.0f} "
            f"{m['rest_us']:8.0f} {m['outside_share']:7.1%}   {parts}"
        )
    report["per_token"] = table
    goal = table["+ min-p + DRY"]["outside_share"]
    print(
        f"goal: combined + min-p + DRY outside the forward pass {goal:.1%} of a step (<= 10%): "
        f"{'met' if goal <= 0.10 else 'NOT met'}"
    )

    greedy, sample = configs["greedy"], configs["combined"]
    runs = bg.interleaved(
        {"greedy": lambda: bg.time_stream(gen, text, greedy), "combined": lambda: bg.time_stream(gen, text, sample)},
        args.reps,
    )
    ratio = bg.paired_ratio(runs, "combined", "greedy", "decode_tokens_per_s")
    g = bg.median([r.decode_tokens_per_s for r in runs["greedy"]])
    c = bg.median([r.decode_tokens_per_s for r in runs["combined"]])
    report["sampling_vs_greedy"] = {
        "greedy_tok_s": g,
        "combined_tok_s": c,
        "ratio": ratio,
        "threads": threads,
        "clock": args.clock,
        "load": bg.load_line(),
    }
    print(
        f"\ndecode at {threads} thread(s), {args.clock} clock ({bg.load_line()}): greedy {g:.1f} tok/s, "
        f"combined {c:.1f} tok/s, "
        f"combined/greedy {ratio:.2f} (goal >= 0.90: {'met' if ratio >= 0.9 else 'NOT met'}); combined's "
        f"step outside the forward pass {table['combined']['outside_share']:.1%}"
    )


def repeated_4grams(ids: list[int]) -> int:
    seen: set[tuple[int, ...]] = set()
    repeats = 0
    for i in range(len(ids) - 3):
        gram = tuple(ids[i : i + 4])
        repeats += gram in seen
        seen.add(gram)
    return repeats


NO_LINE_BREAKER = (":", '"', "*")
REPETITION = {
    "sample t0.9 k50 p0.92": ("combined", {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0}),
    "  + DRY 0.8, line break a breaker": (
        "combined",
        {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "dry_multiplier": 0.8},
    ),
    "  + DRY 0.8, line break no breaker": (
        "combined",
        {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "dry_multiplier": 0.8, "dry_breakers": NO_LINE_BREAKER},
    ),
    "sample t0.6 k50": ("top-k-50", {"temperature": 0.6}),
    "  + DRY 0.8, line break no breaker ": (
        "top-k-50",
        {"temperature": 0.6, "dry_multiplier": 0.8, "dry_breakers": NO_LINE_BREAKER},
    ),
    "lyrics-dry": ("lyrics-dry", {}),
    "combined (no-repeat 3, penalty 1.5)": ("combined", {}),
    "greedy": ("greedy", {}),
    "greedy + DRY 0.8, line break a breaker": ("greedy", {"dry_multiplier": 0.8}),
    "greedy + DRY 0.8, line break no breaker": ("greedy", {"dry_multiplier": 0.8, "dry_breakers": NO_LINE_BREAKER}),
}
PROMPTS = ("", "사랑해", "그대 없는 밤", "눈물이 흘러", "바람이 분다")


def repetition(args: argparse.Namespace, report: dict) -> None:
    from kolyric.engine.loading import load_model
    from kolyric.engine.results import GenerationRequest
    from kolyric.engine.settings import preset
    from kolyric.engine.stream import Generator

    gen = Generator(load_model("mini", device="cpu"))
    print(
        f"\nrepetition on kolyric-mini: {args.samples} samples of {args.rep_tokens} tokens each "
        f"({len(PROMPTS)} prompts; {bg.load_line()}):"
    )
    print(f"  {'':50} {'repeated 4-grams / 100 tokens':>30} {'samples with any':>17}")
    table = {}
    for name, (base, extra) in REPETITION.items():
        repeats = tokens = hit = 0
        count = len(PROMPTS) if base == "greedy" else args.samples  # greedy: one text per prompt
        for i in range(count):
            settings = preset(base, **extra, seed=1000 + i, min_length=args.rep_tokens, max_length=args.rep_tokens)
            result = gen.generate(GenerationRequest(PROMPTS[i % len(PROMPTS)], settings=settings))
            ids = result.candidates[0].token_ids
            r = repeated_4grams(ids)
            repeats, tokens, hit = repeats + r, tokens + len(ids), hit + (r > 0)
        rate = 100 * repeats / max(1, tokens)
        table[name] = {"per_100_tokens": rate, "samples_with_repeats": hit, "samples": count, "tokens": tokens}
        print(f"  {name:50} {rate:30.2f} {f'{hit}/{count}':>17}")
    report["repetition"] = table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--rep-tokens", type=int, default=100)
    parser.add_argument("--micro-steps", type=int, default=300)
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="for the step breakdown: wall-clock, or this thread's CPU time (one thread)",
    )
    parser.add_argument("--skip-micro", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-repetition", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    report: dict = {}
    if not args.skip_micro:
        micro(args, report)
    if not args.skip_speed:
        speed(args, report)
    if not args.skip_repetition:
        repetition(args, report)
    if args.json:
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
