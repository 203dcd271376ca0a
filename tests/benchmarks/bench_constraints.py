"""What lyric constraints cost per token on a KoGPT2-sized model (51,200-entry vocabulary, CPU).

    .venv/bin/python tests/benchmarks/bench_constraints.py
    .venv/bin/python tests/benchmarks/bench_constraints.py --strategies greedy,beam --prompts 4 --lines 4 --scheme AABB

Prints, per decoding strategy, the share of generated lines that meet the constraints and the
tokens/s with and without them, side by side from one run: each constrained generation is
followed by an unconstrained one of the same length (min_length = max_length = its token
count), so both decode the same number of tokens from the same prompt. Then the cost of the
constraint processor alone per step (mask lookup, state update), replayed on the constrained
outputs, against the model's own step time. The one-time costs (profiling the vocabulary,
building the masks for a rhyme) are reported apart. Goal: a constrained step costs at most 20%
more than a plain one.

Not collected by pytest (tests/benchmarks is excluded); the model has random weights (see
_kogpt2_shape.py), which changes nothing about the cost of a step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PRESETS = {"greedy": "greedy", "sample": "combined", "beam": "beam-3"}
PROMPTS = ["사랑", "그대", "오늘", "하늘", "바람", "노래", "추억", "눈물", "내일", "우리", "별빛", "꿈"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategies", default="greedy,sample,beam", help="comma-separated: greedy,sample,beam")
    parser.add_argument("--prompts", type=int, default=6, help="prompts per strategy (each with its own seed)")
    parser.add_argument("--syllables", type=int, default=8)
    parser.add_argument("--rhyme", default="랑")
    parser.add_argument("--lines", type=int, default=2)
    parser.add_argument("--scheme", default=None, help="e.g. AABB (default: every line rhymes with --rhyme)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu (the benchmark's subject) or cuda")
    parser.add_argument("--precision", default="fp32", help="fp32, int8 (the CPU default for this size: auto), ...")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from kolyric.engine.loading import load_model
    from kolyric.engine.lyric.spec import LyricConstraints
    from kolyric.engine.lyric.vocab_profile import profile_for
    from kolyric.engine.results import GenerationRequest
    from kolyric.engine.settings import preset
    from kolyric.engine.stream import Generator

    from tests.benchmarks._kogpt2_shape import kogpt2_shaped_dir

    loaded = load_model(str(kogpt2_shaped_dir()), device=args.device, precision=args.precision)
    gen = Generator(loaded)
    size = int(gen.model.config.vocab_size)
    constraints = LyricConstraints(syllables=args.syllables, rhyme=args.rhyme, lines=args.lines, scheme=args.scheme)
    print(
        f"model: {loaded.description}; vocabulary {len(gen.tokenizer)} (output {size}); "
        f"torch threads {torch.get_num_threads()}"
    )
    print(
        f"constraints: {constraints.describe()}; line end: "
        f"{'newline' if gen._separator == chr(10) else 'word boundary (no newline token)'}"
    )

    t0 = time.perf_counter()
    profile = profile_for(gen.tokenizer, size)
    t_profile = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm = GenerationRequest("", None, preset("greedy", max_length=1), constraints=constraints)
    state = gen.constraint_state(constraints, 1, warm)
    state.mask_of(state.root)
    t_masks = time.perf_counter() - t0
    print(
        f"one-time: vocabulary profile {t_profile:.2f} s (cached per tokenizer), first masks for this "
        f"rhyme {t_masks * 1e3:.0f} ms (cached); usable tokens on a counted line: "
        f"{int((profile.exact & profile.additive & ~profile.special & ~profile.has_break).sum())}"
    )

    header = (
        f"{'strategy':<8} {'lines met':>10} {'tok/s constrained':>18} {'tok/s plain':>12} {'step cost':>10} "
        f"{'processor/step':>15} {'share of plain step':>20}"
    )
    print()
    print(header)
    print("-" * len(header))
    worst = 0.0
    for strategy in args.strategies.split(","):
        met = total = 0
        c_tokens = c_time = p_tokens = p_time = 0.0
        outputs = []
        warm = preset(PRESETS[strategy], seed=99, max_length=8)  # kernels, caches and masks warmed up first
        gen.generate(GenerationRequest("노래", None, warm, constraints=constraints))
        gen.generate(GenerationRequest("노래", None, warm))
        for i in range(args.prompts):
            prompt = PROMPTS[i % len(PROMPTS)]
            settings = preset(PRESETS[strategy], seed=i, max_length=args.max_length)
            request = GenerationRequest(prompt, None, settings, constraints=constraints)
            first = gen.generate(request)  # its length sets the plain run's; the same seed repeats it below
            length = max(1, len(first.candidates[0].token_ids))
            runs = [lambda: gen.generate(request), lambda: plain_run(gen, prompt, strategy, i, length)]
            if i % 2:  # alternate which runs first, so drift in the machine's speed cancels out
                runs.reverse()
            timed = [run() for run in runs]
            constrained, plain = timed if not i % 2 else timed[::-1]
            c_tokens += constrained.new_tokens
            c_time += constrained.elapsed_s
            p_tokens += plain.new_tokens
            p_time += plain.elapsed_s
            for cand in constrained.candidates:
                total += constraints.n_lines
                met += sum(line.ok for line in cand.constraint_report.lines)
            outputs.append((prompt, settings, constrained.prompt_tokens, constrained.candidates[0].token_ids))
        per_step = processor_cost(gen, constraints, outputs, strategy, args.device)
        c_rate, p_rate = c_tokens / c_time, p_tokens / p_time
        plain_step = p_time / p_tokens
        overhead = c_rate and (p_rate / c_rate - 1)
        worst = max(worst, per_step / plain_step)
        print(
            f"{strategy:<8} {met:>4}/{total:<5} {c_rate:>18.2f} {p_rate:>12.2f} {overhead:>+9.1%} "
            f"{per_step * 1e6:>12.0f} µs {per_step / plain_step:>19.2%}"
        )
    print()
    print(
        "step cost: the constrained run's time per token over the plain run's (same prompts and lengths; "
        "includes run-to-run noise). processor/step: the constraint processor alone, per step."
    )
    print(
        f"goal: a constrained step costs at most 20% more -> processor share of a plain step {worst:.2%}: "
        f"{'met' if worst <= 0.20 else 'NOT met'}"
    )
    return 0


def plain_run(gen, prompt: str, strategy: str, seed: int, length: int):
    """An unconstrained generation of exactly ``length`` tokens."""
    from kolyric.engine.results import GenerationRequest
    from kolyric.engine.settings import preset

    return gen.generate(
        GenerationRequest(prompt, None, preset(PRESETS[strategy], seed=seed, max_length=length, min_length=length))
    )


def processor_cost(gen, constraints, outputs, strategy: str, device: str = "cpu") -> float:
    """Seconds per step of the constraint processor plus the state update, replayed on real outputs
    with random scores over the whole vocabulary (rows: 1 greedy, n sample, num_beams beam)."""
    import torch

    times = []
    for prompt, settings, prompt_len, ids in outputs:
        rows = settings.num_beams if strategy == "beam" else settings.n
        request_ids = [gen.tokenizer.bos_token_id or 0] * prompt_len
        state = gen.constraint_state(constraints, prompt_len, _Request(prompt, settings))
        seqs = torch.tensor([request_ids] * rows, device=device)
        width = int(gen.model.config.vocab_size)
        for tid in ids:
            scores = torch.randn(rows, width, device=device)
            _sync(device)
            t0 = time.perf_counter()
            state.processor(seqs, scores)
            seqs = torch.cat([seqs, torch.full((rows, 1), tid, device=device)], dim=1)
            state.advance(seqs)
            _sync(device)
            times.append(time.perf_counter() - t0)
    return statistics.mean(times) if times else 0.0


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


class _Request:
    def __init__(self, prompt, settings):
        self.prompt, self.settings, self.context = prompt, settings, ()


if __name__ == "__main__":
    sys.exit(main())
