"""`kolyric train`: fine-tune a Korean GPT-2 (or train one from scratch) with PyTorch Lightning.

Every flag is a ``TrainConfig`` field (default, range and help stated there once). Defaults are
the tutorial's: ``skt/kogpt2-base-v2`` on NSMC, 32 tokens, batch 32, lr 5e-5,
3 epochs, seed 7. Progress goes to the terminal; ``--events PATH|-`` also writes JSON lines
(see ``kolyric.training.events``). torch and Lightning are imported only inside ``run``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from kolyric.cli import CLIError

if TYPE_CHECKING:
    from kolyric.training.config import TrainConfig

OUTPUT = "output"  # the --help section of --out, --resume and --events

# How a flag differs from what its TrainConfig field's kind implies.
SPECIAL: dict[str, dict[str, object]] = {
    "corpus": {"action": "append", "default": None},  # several corpora train together; none given: nsmc
    "resume": {"nargs": "?", "const": "last"},
}


def _int_or_float(value: str) -> int | float:
    try:
        return float(value) if any(c in value for c in ".eE") else int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {value!r}") from None


def _devices(value: str) -> str | int:
    return int(value) if value.isdigit() and len(value) <= 4 else value


NEGATED = {"group_by_length": "plain random batches instead of batches of similar length"}
PARSERS = {"devices": _devices, "val_check_interval": _int_or_float}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ``TrainConfig`` field, with the field's default and help; ranges and choices
    are checked by ``TrainConfig.problems`` (every problem at once, not argparse's first)."""
    from kolyric.training.config import SETTINGS, default_of

    groups: dict[str, argparse._ArgumentGroup] = {}
    warmup = None
    for name, spec in SETTINGS.items():
        if not spec.flag:
            continue
        group = groups.get(spec.group) or groups.setdefault(spec.group, parser.add_argument_group(spec.group))
        default = default_of(name)
        flag = "--" + name.replace("_", "-")
        help_text = spec.help.replace("%", "%%")
        if spec.kind is bool:
            if default:
                group.add_argument(
                    f"--no-{name.replace('_', '-')}", dest=name, action="store_false", help=NEGATED[name]
                )
            else:
                group.add_argument(flag, action="store_true", help=help_text)
            continue
        if spec.low is not None or spec.high is not None:
            help_text += f"; {spec.describe_range()}"
        if default is not None:
            help_text += f" (default {default})"
        options: dict[str, object] = {"default": default, "metavar": spec.metavar, "help": help_text}
        if name in PARSERS:
            options["type"] = PARSERS[name]
        elif spec.kind in (int, float):
            options["type"] = spec.kind
        options.update(SPECIAL.get(name, {}))
        if name in ("warmup_steps", "warmup_ratio"):  # one or the other
            warmup = warmup or group.add_mutually_exclusive_group()
            warmup.add_argument(flag, **options)  # type: ignore[arg-type]
        else:
            group.add_argument(flag, **options)  # type: ignore[arg-type]
    groups[OUTPUT].add_argument(
        "--events", metavar="PATH|-", help="also write JSON-line events to PATH, or to stdout with -"
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from kolyric.training.config import SETTINGS, TrainConfig

    values = {name: getattr(args, name) for name in SETTINGS if hasattr(args, name)}
    if values.get("corpus") is None:
        values.pop("corpus", None)
    return TrainConfig(**values)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    from kolyric.engine.loading import ModelLoadError
    from kolyric.training.corpora import CorpusError
    from kolyric.training.run import ConfigError, train

    config = config_from_args(args)
    problems = config.problems()
    if problems:
        raise CLIError("invalid settings:\n  " + "\n  ".join(problems))

    from kolyric.training.events import CancelToken, EventWriter

    try:
        events = EventWriter.open(args.events)
    except OSError as exc:
        raise CLIError(f"--events: cannot write {args.events} ({exc.strerror or exc})") from None
    cancel = CancelToken()
    try:
        result = train(config, events, cancel)
    except (ConfigError, CorpusError, ModelLoadError) as exc:
        events.emit("error", message=str(exc))
        raise CLIError(str(exc)) from None
    except KeyboardInterrupt:
        events.emit("error", message="interrupted")
        raise
    except OSError as exc:  # a full disk, an unwritable --out: the checkpoints written so far are intact
        where = f" ({exc.filename})" if exc.filename else ""
        events.emit("error", message=f"{type(exc).__name__}: {exc}")
        raise CLIError(
            f"{exc.strerror or exc}{where}; any checkpoints already in {config.out} are intact (continue with --resume)"
        ) from None
    except Exception as exc:  # the app needs an error event before the traceback
        events.emit("error", message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        events.close()
    if result.diverged:
        return 1
    if result.cancelled:
        print("training stopped early; resume with --resume", file=sys.stderr)
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m kolyric.cli.train …``: the same command without the other sub-commands'
    imports (handy on a bare GPU machine)."""
    from kolyric.cli import Parser

    parser = Parser(prog="kolyric train", description="Fine-tune or train from scratch.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except CLIError as exc:
        print(f"kolyric train: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
