"""`kolyric eval --model M --corpus nsmc --corpus-dir ../shared --limit 2000 [--json]`

Bits per character and polarity accuracy on NSMC's test split (or on a ``.tsv``/``.jsonl``
file of the user's), and distinct-1/-2 of continuations sampled for a fixed prompt set.
The definitions are in ``kolyric.evaluate``. A file of texts with line breaks and no
polarities (a poems ``.jsonl``) gets the verse report of ``kolyric.evaluate_verse`` instead:
``--split val`` measures exactly the poems ``kolyric train`` held out of that file (same
``--val-share`` and ``--seed``), with the copy rate taken against the rest. The corpus is read
(and every option checked) before the model loads, so a mistake costs no model load. Progress
goes to stderr, the report to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from kolyric.cli import CLIError
from kolyric.cli.options import add_model_arguments

DEFAULT_LIMIT = 2000
METRIC_NAMES = ("bpc", "accuracy", "distinct", "verse")  # kolyric.evaluate.METRICS + verse, without torch
SPLITS = ("all", "val", "train")
SHARED = ("val_share", "batch_size", "max_seq_length", "seed")  # TrainConfig's fields, checked as train checks them


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--corpus",
        default="nsmc",
        help="'nsmc' (its test split) or a .tsv/.jsonl file of texts with polarities (default nsmc)",
    )
    parser.add_argument(
        "--corpus-dir", default=".", help="directory holding nsmc/ratings_test.txt (default: the current directory)"
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"evaluate the first N texts; 0 = all (default {DEFAULT_LIMIT})",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="texts per forward pass (default 16)")
    parser.add_argument(
        "--max-seq-length",
        type=int,
        default=128,
        help="tokens per text (prefix + review + end), longer ones are cut and only the kept "
        "part is scored; the model's context window caps it too (default 128)",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the distinct-n samples (default 7)")
    parser.add_argument(
        "--metrics",
        help=f"comma-separated subset of {', '.join(METRIC_NAMES)} (default: verse for a file of "
        f"poems, else bpc,accuracy,distinct)",
    )
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="all",
        help="of a file: all of it, or the validation (val) or training share that kolyric train "
        "splits off with the same --val-share and --seed (default all)",
    )
    parser.add_argument(
        "--val-share",
        type=float,
        default=0.1,
        help="the share kolyric train held out of the file (default 0.1, as train)",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=20,
        help="verse: continuations to sample for line lengths and the copy rate (default 20)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    add_model_arguments(parser)


def _check(args: argparse.Namespace) -> list[str]:
    from kolyric.training.config import check_setting

    metrics = [m.strip().lower() for m in (args.metrics or "").split(",") if m.strip()]
    # The settings eval shares with `kolyric train` take train's ranges (and say them the same way).
    problems = [p for name in SHARED if (p := check_setting(name, getattr(args, name)))]
    if not 0 <= args.samples <= 1000:
        problems.append(f"--samples: must be an integer in [0, 1000], got {args.samples}")
    if args.limit < 0:
        problems.append(f"--limit: must be 0 (all) or a positive number of texts, got {args.limit}")
    bad = [m for m in metrics if m not in METRIC_NAMES]
    if bad or (args.metrics is not None and not metrics):
        problems.append(f"--metrics: choose from {', '.join(METRIC_NAMES)}, got {args.metrics!r}")
    if problems:
        raise CLIError("invalid options:\n  " + "\n  ".join(problems))
    return metrics


def read_examples(
    corpus: str, corpus_dir: str, limit: int | None, *, split: str = "all", val_share: float = 0.1, seed: int = 7
) -> tuple[list, str, list]:
    """The texts to evaluate, a description of where they came from, and the rest of the file
    (what ``kolyric train`` trained on when ``split`` is ``val``)."""
    from kolyric.training.corpora import CorpusError, nsmc_files, read_nsmc, read_user_file, split_validation

    try:
        if corpus.strip().lower() == "nsmc":
            path = nsmc_files(corpus_dir)["test"]
            if not path.is_file():  # eval never downloads: say where it looked instead
                raise CLIError(
                    f"{path}: NSMC's test split is not there; pass --corpus-dir DIR with DIR/nsmc/ratings_test.txt"
                )
            examples, _ = read_nsmc(corpus_dir, "test", limit=limit, download=False)
            description = f"NSMC test ({path})"
        else:
            examples, _ = read_user_file(corpus)
            rest: list = []
            if split != "all":
                train, val = split_validation(examples, val_share, seed)
                examples, rest = (val, train) if split == "val" else (train, val)
            examples = examples[:limit] if limit else examples
            description = corpus if split == "all" else f"{corpus} ({split} split, {val_share:g} held out, seed {seed})"
            return _checked(examples, corpus), description, rest
    except CorpusError as exc:
        raise CLIError(str(exc)) from exc
    return _checked(examples, corpus), description, []


def _checked(examples: list, corpus: str) -> list:
    if not examples:
        raise CLIError(f"{corpus}: no texts to evaluate")
    return examples


def is_verse(examples: list) -> bool:
    """Texts with line breaks and no polarity: poems or lyrics, measured as verse."""
    return not any(e.polarity for e in examples) and sum("\n" in e.text for e in examples) * 2 >= len(examples)


class Progress:
    """One line on stderr: rewritten in place on a terminal, a few plain lines otherwise."""

    LABELS = {
        "bits": "scoring under the true polarity",
        "accuracy": "scoring under the other polarity",
        "distinct": "sampling continuations",
        "verse": "scoring poems",
        "samples": "sampling verse",
    }

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.reported: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        label = f"eval: {self.LABELS.get(stage, stage)} {done}/{total}"
        if self.tty:
            print("\r" + label, end="\n" if done >= total else "", file=self.stream, flush=True)
            return
        quarter = 4 * done // max(total, 1)  # 0 … 4: at most five lines per stage
        if self.reported.get(stage, -1) < quarter:
            self.reported[stage] = quarter
            print(label, file=self.stream, flush=True)


def run(args: argparse.Namespace) -> int:
    metrics = _check(args)
    if args.split != "all" and args.corpus.strip().lower() == "nsmc":
        raise CLIError("--split: NSMC is always evaluated on its test split; --split is for a file")
    examples, description, rest = read_examples(
        args.corpus, args.corpus_dir, args.limit or None, split=args.split, val_share=args.val_share, seed=args.seed
    )
    if not metrics:
        metrics = ["verse"] if is_verse(examples) else ["bpc", "accuracy", "distinct"]
    if "verse" in metrics:
        return _run_verse(args, examples, description, rest, [m for m in metrics if m != "verse"])
    if "accuracy" in metrics and not any(e.polarity for e in examples):
        raise CLIError(
            f"{args.corpus}: no text has a polarity, so accuracy cannot be measured (use --metrics bpc,distinct)"
        )

    from kolyric.cli.generate import load
    from kolyric.evaluate import evaluate

    loaded = load(args)
    report = evaluate(
        loaded,
        examples,
        metrics=metrics,
        batch_size=args.batch_size,
        max_seq_length=args.max_seq_length,
        seed=args.seed,
        corpus=description,
        progress=Progress(),
    )
    if report.bits and report.bits.truncated:
        print(
            f"note: {report.bits.truncated} texts were longer than {report.max_seq_length} tokens; "
            f"only their first {report.max_seq_length} tokens were scored",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(report.format())
    return 0


def _run_verse(args: argparse.Namespace, examples: list, description: str, rest: list, others: list[str]) -> int:
    if others:
        raise CLIError(f"--metrics: verse is reported on its own; run {', '.join(others)} separately")
    from kolyric.cli.generate import load
    from kolyric.evaluate_verse import evaluate_verse

    loaded = load(args)
    train_texts = [e.text for e in (rest if args.split == "val" else examples)]
    report = evaluate_verse(
        loaded,
        [e.text for e in examples],
        train_texts=train_texts,
        samples=args.samples,
        seed=args.seed,
        progress=Progress(),
    )
    model = getattr(loaded, "description", "") or str(getattr(loaded, "source", ""))
    if args.json:
        print(json.dumps({"model": model, "corpus": description, **report.to_dict()}, ensure_ascii=False, indent=2))
    else:
        print(f"model              {model}\ncorpus             {description} · {len(examples)} texts")
        print(report.format())
    return 0
