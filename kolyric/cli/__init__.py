"""The `kolyric` command: sub-commands map to small modules in this package.

Each sub-command module defines ``add_arguments(parser)`` and ``run(args) -> int``; it is
imported only when chosen, so `kolyric --help` and the app start without torch.
With no sub-command, the Textual app starts.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the chosen sub-command's module is imported (startup stays fast)."""
    from kolyric import __version__

    parser = argparse.ArgumentParser(
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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["app", *argv]
    command = argv[0] if argv[0] in COMMANDS else None
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args._module.run(args) or 0)
    except CLIError as exc:
        print(f"kolyric {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
