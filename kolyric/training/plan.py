"""Planning a run on a small file of lyrics or poems: sensible defaults, and what an epoch covers.

The tutorial's defaults (32 tokens a row, 3 epochs, lr 5e-5) are for 150,000 one-line reviews.
A file of a few songs needs rows long enough to hold a verse, more passes over the little data
there is, and a learning rate that moves a small model. ``lyrics_defaults`` picks them from the
file and the model; ``plan_file`` says what one epoch will train on, so a writer sees before
starting that every line of every song is used (long songs are windowed, never cut).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kolyric.training.config import SCRATCH_LR
from kolyric.training.corpora import read_user_file, split_validation
from kolyric.training.dataset import Coverage, tokenize_examples

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

LYRICS_MAX_SEQ_LENGTH = 128
LYRICS_BATCH_SIZE = 8
TARGET_STEPS = 300
"""Optimiser steps a small-file run aims at in all: enough to learn a style, few enough to take
minutes on a CPU. Epochs follow from it (at least 3, at most 50)."""
MIN_EPOCHS, MAX_EPOCHS = 3, 50
PRETRAINED_LYRICS_LR = 1e-4  # a pretrained model such as KoGPT2 on a small file: gentler than from scratch
SMALL_MODEL_PARAMS = 20_000_000
"""Below this, a model trained from scratch here (kolyric-mini): it needs a larger learning rate."""


@dataclass(frozen=True)
class FilePlan:
    """What a run on one file will train on."""

    train_examples: int
    val_examples: int
    rows: int
    batch_size: int
    max_seq_length: int
    coverage: Coverage

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.rows / self.batch_size))

    def describe(self) -> str:
        cov = self.coverage
        share = cov.trained_tokens / cov.corpus_tokens if cov.corpus_tokens else 1.0
        text = (
            f"each epoch trains on {self.train_examples:,} text(s), {cov.trained_tokens:,} of "
            f"{cov.corpus_tokens:,} tokens ({share:.0%}), as {self.rows:,} row(s) of ≤ {self.max_seq_length} "
            f"tokens: {self.steps_per_epoch:,} step(s) of {self.batch_size}; "
            f"{self.val_examples:,} held out for validation"
        )
        warning = cov.warning(self.max_seq_length)
        return text + (f". Note: {warning}" if warning else "")


def plan_file(
    path: str | os.PathLike,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_seq_length: int,
    batch_size: int,
    val_share: float = 0.1,
    seed: int = 7,
) -> FilePlan:
    """Read ``path`` as ``kolyric train`` would and tokenize its training share (a CorpusError
    names what is wrong with the file)."""
    examples, _ = read_user_file(path)
    train, val = split_validation(examples, val_share, seed)
    data = tokenize_examples(train, tokenizer, max_seq_length)
    return FilePlan(len(train), len(val), len(data), batch_size, max_seq_length, data.coverage)


def lyrics_defaults(plan_rows: int, *, n_params: int, context: int) -> dict[str, int | float]:
    """Training settings for a small file: rows as long as the model allows up to 128 tokens, a
    small batch, epochs that reach about ``TARGET_STEPS`` steps, and a learning rate for the
    model's size (1e-4 for a pretrained model such as KoGPT2, 1e-3 for a small one)."""
    steps_per_epoch = max(1, math.ceil(plan_rows / LYRICS_BATCH_SIZE))
    epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(TARGET_STEPS / steps_per_epoch)))
    return {
        "max_seq_length": min(LYRICS_MAX_SEQ_LENGTH, context),
        "batch_size": LYRICS_BATCH_SIZE,
        "epochs": epochs,
        "lr": SCRATCH_LR if n_params < SMALL_MODEL_PARAMS else PRETRAINED_LYRICS_LR,
    }


@dataclass(frozen=True)
class FormPlan:
    """A small-file plan for the app's training form: the defaults to offer and what they cover."""

    plan: FilePlan
    defaults: dict[str, int | float]
    note: str
    """Which tokenizer measured the file (the base's, or kolyric-mini's as an estimate)."""

    def describe(self) -> str:
        return f"{self.plan.describe()} ({self.note})"


def plan_for_form(path: str | os.PathLike, model: str | None, *, val_share: float = 0.1, seed: int = 7) -> FormPlan:
    """Lyrics defaults and their coverage for training on ``path`` over ``model`` (None: from
    scratch). The base's own tokenizer measures the file when it is on disk; otherwise (from
    scratch, or a hub id not cached) kolyric-mini's does, as an estimate."""
    from kolyric.engine.integrity import estimate_parameters
    from kolyric.engine.loading import MINI_PATH, ModelLoadError, load_tokenizer
    from kolyric.engine.window import context_window

    spec = str(MINI_PATH) if model in (None, "", "mini") else model
    note = "measured with the base model's tokenizer"
    try:
        tokenizer, config = load_tokenizer(spec), _config(spec)
    except (ModelLoadError, OSError, ValueError):
        # A hub id not cached here, or a checkpoint: mini's tokenizer estimates the rows, and the
        # base is taken for a pretrained model (its size unknown until it loads).
        tokenizer, config = load_tokenizer(str(MINI_PATH)), None
        note = "estimated with kolyric-mini's tokenizer"
    n_params = (estimate_parameters(config) if config is not None else None) or SMALL_MODEL_PARAMS
    context = context_window(config, default=LYRICS_MAX_SEQ_LENGTH)
    if model is None:
        note = "estimated with kolyric-mini's tokenizer; from scratch trains its own"
        n_params, context = 0, LYRICS_MAX_SEQ_LENGTH  # a new small model: its own 128-token window
    length = min(LYRICS_MAX_SEQ_LENGTH, context)
    plan = plan_file(
        path, tokenizer, max_seq_length=length, batch_size=LYRICS_BATCH_SIZE, val_share=val_share, seed=seed
    )
    return FormPlan(plan, lyrics_defaults(plan.rows, n_params=n_params, context=context), note)


def _config(spec: str) -> PretrainedConfig | None:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(spec, local_files_only=True)
    except (OSError, ValueError):
        return None
