"""What a model writes: verses with no polarity, with each polarity, and constrained 4-line verses.

    .venv/bin/python tests/benchmarks/verse_samples.py --model mini
    .venv/bin/python tests/benchmarks/verse_samples.py --model runs/verse-mini/model --verse ../shared/verse/poems.jsonl

Prints ``--free`` continuations with no polarity, ``--polar`` with 긍정 and with 부정 (the
``combined`` preset, seed ``--seed + i``), and ``--constrained`` 4-line verses held to
``--syllables`` syllables a line rhyming with ``--rhyme``, each line recounted here with
``kolyric.korean`` (count, rhyme, and whether it ends on a whole word: the next character the
model wrote after it is a line break or the end). Then, over every sampled line, the share that
holds a movie-review marker and the copy rate against the training share of ``--verse`` (the
lines ``kolyric train`` saw with the same ``--val-share``/``--seed``), as ``kolyric eval``
defines them. Prompts are the first lines of the held-out poems when ``--verse`` is given,
else a fixed set of lyric openings.

Not collected by pytest (tests/benchmarks is excluded).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OPENINGS = [
    "봄이 오면",
    "그대 없는 밤",
    "바람이 불어",
    "달빛 아래서",
    "너를 처음 만난 날",
    "비가 내리면",
    "오늘 밤",
    "잊지 못할 거야",
    "먼 길을 걸어",
    "하늘을 보면",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mini")
    parser.add_argument("--verse", help="the poems .jsonl the model was trained on (for prompts and the copy rate)")
    parser.add_argument("--val-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--free", type=int, default=20)
    parser.add_argument("--polar", type=int, default=10)
    parser.add_argument("--constrained", type=int, default=10)
    parser.add_argument("--syllables", type=int, default=7)
    parser.add_argument("--rhyme", default="네")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from kolyric.engine.loading import load_model
    from kolyric.engine.lyric.spec import LyricConstraints
    from kolyric.engine.results import GenerationRequest
    from kolyric.engine.settings import preset
    from kolyric.engine.stream import Generator
    from kolyric.evaluate_verse import MIN_COPY_SYLLABLES, REVIEW_MARKERS, poem_lines
    from kolyric.korean import count_syllables, rhymes_with
    from kolyric.training.corpora import read_user_file, split_validation

    prompts, known = list(OPENINGS), set()
    if args.verse:
        poems, _ = read_user_file(args.verse)
        train, val = split_validation(poems, args.val_share, args.seed)
        prompts = [p.text.split("\n", 1)[0] for p in val] or prompts
        known = {" ".join(line.split()) for line in poem_lines([p.text for p in train])}
    loaded = load_model(args.model, device="cpu")
    generator = Generator(loaded)
    print(f"model: {loaded.description}")
    lines_seen: list[str] = []

    def sample(i: int, polarity: str | None, constraints=None) -> str:
        settings = preset("combined", seed=args.seed + i, max_length=60 if constraints is None else 96)
        request = GenerationRequest(prompts[i % len(prompts)], polarity, settings, constraints=constraints)
        return generator.generate(request).candidates[0]

    def show(title: str, count: int, polarity: str | None) -> None:
        print(f"\n## {title}\n")
        for i in range(count):
            candidate = sample(i, polarity)
            text = candidate.text.strip("\n")
            lines = [line.strip() for line in text.split("\n")]
            if candidate.finish_reason == "length" and len(lines) > 1:
                lines = lines[:-1]
            lines_seen.extend(line for line in lines if line)
            body = text.replace("\n", "\n    ")
            print(f"{i + 1:>2}. {prompts[i % len(prompts)]} ▸ {body}")

    show("no polarity", args.free, None)
    show("긍정", args.polar, "긍정")
    show("부정", args.polar, "부정")

    print(f"\n## {args.constrained} constrained: 4 lines × {args.syllables} syllables, rhyme {args.rhyme}\n")
    constraints = LyricConstraints(syllables=args.syllables, rhyme=args.rhyme, lines=4)
    met = 0
    for i in range(args.constrained):
        candidate = sample(i, None, constraints)
        lines = [line.strip() for line in candidate.text.strip("\n").split("\n") if line.strip()]
        checks = [(count_syllables(line), rhymes_with(line, args.rhyme)) for line in lines]
        ok = len(lines) == 4 and all(n == args.syllables and r for n, r in checks)
        met += ok
        report = getattr(candidate, "constraint_report", None)
        print(
            f"{i + 1:>2}. {'✓' if ok else '✗'} {prompts[i % len(prompts)]} ({candidate.finish_reason})"
            + (f" {report.summary()}" if report is not None and hasattr(report, "summary") else "")
        )
        for line, (n, r) in zip(lines, checks):
            print(f"      {line}   [{n} syllables, {'rhymes' if r else 'no rhyme'}]")
    checked = [line for line in lines_seen if count_syllables(line) >= MIN_COPY_SYLLABLES]
    copied = [line for line in checked if " ".join(line.split()) in known]
    review = sum(1 for line in lines_seen if REVIEW_MARKERS.search(line))
    print(f"\nconstrained verses met: {met}/{args.constrained}")
    print(f"review markers: {review}/{len(lines_seen)} sampled lines")
    if known:
        print(
            f"copy rate: {len(copied)}/{len(checked)} lines of ≥ {MIN_COPY_SYLLABLES} syllables "
            f"({len(copied) / max(1, len(checked)):.3f}) found verbatim in the training verse"
        )
        for line in copied:
            print(f"  copied: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
