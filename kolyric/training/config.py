"""``TrainConfig``: every setting of a training run, stated once: its default, its valid range
and a line of help (``Setting``, in each field's metadata). ``problems`` checks them all before
torch or Lightning is imported; `kolyric train`'s flags and the app's training form are built
from the same fields, so a range cannot differ between them."""

from __future__ import annotations

import math
import os
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import TypeVar

from kolyric.engine.loading import DEFAULT_MODEL, looks_like_path
from kolyric.training.scratch import TOKENIZER_KINDS

PRECISIONS = ("32", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64", "64-true")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu")
SCRATCH_LR = 1e-3
FINETUNE_LR = 5e-5
EXPORT_DIRNAME = "model"
LAST_NAME = "last.ckpt"
MAX_COUNT = 10**9  # a limit on examples or steps beyond any corpus kolyric could read
MAX_WINDOW = 8192  # tokens: beyond any GPT-2's context; the model's own window is checked when it loads
T = TypeVar("T")


@dataclass(frozen=True)
class Setting:
    """How one ``TrainConfig`` field is checked and offered: its help line (the CLI's help and the
    form's tooltip), its valid range or choices, and its place in ``kolyric train --help``."""

    help: str
    kind: type | None = None  # int, float, str or bool (what the CLI parses); None: the default's type
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the value must be strictly above ``low``
    high_open: bool = False  # ... strictly below ``high``
    choices: tuple[str, ...] | None = None
    optional: bool = False  # None is allowed (the default is None)
    group: str = "data"  # the --help section
    metavar: str | None = None
    flag: bool = True  # False: not on the command line
    scratch_only: bool = False  # checked only when a new model is made (from scratch, not resumed)

    def describe_range(self) -> str:
        """What ``valid`` takes, as messages say it: "an integer in [1, 4096]", "> 0 and ≤ 1"."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind is int:
            if self.high is None:
                return f"an integer ≥ {_num(self.low)}" if self.low is not None else "an integer"
            return f"an integer in [{_num(self.low)}, {_num(self.high)}]"
        if self.low is not None and self.high is not None and self.low_open and self.high_open:
            return f"between {_num(self.low)} and {_num(self.high)} (exclusive)"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '≥'} {_num(self.low)}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '≤'} {_num(self.high)}")
        return " and ".join(parts) or "a number"

    def valid(self, value: object) -> bool:
        if value is None:
            return self.optional
        if self.choices:
            return isinstance(value, str) and value in self.choices
        if self.kind is bool:
            return isinstance(value, bool)
        if self.kind is str:
            return isinstance(value, str)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))


def _num(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting(default: T, spec: Setting) -> T:
    """A dataclass field holding ``default``, with ``spec`` as its metadata (its kind following the
    default's unless given; None allowed when the default is None)."""
    kind = spec.kind or (type(default) if default is not None else str)
    return field(default=default, metadata={"setting": replace(spec, kind=kind, optional=default is None)})


MODEL, OPTIMISATION, HARDWARE, OUTPUT = "model", "optimisation", "hardware (passed to Lightning)", "output"


def _shape(help: str, high: int, low: int = 1) -> Setting:
    return Setting(help, int, low, high, group=MODEL, metavar="N", scratch_only=True)


@dataclass
class TrainConfig:
    """Everything a training run needs. Defaults are the tutorial's (ratsnlp on NSMC)."""

    corpus: str | list[str] = setting(  # noqa: RUF009 - setting() is field(): the default is a str
        "nsmc",
        Setting(
            'nsmc, or a .txt (blank line between songs), .tsv (text<TAB>polarity) or .jsonl ({"text", "polarity"}; '
            "a poems file as it is) file; give it again to train on several, and add ,repeat=N to show one N times "
            "an epoch",
            metavar="nsmc|FILE[,repeat=N]",
        ),
    )
    corpus_dir: str = setting(
        ".", Setting("root holding nsmc/ratings_train.txt; downloaded there if missing", metavar="DIR")
    )
    skip_bad_rows: bool = setting(
        False, Setting("skip malformed rows and report how many, instead of stopping at the first")
    )
    val_share: float = setting(
        0.1,
        Setting(
            "share of a user file held out for validation (NSMC uses its test split)",
            float,
            0.0,
            1.0,
            low_open=True,
            high_open=True,
            metavar="F",
        ),
    )
    limit_train: int | None = setting(
        None, Setting("use only the first N training examples", int, 1, MAX_COUNT, metavar="N")
    )
    limit_val: int | None = setting(
        None, Setting("use only the first N validation examples", int, 1, MAX_COUNT, metavar="N")
    )
    max_seq_length: int = setting(
        32,
        Setting(
            "tokens per training row, EOS included; longer texts are split into overlapping windows that end on "
            "line breaks, never cut off (at most the model's context)",
            int,
            2,
            MAX_WINDOW,
            metavar="N",
        ),
    )

    model: str = setting(
        DEFAULT_MODEL, Setting("model to fine-tune: hub id, directory, .ckpt or mini", group=MODEL, metavar="SPEC")
    )
    base: str | None = setting(
        None, Setting("base model for a .ckpt that does not carry its config", group=MODEL, metavar="SPEC")
    )
    from_scratch: bool = setting(
        False, Setting("train a new tokenizer and a small GPT-2 on the corpus instead", group=MODEL)
    )
    vocab_size: int = setting(8000, _shape("from scratch: tokenizer vocabulary", 1_000_000, low=71))
    tokenizer_kind: str = setting(
        "metaspace",
        Setting(
            "from scratch: metaspace (whole syllables, like KoGPT2) or bytelevel",
            choices=TOKENIZER_KINDS,
            group=MODEL,
            metavar="KIND",
            scratch_only=True,
        ),
    )
    n_layer: int = setting(4, _shape("from scratch: transformer blocks", 256))
    n_embd: int = setting(256, _shape("from scratch: model width, divisible by --n-head", 65536))
    n_head: int = setting(4, _shape("from scratch: attention heads", 1024))
    n_positions: int = setting(128, _shape("from scratch: longest context, at least --max-seq-length", MAX_WINDOW))

    batch_size: int = setting(
        32, Setting("examples per batch per device", int, 1, 4096, group=OPTIMISATION, metavar="N")
    )
    lr: float | None = setting(
        None,
        Setting(
            f"peak learning rate (default {FINETUNE_LR:g} to fine-tune, {SCRATCH_LR:g} from scratch)",
            float,
            0.0,
            1.0,
            low_open=True,
            group=OPTIMISATION,
            metavar="LR",
        ),
    )
    epochs: int = setting(3, Setting("passes over the training data", int, 1, 1000, group=OPTIMISATION, metavar="N"))
    max_steps: int | None = setting(
        None,
        Setting(
            "stop after N optimiser steps in all, whatever --epochs says",
            int,
            1,
            MAX_COUNT,
            group=OPTIMISATION,
            metavar="N",
        ),
    )
    warmup_steps: int | None = setting(
        None,
        Setting("linear warm-up steps; overrides --warmup-ratio", int, 0, MAX_COUNT, group=OPTIMISATION, metavar="N"),
    )
    warmup_ratio: float = setting(
        0.05,
        Setting(
            "warm-up as a share of all steps; then cosine decay to 10% of lr",
            float,
            0.0,
            1.0,
            high_open=True,
            group=OPTIMISATION,
            metavar="F",
        ),
    )
    seed: int = setting(
        7,
        Setting(  # Lightning's (numpy's) range
            "seed for model init, shuffling and the validation split",
            int,
            0,
            2**32 - 1,
            group=OPTIMISATION,
            metavar="N",
        ),
    )

    precision: str = setting(
        "32",
        Setting(
            "Lightning precision: 32, 16-mixed or bf16-mixed (or 16-true, bf16-true, 64)",
            choices=PRECISIONS,
            group=HARDWARE,
            metavar="P",
        ),
    )
    accelerator: str = setting(
        "auto", Setting("auto, cpu, gpu, mps, …", choices=ACCELERATORS, group=HARDWARE, metavar="A")
    )
    devices: str | int = setting("auto", Setting("auto, a count, or a list like 0,1", group=HARDWARE, metavar="D"))
    num_nodes: int = setting(1, Setting("machines in a multi-node run", int, 1, 100_000, group=HARDWARE, metavar="N"))
    strategy: str = setting("auto", Setting("auto, ddp, fsdp, deepspeed, …", group=HARDWARE, metavar="S"))
    group_by_length: bool = setting(
        True, Setting("batch rows of similar length together, so dynamic padding pads almost nothing", group=HARDWARE)
    )
    num_workers: int = setting(2, Setting("DataLoader worker processes", int, 0, 256, group=HARDWARE, metavar="N"))
    val_check_interval: float | int | None = setting(
        None,
        Setting(
            "validate every N steps, or every F of an epoch (default once an epoch)", group=HARDWARE, metavar="N|F"
        ),
    )

    out: str = setting(
        "checkpoints",
        Setting("folder for checkpoints, the exported model (DIR/model) and logs", group=OUTPUT, metavar="DIR"),
    )
    resume: str | None = setting(
        None,
        Setting(
            "continue from DIR/last.ckpt (or the given checkpoint): weights, optimiser, step",
            group=OUTPUT,
            metavar="CKPT",
        ),
    )
    log_every_s: float = setting(
        1.0,
        Setting(
            "at most one step event per this many seconds (the first and last step always)", float, 0.0, flag=False
        ),
    )

    @property
    def corpus_specs(self) -> list[str]:
        return [self.corpus] if isinstance(self.corpus, str) else list(self.corpus)

    @property
    def peak_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return SCRATCH_LR if self.from_scratch else FINETUNE_LR

    def problems(self) -> list[str]:
        """Every invalid setting, each naming its flag and the valid range."""
        p: list[str] = []
        make_model = self.from_scratch and not self.resume
        for name, spec in SETTINGS.items():
            ranged = spec.low is not None or spec.high is not None or spec.choices
            if ranged and (make_model or not spec.scratch_only):
                problem = check_setting(name, getattr(self, name))
                if problem:
                    p.append(problem)
        v = self.val_check_interval
        if v is not None:
            if isinstance(v, float) and not (0 < v <= 1):
                p.append(f"--val-check-interval: a share of an epoch must be > 0 and ≤ 1, got {v!r}")
            elif isinstance(v, int) and v < 1:
                p.append(f"--val-check-interval: a step count must be ≥ 1, got {v!r}")
        if not _valid_devices(self.devices):
            p.append(
                f"--devices: must be auto, -1 (all), a count ≥ 1 or a list of device numbers like 0,1, "
                f"got {_short(self.devices)}"
            )
        if isinstance(self.num_nodes, int) and self.num_nodes > 1 and not _multi_node_launch():
            p.append(
                f"--num-nodes: {self.num_nodes} machines need a multi-machine launcher (torchrun, SLURM "
                f"or MPI setting MASTER_ADDR and NODE_RANK on each); none is set here, so the run "
                f"would wait for the others forever"
            )
        if make_model:
            if (
                isinstance(self.n_embd, int)
                and isinstance(self.n_head, int)
                and self.n_head >= 1
                and self.n_embd % self.n_head
            ):
                p.append(f"--n-embd: must be divisible by --n-head ({self.n_head}), got {self.n_embd}")
            if (
                isinstance(self.n_positions, int)
                and isinstance(self.max_seq_length, int)
                and self.max_seq_length > self.n_positions
            ):
                p.append(f"--max-seq-length: must be ≤ --n-positions ({self.n_positions}), got {self.max_seq_length}")
        out = Path(self.out).expanduser()
        try:
            if out.exists() and not out.is_dir():
                p.append(f"--out: {out} exists and is not a folder")
            elif out.is_dir() and not self.resume and any(out.glob("*.ckpt")):
                hint = "--resume" if (out / LAST_NAME).is_file() else _resume_hint(out)
                p.append(f"--out: {out} already holds checkpoints; continue them with {hint}, or use a new --out")
        except OSError as exc:  # e.g. a name too long for the file system
            p.append(f"--out: cannot use {out} ({exc.strerror or exc})")
        if self.base is not None and looks_like_path(self.base):
            try:
                if not Path(self.base).expanduser().exists():
                    p.append(f"--base: no such file or folder: {self.base}")
            except OSError as exc:
                p.append(f"--base: cannot use {self.base} ({exc.strerror or exc})")
        if self.resume:
            path = self.resume_path
            try:
                if not path.is_file():
                    others = _resume_hint(path.parent) if self.resume in (None, "last") else ""
                    p.append(
                        f"--resume: no checkpoint at {path}"
                        + (f"; to go on from the best one, use {others}" if others.startswith("--resume ") else "")
                    )
            except OSError as exc:
                p.append(f"--resume: cannot use {path} ({exc.strerror or exc})")
        return p

    @property
    def resume_path(self) -> Path:
        if self.resume in (None, "last"):
            return Path(self.out).expanduser() / LAST_NAME
        return Path(self.resume).expanduser()


SETTINGS: dict[str, Setting] = {f.name: f.metadata["setting"] for f in fields(TrainConfig)}


def default_of(name: str) -> object:
    """``TrainConfig``'s default for the field ``name``."""
    found: Field[object] = TrainConfig.__dataclass_fields__[name]
    return found.default


def check_setting(name: str, value: object) -> str | None:
    """Why ``value`` is no valid ``name`` ("--flag: must be …, got …"), or None."""
    spec = SETTINGS[name]
    if spec.valid(value):
        return None
    label = f"--{_flag(name)}" if spec.flag else name
    return f"{label}: must be {spec.describe_range()}, got {_short(value)}"


def _short(value: object, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width] + "…"


def _valid_devices(value: object) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return value >= 1 or value == -1
    if not isinstance(value, str) or len(value) > 200:
        return False
    if value in ("auto", "-1"):
        return True
    parts = [part.strip() for part in value.strip().strip("[]").split(",") if part.strip()]
    return bool(parts) and all(part.isdigit() and len(part) <= 4 for part in parts)


def _multi_node_launch() -> bool:
    env = os.environ
    return (
        ("MASTER_ADDR" in env and ("NODE_RANK" in env or "GROUP_RANK" in env))
        or "SLURM_NTASKS" in env
        or "OMPI_COMM_WORLD_SIZE" in env
        or "TORCHELASTIC_RUN_ID" in env
    )


def _resume_hint(folder: Path) -> str:
    """How to continue a run folder: ``--resume FILE`` naming its best complete checkpoint."""
    from kolyric.engine.loading import checkpoint_val_loss

    try:
        best = sorted(
            (p for p in folder.glob("*.ckpt") if p.name != LAST_NAME and p.is_file()), key=checkpoint_val_loss
        )
    except OSError:
        best = []
    return f"--resume {best[0]}" if best else "--resume"


def _flag(name: str) -> str:
    return name.replace("_", "-")


class ConfigError(ValueError):
    """The configuration has problems; ``problems`` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
