"""The training form's fields, their ranges and defaults, and the `kolyric train` command line.

Defaults are the tutorial's (max_seq_length 32, batch 32, lr 5e-5, 3 epochs, seed 7). Fields
are ``FieldSpec``s like the decoding controls, so a bad value is reported the same way:
``parse_form`` returns every problem at once, each naming its field and the valid range.
"""

from __future__ import annotations

import math
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kolyric.engine.settings import FieldSpec, Problem

TRAIN_FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec("max_seq_length", int, "tokens per training example (longer ones are cut)", 8, 2048),
        FieldSpec("batch_size", int, "examples per optimisation step", 1, 4096),
        FieldSpec("lr", float, "learning rate of the optimiser", 0.0, 1.0, low_open=True),
        FieldSpec("epochs", int, "passes over the training data", 1, 1000),
        FieldSpec("seed", int, "random seed of the run", 0, 2**32 - 1),
        FieldSpec("limit_train", int, "use only the first N training examples (empty: all)", 1, 10**9,
                  optional=True),
        FieldSpec("limit_val", int, "use only the first N validation examples (empty: all)", 1, 10**9,
                  optional=True),
        FieldSpec("max_steps", int, "stop after N optimisation steps (empty: no limit)", 1, 10**9,
                  optional=True),
    )
}
DEFAULTS: dict[str, Any] = {"max_seq_length": 32, "batch_size": 32, "lr": 5e-5, "epochs": 3, "seed": 7,
                            "limit_train": None, "limit_val": None, "max_steps": None}
CORPORA = ("nsmc", "file")
SCRATCH_LR = 1e-3  # `kolyric train`'s own default from scratch; 5e-5 is for fine-tuning


@dataclass(frozen=True)
class TrainingRequest:
    """A valid form: everything `kolyric train` needs."""

    corpus: str  # "nsmc" or a file path
    corpus_dir: str | None
    model: str | None  # None: from scratch
    out: str
    values: dict[str, Any]
    extra: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        """Arguments after ``kolyric train`` (events as JSON lines on stdout)."""
        args = ["--corpus", self.corpus]
        if self.corpus_dir:
            args += ["--corpus-dir", self.corpus_dir]
        args += ["--from-scratch"] if self.model is None else ["--model", self.model]
        for name, value in self.values.items():
            if value is not None:
                args += ["--" + name.replace("_", "-"), repr(value) if isinstance(value, float) else str(value)]
        return args + ["--out", self.out, *self.extra, "--events", "-"]


def coerce(spec: FieldSpec, raw: Any) -> tuple[bool, Any]:
    """The typed value of one form field, range-checked; (False, message) when invalid."""
    text = str(raw).strip() if raw is not None else ""
    if not text:
        return (True, None) if spec.optional else (False, f"must be {spec.describe_range()}, got nothing")
    try:
        value: Any = float(text) if spec.kind is float else int(float(text)) if _integral(text) else None
    except ValueError:
        value = None
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return False, f"must be {spec.describe_range()}, got {text!r}"
    low_bad = spec.low is not None and (value <= spec.low if spec.low_open else value < spec.low)
    if low_bad or (spec.high is not None and value > spec.high):
        return False, f"must be {spec.describe_range()}, got {text!r}"
    return True, value


def _integral(text: str) -> bool:
    try:
        return float(text).is_integer()
    except ValueError:
        return False


def default_out(data_dir: Path) -> str:
    return str(data_dir / "runs" / time.strftime("%Y%m%d-%H%M%S"))


def parse_form(raw: dict[str, Any], *, data_dir: Path) -> tuple[TrainingRequest | None, list[Problem]]:
    """Check the form (raw strings from the widgets); a request, or every problem found."""
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    for name, spec in TRAIN_FIELDS.items():
        ok, value = coerce(spec, raw.get(name))
        if ok:
            values[name] = value
        else:
            problems.append(Problem(name, raw.get(name), value))
    corpus = raw.get("corpus", "nsmc")
    corpus_file = str(raw.get("corpus_file") or "").strip()
    if corpus == "file":
        if not corpus_file:
            problems.append(Problem("corpus_file", corpus_file, "give the text file to train on"))
        elif not Path(corpus_file).expanduser().is_file():
            problems.append(Problem("corpus_file", corpus_file, f"no such file: {corpus_file}"))
    corpus_dir = str(raw.get("corpus_dir") or "").strip() or None
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
    if any(flag in ("--events", "--out") for flag in extra):
        problems.append(Problem("extra", raw.get("extra"), "--out and --events are set by the form"))
    if problems:
        return None, problems
    out = str(raw.get("out") or "").strip() or default_out(data_dir)
    request = TrainingRequest(corpus=corpus_file if corpus == "file" else "nsmc", corpus_dir=corpus_dir,
                              model=None if scratch else model, out=out, values=values, extra=extra)
    return request, []
