"""The `kolyric` command: sub-commands map to small modules in this package.

Each sub-command module defines ``add_arguments(parser)`` and ``run(args) -> int``; it is
imported only when chosen, so `kolyric --help` and the app start without torch.
With no sub-command, the Textual app starts.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn, TextIO

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "app": ("kolyric.cli.app", "start the Textual lyric playground (the default)"),
    "generate": ("kolyric.cli.generate", "stream continuations of a line to the terminal"),
    "train": ("kolyric.cli.train", "fine-tune (or train from scratch) with PyTorch Lightning"),
    "eval": ("kolyric.cli.evaluate", "measure a model on NSMC: bits/char, polarity accuracy, distinct-n"),
    "lyrics": ("kolyric.cli.lyrics", "analyse lyrics: syllables, rhyme, sections"),
    "serve": ("kolyric.cli.serve", "serve the model over HTTP (or the app in a browser)"),
}


class CLIError(Exception):
    """A problem the user can fix; printed as one message, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse's parser, but a mistake is told in one line and a pointer to ``--help``: the
    usage block argparse prints first runs to some forty lines for ``generate`` and buries it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n(see `{self.prog} --help`)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the chosen sub-command's module is imported (startup stays fast)."""
    from kolyric import __version__

    parser = Parser(
        prog="kolyric",
        description="Write Korean song lyrics with a Korean GPT-2. With no command, the app starts.",
    )
    parser.add_argument("--version", action="version", version=f"kolyric {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(sp)
            sp.set_defaults(_module=module)
    return parser


class OutputClosed(Exception):
    """Standard output's reader went away (``kolyric generate | head``)."""


class OutputFailed(Exception):
    """Standard output cannot be written (a full disk, ``> /dev/full``, an I/O error)."""

    def __init__(self, error: OSError):
        super().__init__(error.strerror or str(error) or type(error).__name__)


class _GuardedOutput:
    """``sys.stdout`` while a sub-command runs: a write that fails raises OutputClosed or
    OutputFailed, which no command's own ``except OSError`` (around its files) can swallow."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def _call(self, name: str, *args: object) -> object:
        try:
            return getattr(self._stream, name)(*args)
        except BrokenPipeError:
            raise OutputClosed() from None
        except OSError as exc:
            raise OutputFailed(exc) from None

    def write(self, text: str) -> object:
        return self._call("write", text)

    def writelines(self, lines: list[str]) -> object:
        return self._call("writelines", lines)

    def flush(self) -> object:
        return self._call("flush")

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def _discard_pending(stream: TextIO) -> None:
    """Point the failed stream's file at /dev/null, so the interpreter's last flush of what is
    still buffered succeeds quietly instead of printing "Exception ignored … BrokenPipeError"."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


def _sub_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The deepest sub-command parser that ``argv`` names (``lyrics check`` → check's)."""
    current = parser
    for token in argv:
        subs = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            break
        if token in subs[0].choices:
            current = subs[0].choices[token]
    return current


def _suggestion(parser: argparse.ArgumentParser, unknown: list[str]) -> str:
    """ " (did you mean --polarity?)" for the first mistyped flag with a close match, else ""."""
    import difflib

    known = [flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")]
    for token in unknown:
        if token.startswith("--"):
            close = difflib.get_close_matches(token.split("=", 1)[0], known, n=1, cutoff=0.6)
            if close:
                return f" (did you mean {close[0]}?)"
    return ""


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """parse_args, but a flag nobody knows is reported under its sub-command's usage, with the
    closest flag it has (argparse alone reports it under the top-level usage)."""
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        import difflib

        close = difflib.get_close_matches(argv[0], list(COMMANDS), n=1, cutoff=0.6)
        if close:
            parser.error(f"unknown command {argv[0]!r} (did you mean {close[0]}?); one of {', '.join(COMMANDS)}")
    args, extras = parser.parse_known_args(argv)
    if extras:
        sub = _sub_parser(parser, argv)
        sub.error(f"unrecognized arguments: {' '.join(extras)}{_suggestion(sub, extras)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["app", *argv]
    command = argv[0] if argv[0] in COMMANDS else None
    stdout = sys.stdout
    guarded = _GuardedOutput(stdout)
    sys.stdout = guarded  # type: ignore[assignment]
    name = f"kolyric {command}" if command else "kolyric"
    try:
        parser = build_parser(command)
        args = _parse(parser, argv)
        if args.command is None:
            parser.print_help()
            return 0
        try:
            code = int(args._module.run(args) or 0)
            sys.stdout.flush()
            return code
        except CLIError as exc:
            print(f"kolyric {args.command}: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    except OutputClosed:  # as `yes | head` ends: quietly, with the shell's status for SIGPIPE
        _discard_pending(stdout)
        return 128 + 13
    except OutputFailed as exc:
        _discard_pending(stdout)
        print(f"{name}: cannot write to standard output: {exc}", file=sys.stderr)
        return 1
    finally:
        if sys.stdout is guarded:
            sys.stdout = stdout
