"""Command-line options shared by sub-commands: decoding controls (from the settings' FIELDS,
so each range is stated once) and model selection."""

from __future__ import annotations

import argparse
from typing import Any

from kolyric.engine.settings import DEFAULT_PRESET, FIELDS, PRESETS


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", "-m", default=None,
                       help="hub id, model directory, .ckpt file, directory of checkpoints, or 'mini' "
                            "(default: the configured model, else skt/kogpt2-base-v2, else kolyric-mini)")
    group.add_argument("--base", default=None,
                       help="base model a tutorial checkpoint is applied over (default skt/kogpt2-base-v2)")
    group.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 … (default: auto)")
    group.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16", "int8"),
                       help="weights' precision (default fp32)")


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decoding controls (lengths count new tokens)")
    group.add_argument("--preset", default=DEFAULT_PRESET,
                       help=f"named settings to start from: {', '.join(PRESETS)} (default {DEFAULT_PRESET})")
    for name, spec in FIELDS.items():
        flags = ["-n"] if name == "n" else []
        flags.append("--" + name.replace("_", "-"))
        # Strings on purpose: validation reports every bad value at once, with its range.
        group.add_argument(*flags, dest=name, default=None, metavar=name.upper() if name != "n" else "N",
                           help=f"{spec.help}; {spec.describe_range()}")


def decoding_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in FIELDS if getattr(args, name, None) is not None}
