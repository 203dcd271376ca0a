"""The training form's fields, their ranges and defaults, and the `kolyric train` command line.

Each field is a ``TrainConfig`` setting: its default, range and help are the ones `kolyric train`
checks, stated once in ``kolyric.training.config``. ``parse_form`` returns every problem at once,
each naming its field and the valid range.

The extra-flags field is read with `kolyric train`'s own argument parser, so a flag the form
sets itself (``--out``, ``--events``, ``--resume``, ``--corpus-dir``) is refused in any spelling
argparse takes (``--out=/x``, ``--ou /x``), and so is a flag `kolyric train` does not know. An
output folder that already holds checkpoints is refused unless the form's resume box is
ticked; with ``KOLYRIC_CONFINED_DIR`` set, folders outside it are refused.
"""

from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kolyric.app.config import TRAIN_CORPORA, outside_confinement, user_path
from kolyric.engine.settings import Problem
from kolyric.training.config import FINETUNE_LR, SETTINGS, Setting, default_of

FormValue = int | float | None  # a typed field of the form (None: left empty, where allowed)

MAX_NUMBER_CHARS = 40  # longer text is no number any field takes: refused before float() or int() sees it
LAST_CKPT = "last.ckpt"  # what `kolyric train --resume` continues by default
# flags the form sets itself, and where the form sets them
FORM_FLAGS = {
    "out": "the output dir field",
    "events": "the form",
    "resume": "the form's resume box",
    "corpus_dir": "the corpus dir field",
}

# The settings the form offers; their ranges, help and defaults are TrainConfig's.
TRAIN_FIELDS: dict[str, Setting] = {
    name: SETTINGS[name]
    for name in ("max_seq_length", "batch_size", "lr", "epochs", "seed", "limit_train", "limit_val", "max_steps")
}
# lr's default depends on the mode (TrainConfig's is None: "by mode"); the form starts fine-tuning.
DEFAULTS: dict[str, FormValue] = {name: default_of(name) for name in TRAIN_FIELDS} | {"lr": FINETUNE_LR}
CORPORA = TRAIN_CORPORA


@dataclass(frozen=True)
class TrainingRequest:
    """A valid form: everything `kolyric train` needs."""

    corpus: str  # "nsmc" or a file path
    corpus_dir: str | None
    model: str | None  # None: from scratch
    out: str
    values: dict[str, FormValue]
    extra: tuple[str, ...] = ()
    resume: str | None = None  # "last" (out/last.ckpt) or a checkpoint file to continue from

    def argv(self) -> list[str]:
        """Arguments after ``kolyric train`` (events as JSON lines on stdout)."""
        args = ["--corpus", self.corpus]
        if self.corpus_dir:
            args += ["--corpus-dir", self.corpus_dir]
        args += ["--from-scratch"] if self.model is None else ["--model", self.model]
        for name, value in self.values.items():
            if value is not None:
                args += ["--" + name.replace("_", "-"), repr(value) if isinstance(value, float) else str(value)]
        if self.resume is not None:
            args += ["--resume"] if self.resume == "last" else ["--resume", self.resume]
        return args + ["--out", self.out, *self.extra, "--events", "-"]


def coerce(spec: Setting, raw: object) -> tuple[FormValue, str | None]:
    """The typed value of one form field, range-checked: (value, None), or (None, why not)."""
    text = str(raw).strip() if raw is not None else ""
    wanted = spec.describe_range() + (" or empty" if spec.optional else "")
    if not text:
        return (None, None) if spec.optional else (None, f"must be {wanted}, got nothing")
    if len(text) > MAX_NUMBER_CHARS:
        return None, f"must be {wanted}, got {len(text):,} characters"
    try:
        value: FormValue = float(text) if spec.kind is float else int(float(text)) if _integral(text) else None
    except (ValueError, OverflowError):
        value = None
    if value is None or not spec.valid(value):
        return None, f"must be {wanted}, got {text!r}"
    return value, None


def _integral(text: str) -> bool:
    try:
        return float(text).is_integer()
    except ValueError:
        return False


def default_out(data_dir: Path) -> str:
    """A fresh run folder in the data folder (never one that exists: a second run would be refused)."""
    base = data_dir / "runs" / time.strftime("%Y%m%d-%H%M%S")
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return str(out)


def checkpoints_in(folder: Path) -> list[Path]:
    """The .ckpt files in ``folder`` (none when it is not a readable folder)."""
    try:
        return sorted(p for p in folder.glob("*.ckpt") if p.is_file()) if folder.is_dir() else []
    except OSError:
        return []


def resume_target(folder: Path) -> str | None:
    """What ``--resume`` continues in ``folder``: "last" when it has last.ckpt, else its best
    complete checkpoint (lowest val_loss in the name), else None."""
    found = checkpoints_in(folder)
    if any(p.name == LAST_CKPT for p in found):
        return "last"
    if not found:
        return None
    from kolyric.engine.loading import best_checkpoint  # no torch at import

    best = best_checkpoint(folder)
    return str(best) if best is not None else None


