"""`kolyric train`: fine-tune a Korean GPT-2 (or train one from scratch) with PyTorch Lightning.

Defaults are the tutorial's: ``skt/kogpt2-base-v2`` on NSMC, 32 tokens, batch 32, lr 5e-5,
3 epochs, seed 7. Progress goes to the terminal; ``--events PATH|-`` also writes JSON lines
(see ``kolyric.training.events``). torch and Lightning are imported only inside ``run``.
"""

from __future__ import annotations

import argparse
import sys

from kolyric.cli import CLIError

DEFAULT_MODEL = "skt/kogpt2-base-v2"


def _int_or_float(value: str) -> int | float:
    try:
        return float(value) if any(c in value for c in ".eE") else int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {value!r}") from None


def _devices(value: str) -> str | int:
    return int(value) if value.isdigit() and len(value) <= 4 else value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--corpus", action="append", metavar="nsmc|FILE[,repeat=N]",
                      help="nsmc, or a .txt (blank line between songs), .tsv (text<TAB>polarity) or "
                           ".jsonl ({\"text\", \"polarity\"}; a poems file as it is) file (default nsmc); "
                           "give it again to train on several, and add ,repeat=N to show one N times an epoch")
    data.add_argument("--corpus-dir", default=".", metavar="DIR",
                      help="root holding nsmc/ratings_train.txt; downloaded there if missing (default .)")
    data.add_argument("--skip-bad-rows", action="store_true",
                      help="skip malformed rows and report how many, instead of stopping at the first")
    data.add_argument("--val-share", type=float, default=0.1, metavar="F",
                      help="share of a user file held out for validation, 0-1 exclusive (default 0.1)")
    data.add_argument("--limit-train", type=int, metavar="N", help="use only the first N training examples")
    data.add_argument("--limit-val", type=int, metavar="N", help="use only the first N validation examples")
    data.add_argument("--max-seq-length", type=int, default=32, metavar="N",
                      help="tokens per training row, EOS included (default 32); longer texts are split "
                           "into overlapping windows that end on line breaks, never cut off")

    model = parser.add_argument_group("model")
    model.add_argument("--model", default=DEFAULT_MODEL, metavar="SPEC",
                       help=f"model to fine-tune: hub id, directory, .ckpt or mini (default {DEFAULT_MODEL})")
    model.add_argument("--base", metavar="SPEC", help="base model for a .ckpt that does not carry its config")
    model.add_argument("--from-scratch", action="store_true",
                       help="train a new tokenizer and a small GPT-2 on the corpus instead")
    model.add_argument("--vocab-size", type=int, default=8000, metavar="N", help="from scratch: vocabulary (default 8000)")
    model.add_argument("--tokenizer-kind", default="metaspace", choices=("metaspace", "bytelevel"),
                       help="from scratch: metaspace (whole syllables, default) or bytelevel")
    model.add_argument("--n-layer", type=int, default=4, metavar="N", help="from scratch: blocks (default 4)")
    model.add_argument("--n-embd", type=int, default=256, metavar="N", help="from scratch: width (default 256)")
    model.add_argument("--n-head", type=int, default=4, metavar="N", help="from scratch: heads (default 4)")
    model.add_argument("--n-positions", type=int, default=128, metavar="N",
                       help="from scratch: context length (default 128)")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--batch-size", type=int, default=32, metavar="N", help="examples per batch per device (default 32)")
    opt.add_argument("--lr", type=float, metavar="LR",
                     help="peak learning rate (default 5e-5 to fine-tune, 1e-3 from scratch)")
    opt.add_argument("--epochs", type=int, default=3, metavar="N", help="passes over the data (default 3)")
    opt.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimiser steps in all")
    warm = opt.add_mutually_exclusive_group()
    warm.add_argument("--warmup-steps", type=int, metavar="N", help="linear warm-up steps")
    warm.add_argument("--warmup-ratio", type=float, default=0.05, metavar="F",
                      help="warm-up as a share of all steps (default 0.05); then cosine decay to 10%% of lr")
    opt.add_argument("--seed", type=int, default=7, metavar="N", help="random seed (default 7)")

    hw = parser.add_argument_group("hardware (passed to Lightning)")
    hw.add_argument("--precision", default="32", metavar="P", help="32, 16-mixed or bf16-mixed (default 32)")
    hw.add_argument("--accelerator", default="auto", metavar="A", help="auto, cpu, gpu, mps, … (default auto)")
    hw.add_argument("--devices", type=_devices, default="auto", metavar="D", help="auto, a count, or a list like 0,1")
    hw.add_argument("--num-nodes", type=int, default=1, metavar="N", help="machines (default 1)")
    hw.add_argument("--strategy", default="auto", metavar="S", help="auto, ddp, fsdp, … (default auto)")
    hw.add_argument("--no-group-by-length", dest="group_by_length", action="store_false",
                    help="plain random batches instead of batches of similar length")
    hw.add_argument("--num-workers", type=int, default=2, metavar="N", help="DataLoader workers (default 2)")
    hw.add_argument("--val-check-interval", type=_int_or_float, metavar="N|F",
                    help="validate every N steps, or every F of an epoch (default once an epoch)")

    run = parser.add_argument_group("output")
    run.add_argument("--out", default="checkpoints", metavar="DIR",
                     help="folder for checkpoints, the exported model (DIR/model) and logs (default checkpoints)")
    run.add_argument("--resume", nargs="?", const="last", metavar="CKPT",
                     help="continue from DIR/last.ckpt (or the given checkpoint): weights, optimiser, step")
    run.add_argument("--events", metavar="PATH|-", help="also write JSON-line events to PATH, or to stdout with -")


def config_from_args(args: argparse.Namespace):
    from kolyric.training.config import TrainConfig

    return TrainConfig(
        out=args.out, model=args.model, base=args.base, corpus=args.corpus or ["nsmc"], corpus_dir=args.corpus_dir,
        skip_bad_rows=args.skip_bad_rows, val_share=args.val_share, limit_train=args.limit_train,
        limit_val=args.limit_val, max_seq_length=args.max_seq_length, batch_size=args.batch_size, lr=args.lr,
        epochs=args.epochs, max_steps=args.max_steps, warmup_steps=args.warmup_steps,
        warmup_ratio=args.warmup_ratio, seed=args.seed, precision=args.precision,
        accelerator=args.accelerator, devices=args.devices, num_nodes=args.num_nodes, strategy=args.strategy,
        val_check_interval=args.val_check_interval, num_workers=args.num_workers,
        group_by_length=args.group_by_length, resume=args.resume,
        from_scratch=args.from_scratch, vocab_size=args.vocab_size, tokenizer_kind=args.tokenizer_kind,
        n_layer=args.n_layer, n_embd=args.n_embd, n_head=args.n_head, n_positions=args.n_positions)


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
        raise CLIError(f"{exc.strerror or exc}{where}; any checkpoints already in {config.out} are "
                       f"intact (continue with --resume)") from None
    except Exception as exc:  # noqa: BLE001 - the app needs an error event before the traceback
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
    parser = argparse.ArgumentParser(prog="kolyric train", description="Fine-tune or train from scratch.")
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
