"""`kolyric generate "바람이 분다" --compare greedy,top-p-0.92,combined --seed 7 [--json]`

One prompt, one seed, several presets (``--compare`` with no names: the tutorial's runs), each
run as ``kolyric generate --preset NAME`` with the same flags would run it, so each output equals
that single run's (``kolyric.compare``). The terminal shows one titled block per preset; ``--json``
prints one object with every preset's settings and candidates.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys

from kolyric.cli import CLIError
from kolyric.cli.options import decoding_overrides


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--compare",
        nargs="?",
        const="",
        default=None,
        metavar="PRESETS",
        help="run the prompt under several presets with one seed, side by side: comma-separated "
        "names, or none for the tutorial's greedy, beam-3, top-k-50, top-p-0.92, "
        "temperature-0.01, temperature-1.5, repetition-1.5 and combined",
    )


def run(args: argparse.Namespace) -> int:
    from kolyric.cli.generate import CandidateWriter, build_request, load
    from kolyric.compare import parse_names, run_compare
    from kolyric.engine.settings import SettingsError
    from kolyric.engine.stream import Generator

    try:
        names = parse_names(args.compare)
    except SettingsError as exc:
        raise CLIError("invalid settings:\n  " + "\n  ".join(str(p) for p in exc.problems)) from exc
    if args.preset:
        raise CLIError("--compare runs its own presets: give --compare NAMES or --preset NAME, not both")
    request = build_request(args)  # validates every flag before the model loads
    overrides = decoding_overrides(args)
    overrides.setdefault("seed", secrets.randbelow(2**32))  # one seed for every preset
    try:  # each preset with these flags, checked before the model loads
        from kolyric.compare import compare_settings

        seed = compare_settings(names, overrides)[0][1].seed
    except SettingsError as exc:
        raise CLIError("invalid settings:\n  " + "\n  ".join(str(p) for p in exc.problems)) from exc
    loaded = load(args)
    generator = Generator(loaded)
    out = []
    for done in run_compare(generator, request, names, overrides):
        if args.json:
            out.append({"preset": done.name, "title": done.title, **done.result.to_dict()})
            continue
        print(f"── {done.title}", flush=True)
        candidates = done.result.candidates
        for i, cand in enumerate(candidates):
            writer = CandidateWriter(sys.stdout, i + 1 if len(candidates) > 1 else None, sys.stderr)
            writer.write(cand.full_text)
            writer.end(cand.constraint_report, cand.finish_reason, empty=not cand.text.strip())
    if args.json:
        print(
            json.dumps(
                {
                    "prompt": request.prompt,
                    "polarity": request.polarity,
                    "seed": seed,
                    "model": loaded.description,
                    "compare": out,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
    print(f"seed {seed} · {len(names)} presets · {loaded.description}", file=sys.stderr)
    return 0
