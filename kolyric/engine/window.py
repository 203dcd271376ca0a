"""A model's context window: the most positions it attends over, as its config states it.

GPT-2 configs call it ``n_positions``, most others ``max_position_embeddings`` (some older ones
``n_ctx``). Decoding, evaluation and training all read it here, so they agree on a model's
window; a config that states none gets ``default``.
"""

from __future__ import annotations

DEFAULT_WINDOW = 1024  # GPT-2's, and KoGPT2's
WINDOW_KEYS = ("n_positions", "max_position_embeddings", "n_ctx")


def context_window(config: object, default: int = DEFAULT_WINDOW) -> int:
    """The window a model config (or anything with its attributes) states, else ``default``."""
    for key in WINDOW_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


__all__ = ["DEFAULT_WINDOW", "context_window"]
