"""Command-line options shared by sub-commands: decoding controls (from the settings' FIELDS,
so each range is stated once) and model selection."""

from __future__ import annotations

import argparse

from kolyric.engine import settings_lists
from kolyric.engine.loading import PRECISIONS  # no torch: loading imports it when a model loads
from kolyric.engine.settings import DEFAULT_PRESET, PRESETS
from kolyric.engine.settings_fields import FIELDS


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        "-m",
        default=None,
        help="hub id, model directory, .ckpt file, directory of checkpoints, or 'mini' "
        "(default: the configured model, else skt/kogpt2-base-v2, else kolyric-mini)",
    )
    group.add_argument(
        "--base", default=None, help="base model a tutorial checkpoint is applied over (default skt/kogpt2-base-v2)"
    )
    group.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 … (default: auto)")
    group.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="weights' precision (default auto: int8 on a CPU for models of 50M parameters or more, else fp32)",
    )


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decoding controls (lengths count new tokens)")
    group.add_argument(
        "--preset",
        default=None,
        help=f"named settings to start from: {', '.join(PRESETS)} "
        f"(default: the configured preset, else {DEFAULT_PRESET})",
    )
    for name, spec in FIELDS.items():
        flags = ["-n"] if name == "n" else []
        flags.append("--" + name.replace("_", "-"))
        # Strings on purpose: validation reports every bad value at once, with its range.
        if spec.textual:  # one item per flag, repeatable: --stop 끝 --stop '\n', --bias 사랑=-2
            example = "PHRASE=NUMBER" if spec.kind is dict else "TEXT"
            group.add_argument(
                *flags,
                dest=name,
                default=None,
                action="append",
                metavar=example,
                help=f"{spec.help}; repeatable; \\n is a line break; {spec.describe_range()}",
            )
        elif spec.kind is bool:
            group.add_argument(
                *flags,
                dest=name,
                default=None,
                nargs="?",
                const="on",
                metavar="on|off",
                help=f"{spec.help}; {spec.describe_range()}",
            )
        else:
            group.add_argument(
                *flags,
                dest=name,
                default=None,
                metavar=name.upper() if name != "n" else "N",
                help=f"{spec.help}; {spec.describe_range()}",
            )


def decoding_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The decoding flags given, as ``DecodingSettings.from_dict`` takes them (list items unescaped)."""
    out: dict[str, object] = {}
    for name, spec in FIELDS.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        out[name] = [settings_lists.unescape(item) for item in value] if spec.textual else value
    return out


def user_config():
    """The settings file the app writes (default model, preset, precision), or None.

    Read-only here: a command-line run never rewrites or moves the user's file.
    """
    import tomllib

    from kolyric.app.config import SETTINGS_FILE, AppConfig, check_values, config_dir

    path = config_dir() / SETTINGS_FILE
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    known = {k: v for k, v in values.items() if k in AppConfig.__dataclass_fields__}
    if check_values(known):
        return None
    return AppConfig(**known)


def chosen_preset(args: argparse.Namespace) -> str:
    if args.preset:
        return args.preset
    config = user_config()
    return (config.preset if config and config.preset else None) or DEFAULT_PRESET
