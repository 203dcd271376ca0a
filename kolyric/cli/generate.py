"""`kolyric generate "사랑해" --polarity 긍정 --preset combined --seed 7 -n 3`

Streams each candidate to the terminal as it is produced (candidate i uses seed+i, so the
candidates equal a batched run's); ``--json`` prints one JSON object with every candidate and
the settings actually used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from kolyric.cli import CLIError
from kolyric.cli.options import (add_decoding_arguments, add_model_arguments, chosen_preset, decoding_overrides,
                                  user_config)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="?", default="", help="the line to continue (가사 한 줄)")
    parser.add_argument("--polarity", "-p", default="none", help="긍정, 부정 or none (default none)")
    parser.add_argument("--context-file", default=None,
                        help="a draft whose lines come before the prompt (newest kept when too long)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")
    add_model_arguments(parser)
    add_decoding_arguments(parser)
    add_constraint_arguments(parser)


def add_constraint_arguments(parser: argparse.ArgumentParser) -> None:
    try:
        from kolyric.engine.constraints import add_arguments as add
    except ImportError:  # constraints not installed in this build
        return
    add(parser)


def build_request(args: argparse.Namespace):  # noqa: ANN201 - returns GenerationRequest
    from kolyric.engine.prompt import normalize_polarity
    from kolyric.engine.settings import SettingsError, preset
    from kolyric.engine.stream import GenerationRequest

    problems = []
    try:
        settings = preset(chosen_preset(args), **decoding_overrides(args))
    except SettingsError as exc:
        problems += [str(p) for p in exc.problems]
        settings = None
    try:
        polarity = normalize_polarity(args.polarity)
    except ValueError as exc:
        problems.append(str(exc))
        polarity = None
    try:  # bytes that are not UTF-8 reach argv as lone surrogates; the tokenizer would crash on them
        args.prompt.encode("utf-8")
    except UnicodeEncodeError as exc:
        problems.append(f"prompt: not valid UTF-8 text at character {exc.start + 1} (is the terminal set to UTF-8?)")
    constraints = None
    try:
        from kolyric.engine.constraints import from_arguments
    except ImportError:
        from_arguments = None
    if from_arguments is not None:
        try:
            constraints = from_arguments(args)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise CLIError("invalid settings:\n  " + "\n  ".join(problems))
    context: tuple[str, ...] = ()
    if args.context_file:
        try:
            with open(args.context_file, encoding="utf-8-sig") as f:
                context = tuple(line.rstrip("\n") for line in f if line.strip())
        except (OSError, UnicodeDecodeError) as exc:
            raise CLIError(f"--context-file {args.context_file}: {exc}") from exc
    return GenerationRequest(args.prompt, polarity, settings, context=context, constraints=constraints)


def load(args: argparse.Namespace):  # noqa: ANN201 - returns LoadedModel
    from kolyric.engine.loading import ModelLoadError, load_model, resolve_model_spec

    _quiet_transformers()
    config = user_config() if not args.model else None
    spec, notice = resolve_model_spec(args.model, configured=config.model if config else None)
    if notice:
        print(f"note: {notice}", file=sys.stderr)
    try:
        loaded = load_model(spec, base=args.base, device=args.device, precision=args.precision)
    except ModelLoadError as exc:
        raise CLIError(str(exc)) from exc
    for line in loaded.notices:
        print(f"note: {line}", file=sys.stderr)
    return loaded


def _quiet_transformers() -> None:
    """Progress bars and advice from transformers would interleave with streamed text.

    Set through the environment, read when transformers is imported, so that a model that is
    missing is reported before the (slow) import happens at all.
    """
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # already imported (tests, the app): tell it directly
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from kolyric.engine.stream import DoneEvent, Generator, TokenEvent

    request = build_request(args)  # validate before the (slow) model load
    loaded = load(args)
    generator = Generator(loaded)
    settings = request.settings
    if settings.seed is None:
        import secrets

        settings = replace(settings, seed=secrets.randbelow(2**32))
    results = []
    if args.json or settings.strategy == "beam":
        results.append(generator.generate(replace(request, settings=settings)))
    else:
        for i in range(settings.n):  # one at a time, so each candidate streams on its own line
            one = replace(request, settings=replace(settings, n=1, seed=(settings.seed + i) % 2**32))
            if settings.n > 1:
                print(f"[{i + 1}] ", end="", flush=True)
            print(request.prompt.strip(), end="", flush=True)
            for event in generator.stream(one):
                if isinstance(event, TokenEvent):
                    print(event.text, end="", flush=True)
                elif isinstance(event, DoneEvent):
                    results.append(event.result)
            print(flush=True)
    if args.json:
        out = results[0].to_dict()
        out["model"] = loaded.description
        print(json.dumps(out, ensure_ascii=False, indent=2))
    elif settings.strategy == "beam":
        for i, cand in enumerate(results[0].candidates):
            print(f"[{i + 1}] {cand.full_text}" if len(results[0].candidates) > 1 else cand.full_text)
    for result in results:
        for cand in result.candidates:
            report = cand.constraint_report
            if report is None:
                continue
            if not args.json and settings.strategy != "beam" and "\n" in cand.full_text:
                print(cand.full_text)  # the lines as the constraint split them (streamed with spaces)
            if not getattr(report, "satisfied", True):
                print(f"note: {report}", file=sys.stderr)
    print(f"seed {settings.seed} · {loaded.description}", file=sys.stderr)
    return 0
