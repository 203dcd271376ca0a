"""``TrainConfig``: every setting of a training run, its default and its valid range, checked
in one place (``problems``) before torch or Lightning is imported; the CLI's flags and the app's
form are checked by it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kolyric.engine.loading import DEFAULT_MODEL, looks_like_path
from kolyric.training.scratch import TOKENIZER_KINDS

PRECISIONS = ("32", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64", "64-true")
SCRATCH_LR = 1e-3
FINETUNE_LR = 5e-5
EXPORT_DIRNAME = "model"
LAST_NAME = "last.ckpt"


@dataclass
class TrainConfig:
    """Everything a training run needs. Defaults are the tutorial's (ratsnlp on NSMC)."""

    out: str = "checkpoints"
    """Folder for checkpoints, the exported model and logs."""
    model: str = DEFAULT_MODEL
    """What to fine-tune: a hub id, a model directory, a .ckpt, or ``mini`` (see load_model)."""
    base: str | None = None
    """The base model a ``.ckpt`` without its own config is applied over."""
    corpus: str | list[str] = "nsmc"
    """``nsmc`` or the path of a .txt/.tsv/.jsonl file, or a list of them trained together; each may
    end in ``,repeat=N`` (see ``kolyric.training.corpora.CorpusSpec``)."""
    corpus_dir: str = "."
    """Root holding ``nsmc/ratings_train.txt`` (downloaded there by Korpora when missing)."""
    skip_bad_rows: bool = False
    """Skip malformed corpus rows (and report how many) instead of stopping at the first."""
    val_share: float = 0.1
    """Share of a user file held out for validation (0 < share < 1); NSMC uses its test split."""
    limit_train: int | None = None
    """Use only the first N training examples (≥ 1)."""
    limit_val: int | None = None
    """Use only the first N validation examples (≥ 1)."""
    max_seq_length: int = 32
    """Tokens per example, EOS included (1–n_positions); longer texts are cut."""
    batch_size: int = 32
    """Examples per batch per device (≥ 1)."""
    lr: float | None = None
    """Peak learning rate (0 < lr ≤ 1); default 5e-5 to fine-tune, 1e-3 from scratch."""
    epochs: int = 3
    """Passes over the training set (≥ 1)."""
    max_steps: int | None = None
    """Stop after this many optimiser steps in all (≥ 1), whatever ``epochs`` says."""
    warmup_steps: int | None = None
    """Linear warm-up steps (≥ 0); overrides ``warmup_ratio``."""
    warmup_ratio: float = 0.05
    """Warm-up as a share of all steps (0 ≤ ratio < 1)."""
    seed: int = 7
    """Seed for model init, shuffling and the validation split (≥ 0)."""
    precision: str = "32"
    """Lightning precision: 32, 16-mixed, bf16-mixed (or 16-true, bf16-true, 64)."""
    accelerator: str = "auto"
    """Lightning accelerator: auto, cpu, gpu, cuda, mps, tpu."""
    devices: str | int = "auto"
    """Lightning devices: auto, a count, or a list such as ``0,1``."""
    num_nodes: int = 1
    """Machines in a multi-node run (≥ 1)."""
    strategy: str = "auto"
    """Lightning strategy: auto, ddp, fsdp, deepspeed, …"""
    val_check_interval: float | int | None = None
    """Validate every N steps (int ≥ 1) or every share of an epoch (0 < float ≤ 1); default once an epoch."""
    group_by_length: bool = True
    """Batch rows of similar length together, so dynamic padding pads almost nothing."""
    num_workers: int = 2
    """DataLoader worker processes (≥ 0; the tutorial's cpu_workers)."""
    resume: str | None = None
    """Resume from this checkpoint (``last`` = ``out/last.ckpt``): weights, optimiser, step count."""
    from_scratch: bool = False
    """Train a new tokenizer and a small GPT-2 on the corpus instead of fine-tuning ``model``."""
    vocab_size: int = 8000
    """From scratch: tokenizer vocabulary size (≥ 71)."""
    tokenizer_kind: str = "metaspace"
    """From scratch: ``metaspace`` (whole syllables, like KoGPT2) or ``bytelevel``."""
    n_layer: int = 4
    """From scratch: transformer blocks (≥ 1)."""
    n_embd: int = 256
    """From scratch: model width (≥ 1, divisible by n_head)."""
    n_head: int = 4
    """From scratch: attention heads (≥ 1)."""
    n_positions: int = 128
    """From scratch: longest context (≥ max_seq_length)."""
    log_every_s: float = 1.0
    """At most one step event per this many seconds (the first and last step always)."""

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

        def positive(name: str, value: Any, optional: bool = False) -> None:
            if value is None and optional:
                return
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                p.append(f"--{_flag(name)}: must be an integer ≥ 1, got {value!r}")

        for name in ("max_seq_length", "batch_size", "epochs", "num_nodes"):
            positive(name, getattr(self, name))
        for name in ("limit_train", "limit_val", "max_steps"):
            positive(name, getattr(self, name), optional=True)
        if self.lr is not None and not (0 < self.lr <= 1):
            p.append(f"--lr: must be > 0 and ≤ 1, got {self.lr!r}")
        if not (0 < self.val_share < 1):
            p.append(f"--val-share: must be between 0 and 1 (exclusive), got {self.val_share!r}")
        if self.warmup_steps is not None and (not isinstance(self.warmup_steps, int) or self.warmup_steps < 0):
            p.append(f"--warmup-steps: must be an integer ≥ 0, got {self.warmup_steps!r}")
        if not (0 <= self.warmup_ratio < 1):
            p.append(f"--warmup-ratio: must be ≥ 0 and < 1, got {self.warmup_ratio!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed <= 2**32 - 1:  # Lightning's (numpy's) range
            p.append(f"--seed: must be an integer in [0, 4294967295], got {self.seed!r}")
        if self.precision not in PRECISIONS:
            p.append(f"--precision: must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            p.append(f"--num-workers: must be an integer ≥ 0, got {self.num_workers!r}")
        v = self.val_check_interval
        if v is not None:
            if isinstance(v, float) and not (0 < v <= 1):
                p.append(f"--val-check-interval: a share of an epoch must be > 0 and ≤ 1, got {v!r}")
            elif isinstance(v, int) and v < 1:
                p.append(f"--val-check-interval: a step count must be ≥ 1, got {v!r}")
        if self.accelerator not in ACCELERATORS:
            p.append(f"--accelerator: must be one of {', '.join(ACCELERATORS)}, got {_short(self.accelerator)}")
        if not _valid_devices(self.devices):
            p.append(f"--devices: must be auto, -1 (all), a count ≥ 1 or a list of device numbers like 0,1, "
                     f"got {_short(self.devices)}")
        if isinstance(self.num_nodes, int) and self.num_nodes > 1 and not _multi_node_launch():
            p.append(f"--num-nodes: {self.num_nodes} machines need a multi-machine launcher (torchrun, SLURM "
                     f"or MPI setting MASTER_ADDR and NODE_RANK on each); none is set here, so the run "
                     f"would wait for the others forever")
        if self.log_every_s < 0:
            p.append(f"log_every_s: must be ≥ 0, got {self.log_every_s!r}")
        if self.from_scratch and not self.resume:
            if self.tokenizer_kind not in TOKENIZER_KINDS:
                p.append(f"--tokenizer-kind: must be one of {', '.join(TOKENIZER_KINDS)}, got {self.tokenizer_kind!r}")
            if not isinstance(self.vocab_size, int) or self.vocab_size < 71:
                p.append(f"--vocab-size: must be an integer ≥ 71, got {self.vocab_size!r}")
            for name in ("n_layer", "n_embd", "n_head", "n_positions"):
                positive(name, getattr(self, name))
            if (isinstance(self.n_embd, int) and isinstance(self.n_head, int) and self.n_head >= 1
                    and self.n_embd % self.n_head):
                p.append(f"--n-embd: must be divisible by --n-head ({self.n_head}), got {self.n_embd}")
            if (isinstance(self.n_positions, int) and isinstance(self.max_seq_length, int)
                    and self.max_seq_length > self.n_positions):
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
                    p.append(f"--resume: no checkpoint at {path}" + (f"; to go on from the best one, use {others}"
                                                                     if others.startswith("--resume ") else ""))
            except OSError as exc:
                p.append(f"--resume: cannot use {path} ({exc.strerror or exc})")
        return p

    @property
    def resume_path(self) -> Path:
        if self.resume in (None, "last"):
            return Path(self.out).expanduser() / LAST_NAME
        return Path(self.resume).expanduser()


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu")


def _short(value: Any, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width] + "…"


def _valid_devices(value: Any) -> bool:
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
    return ("MASTER_ADDR" in env and ("NODE_RANK" in env or "GROUP_RANK" in env)) or "SLURM_NTASKS" in env \
        or "OMPI_COMM_WORLD_SIZE" in env or "TORCHELASTIC_RUN_ID" in env


def _resume_hint(folder: Path) -> str:
    """How to continue a run folder: ``--resume FILE`` naming its best complete checkpoint."""
    from kolyric.engine.loading import checkpoint_val_loss

    try:
        best = sorted((p for p in folder.glob("*.ckpt") if p.name != LAST_NAME and p.is_file()),
                      key=checkpoint_val_loss)
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
