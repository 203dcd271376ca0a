"""`kolyric app` (and plain `kolyric`): the Textual lyric playground.

Flags override the settings file (``settings.toml`` in the config directory) for this run
only. Nothing heavy is imported here: Textual loads in ``run``, torch in the app's worker.
"""

from __future__ import annotations

import argparse

from kolyric.engine.loading import PRECISIONS  # no torch: loading imports it when a model loads


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        "-m",
        default=None,
        help="hub id, model directory, .ckpt checkpoint or 'mini' (default: the settings "
        "file's model, else skt/kogpt2-base-v2, else kolyric-mini)",
    )
    parser.add_argument(
        "--precision",
        default=None,
        choices=PRECISIONS,
        help="weights' precision (default: the settings file's, else auto: int8 on a CPU for "
        "models of 50M parameters or more, fp32 otherwise)",
    )
    parser.add_argument("--device", default=None, help="auto, cpu, cuda … (default: auto)")
    parser.add_argument(
        "--theme", default=None, help="theme name, e.g. kolyric-night or kolyric-paper (default: the last one chosen)"
    )
    parser.add_argument("--preset", default=None, help="decoding preset the controls start from")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="where drafts and training runs are kept (default: $KOLYRIC_DATA_DIR or the "
        "platform's user data directory)",
    )
    parser.add_argument("--no-load", action="store_true", help="start without loading a model")


def run(args: argparse.Namespace) -> int:
    from kolyric.cli import CLIError
    from kolyric.engine.settings import PRESETS

    if args.preset is not None and args.preset not in PRESETS:
        raise CLIError(f"--preset: unknown preset {args.preset!r}; one of {', '.join(PRESETS)}")
    from kolyric.app.app import KolyricApp

    app = KolyricApp(
        model=args.model,
        precision=args.precision,
        device=args.device,
        theme=args.theme,
        preset=args.preset,
        data_dir_override=args.data_dir,
        load_on_start=not args.no_load,
    )
    app.run()
    return 0
