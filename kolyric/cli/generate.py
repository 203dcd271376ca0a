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
from typing import TYPE_CHECKING, TextIO

from kolyric.cli import CLIError
from kolyric.cli.options import (
    add_decoding_arguments,
    add_model_arguments,
    chosen_preset,
    decoding_overrides,
    user_config,
)
from kolyric.engine.lyric.report import badge

if TYPE_CHECKING:
    from kolyric.engine.loading import LoadedModel
    from kolyric.engine.lyric.report import ConstraintReport
    from kolyric.engine.results import GenerationRequest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="?", default="", help="the line to continue (가사 한 줄)")
    parser.add_argument("--polarity", "-p", default="none", help="긍정, 부정 or none (default none)")
    parser.add_argument(
        "--context-file", default=None, help="a draft whose lines come before the prompt (newest kept when too long)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")
    add_model_arguments(parser)
    add_decoding_arguments(parser)
    add_constraint_arguments(parser)
    from kolyric.cli.compare import add_argument as add_compare

    add_compare(parser)


def add_constraint_arguments(parser: argparse.ArgumentParser) -> None:
    try:
        from kolyric.cli.lyric_flags import add_arguments as add
    except ImportError:  # constraints not installed in this build
        return
    add(parser)


def build_request(args: argparse.Namespace) -> GenerationRequest:
    from kolyric.engine.prompt import normalize_polarity
    from kolyric.engine.results import GenerationRequest
    from kolyric.engine.settings import SettingsError, preset

    problems = []
    overrides = decoding_overrides(args)
    try:
        settings = preset(chosen_preset(args), **overrides)
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
    from kolyric.cli.lyric_flags import from_arguments
    from kolyric.engine.lyric.spec import ConstraintError

    constraints = None
    try:
        constraints = from_arguments(args)
    except ConstraintError as exc:  # one line for each field, as the settings' problems
        problems += [str(p) for p in exc.problems]
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise CLIError("invalid settings:\n  " + "\n  ".join(problems))
    context: tuple[str, ...] = ()
    if args.context_file:
        from kolyric.cli.lyrics import read_text  # its messages: no such file, not UTF-8 at byte …

        try:
            text = read_text(args.context_file)
        except CLIError as exc:
            raise CLIError(f"--context-file {exc}") from None
        context = tuple(line for line in text.splitlines() if line.strip())
    return GenerationRequest(
        args.prompt,
        polarity,
        settings,
        context=context,
        constraints=constraints,
        max_length_set="max_length" in overrides,
    )


def load(args: argparse.Namespace) -> LoadedModel:
    from kolyric.engine.loading import ModelLoadError, load_model, resolve_model_spec

    _quiet_transformers()
    config = user_config() if not args.model else None
    spec, notice = resolve_model_spec(args.model, configured=config.model if config else None)
    if notice:
        print(f"note: {notice}", file=sys.stderr)
    try:
        loaded = load_model(
            spec,
            base=args.base,
            device=args.device,
            precision=args.precision,
            progress=lambda phase: print(f"note: {phase} …", file=sys.stderr, flush=True),
        )
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


class CandidateWriter:
    """Writes one candidate to the terminal as its text arrives: ``[2] `` before it when there
    are several, its later lines indented under the first.

    Its summary (the check mark, and why it ended when it added nothing to the prompt) goes to
    ``marks``: standard error in the CLI, so that lyrics piped elsewhere are only lyrics. When
    both streams are one terminal it still reads at the end of the candidate's last line."""

    def __init__(self, out: TextIO, number: int | None, marks: TextIO | None = None):
        self.out = out
        self.marks = marks if marks is not None else out
        self.number = number
        self.indent = " " * len(f"[{number}] ") if number is not None else ""
        self.pending = 0  # line breaks not written yet: trailing ones are dropped
        if number is not None:
            out.write(f"[{number}] ")

    def write(self, text: str) -> None:
        for i, part in enumerate(text.split("\n")):
            if i:
                self.pending += 1
            if self.pending:
                part = part.lstrip(" ")  # a word-boundary vocabulary's space before the next line
            if not part:
                continue
            if self.pending:
                self.out.write("\n" * (self.pending - 1) + "\n" + self.indent)
                self.pending = 0
            self.out.write(part)
        self.out.flush()

    def end(self, report: ConstraintReport | None = None, reason: str | None = None, empty: bool = False) -> None:
        """The candidate's end: its summary (``reason``, its finish reason, shows when ``empty``:
        it added nothing to the prompt), then its line's end."""
        summary = candidate_summary(report, reason if empty else None)
        if summary and (self.marks is self.out or _one_terminal(self.out, self.marks)):
            self.marks.write(f"  {summary}")
            self.marks.flush()
        elif summary:
            self.out.write("\n")
            self.out.flush()
            label = f"[{self.number}] " if self.number is not None else ""
            self.marks.write(f"{label}{summary}\n")
            self.marks.flush()
            return
        self.out.write("\n")
        self.out.flush()


def _one_terminal(out: TextIO, marks: TextIO) -> bool:
    try:
        return out.isatty() and marks.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def candidate_summary(report: ConstraintReport | None, finish_reason: str | None = None) -> str:
    """The check mark, and the finish reason of a candidate that added nothing to the prompt
    (a stop string on its first token, an end-of-text at once): "✓ 8 ㅏ", "(stop: nothing added)"."""
    parts = [badge(report)]
    if finish_reason:
        parts.append(f"({finish_reason}: nothing added)")
    return " ".join(p for p in parts if p)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from kolyric.engine.results import DoneEvent, TokenEvent
    from kolyric.engine.stream import Generator

    if getattr(args, "compare", None) is not None:
        from kolyric.cli.compare import run as compare

        return compare(args)
    request = build_request(args)  # validate before the (slow) model load
    loaded = load(args)
    generator = Generator(loaded)
    settings = request.settings
    if settings.seed is None:
        import secrets

        settings = replace(settings, seed=secrets.randbelow(2**32))
    results = []
    if args.json or settings.strategy == "beam":  # beam search emits its candidates at the end
        results.append(generator.generate(replace(request, settings=settings)))
        candidates = results[0].candidates
        if not args.json:
            for i, cand in enumerate(candidates):
                writer = CandidateWriter(sys.stdout, i + 1 if len(candidates) > 1 else None, sys.stderr)
                writer.write(cand.full_text)
                writer.end(cand.constraint_report, cand.finish_reason, empty=not cand.text.strip())
    else:
        for i in range(settings.n):  # one at a time, so each candidate streams on its own line
            one = replace(request, settings=replace(settings, n=1, seed=(settings.seed + i) % 2**32))
            writer = CandidateWriter(sys.stdout, i + 1 if settings.n > 1 else None, sys.stderr)
            writer.write(request.prompt.strip())
            done = None
            for event in generator.stream(one):
                if isinstance(event, TokenEvent):
                    writer.write(event.text)
                elif isinstance(event, DoneEvent):
                    results.append(event.result)
                    done = event.result.candidates[0]
            if done is None:
                writer.end()
            else:
                writer.end(done.constraint_report, done.finish_reason, empty=not done.text.strip())
    if args.json:
        out = results[0].to_dict()
        out["model"] = loaded.description
        print(json.dumps(out, ensure_ascii=False, indent=2))
    for number, cand in enumerate((c for result in results for c in result.candidates), start=1):
        report = cand.constraint_report
        if report is not None and not getattr(report, "satisfied", True):
            which = f"[{number}] " if settings.n > 1 else ""
            print(f"note: {which}{report}", file=sys.stderr)
    print(f"seed {settings.seed} · {loaded.description}", file=sys.stderr)
    return 0
