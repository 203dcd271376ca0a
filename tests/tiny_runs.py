"""The tiny from-scratch training run the training suites share: one model shape and corpus
sample, as ``TrainConfig`` values or as ``kolyric train`` flags.

A run of this shape trains a few hundred NSMC rows in seconds on one CPU thread; each suite
overrides what its test needs (more rows, more epochs, a larger model where the loss must
fall visibly).
"""

from __future__ import annotations

from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent / "data"
"""The NSMC sample shipped with the tests, as a ``corpus_dir`` (see tests/data/README.md)."""

TINY_SHAPE = {"vocab_size": 400, "n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 64}
"""A model small enough that building and training it costs a test seconds."""

TINY_RUN = {
    "corpus": "nsmc",
    "corpus_dir": str(CORPUS_DIR),
    "from_scratch": True,
    **TINY_SHAPE,
    "limit_val": 64,
    "num_workers": 0,
    "accelerator": "cpu",
}
"""What every tiny run sets: the NSMC sample, from scratch, the tiny shape, on the CPU."""

TINY_TRAIN = {**TINY_RUN, "max_seq_length": 32, "batch_size": 32, "lr": 3e-3}
"""A tiny run with its batch and learning rate fixed, so its loss falls within a few epochs."""


def flags(values: dict[str, object]) -> list[str]:
    """``kolyric train`` flags for config ``values``: ``--name value``, a true flag alone, a
    false or unset one left out."""
    out: list[str] = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is not False and value is not None:
            out += [flag, str(value)]
    return out


__all__ = ["CORPUS_DIR", "TINY_RUN", "TINY_SHAPE", "TINY_TRAIN", "flags"]