class _FlagParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(message)


_UNSET = object()


def check_extra(extra: tuple[str, ...]) -> str | None:
    """Why the extra flags cannot be used (one line), or None. Read by `kolyric train`'s own
    parser, so every spelling argparse takes (``--out=/x``, ``--ou /x``) is caught."""
    from kolyric.cli.train import add_arguments

    parser = _FlagParser(prog="kolyric train", add_help=False)
    add_arguments(parser)
    namespace = argparse.Namespace(**dict.fromkeys(FORM_FLAGS, _UNSET))
    try:
        parsed, unknown = parser.parse_known_args(list(extra), namespace=namespace)
    except ValueError as exc:
        return str(exc)
    for dest, owner in FORM_FLAGS.items():
        if getattr(parsed, dest) is not _UNSET:
            return f"--{dest.replace('_', '-')} is set by {owner}, not here"
    if unknown:
        word = unknown[0]
        return (
            f"kolyric train has no flag {word!r}"
            if word.startswith("-")
            else f"{word!r} is not a flag (flags start with --)"
        )
    return None


def parse_form(raw: Mapping[str, object], *, data_dir: Path) -> tuple[TrainingRequest | None, list[Problem]]:
    """Check the form (raw strings from the widgets); a request, or every problem found."""
    problems: list[Problem] = []
    values: dict[str, FormValue] = {}
    for name, spec in TRAIN_FIELDS.items():
        value, why = coerce(spec, raw.get(name))
        if why is None:
            values[name] = value
        else:
            problems.append(Problem(name, raw.get(name), why))
    corpus = raw.get("corpus", "nsmc")
    corpus_file = str(raw.get("corpus_file") or "").strip()
    if corpus == "file":
        if not corpus_file:
            problems.append(Problem("corpus_file", corpus_file, "give the text file to train on"))
        elif not Path(corpus_file).expanduser().is_file():
            problems.append(Problem("corpus_file", corpus_file, f"no such file: {corpus_file}"))
    # The corpus dir is where NSMC lives; a file corpus names its own path (the field is hidden then).
    corpus_dir = (str(raw.get("corpus_dir") or "").strip() or None) if corpus == "nsmc" else None
    if corpus == "nsmc" and corpus_dir is None:  # not the current folder: the app may run anywhere
        corpus_dir = str(data_dir / "corpora")
    elif corpus_dir and not Path(corpus_dir).expanduser().is_dir():
        problems.append(Problem("corpus_dir", corpus_dir, f"no such directory: {corpus_dir}"))
    scratch = bool(raw.get("from_scratch"))
    model = str(raw.get("model") or "").strip()
    if not scratch and not model:
        problems.append(Problem("model", model, "give a base model, or tick 'from scratch'"))
    try:
        extra = tuple(shlex.split(str(raw.get("extra") or "")))
    except ValueError as exc:
        problems.append(Problem("extra", raw.get("extra"), f"cannot split into flags: {exc}"))
        extra = ()
    refused = check_extra(extra) if extra else None
    if refused:
        problems.append(Problem("extra", raw.get("extra"), refused))
    typed_out = str(raw.get("out") or "").strip()
    out = str(user_path(typed_out)) if typed_out else default_out(data_dir)
    resume, out_problem = _check_out(Path(out), bool(raw.get("resume")), typed=bool(typed_out))
    if out_problem:
        problems.append(Problem("out", typed_out, out_problem))
    for name, folder in (("out", out), ("corpus_dir", corpus_dir)):
        refusal = outside_confinement(folder) if folder else None
        if refusal and not any(p.field == name for p in problems):
            problems.append(Problem(name, folder, refusal))
    if problems:
        return None, problems
    request = TrainingRequest(
        corpus=corpus_file if corpus == "file" else "nsmc",
        corpus_dir=corpus_dir,
        model=None if scratch else model,
        out=out,
        values=values,
        extra=extra,
        resume=resume,
    )
    return request, []


def _check_out(out: Path, resume: bool, *, typed: bool) -> tuple[str | None, str | None]:
    """(what --resume takes, why ``out`` cannot be used) for the output folder."""
    if out.exists() and not out.is_dir():
        return None, "this is a file, not a folder"
    target = resume_target(out)
    if resume:
        if not typed:
            return None, "give the folder of the run to resume"
        if target is None:
            return None, "this folder holds no checkpoint to resume; untick 'resume' to start a new run there"
        return target, None
    if checkpoints_in(out):
        how = "last.ckpt" if target == "last" else Path(target).name if target else "its checkpoints"
        return None, (
            f"this folder already holds a run's checkpoints: tick 'resume' to go on from {how}, or press 'New folder'"
        )
    return None, None
