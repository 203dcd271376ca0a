"""Checkpoint files: reading them safely, checking them whole, choosing among them, and
applying their tensors to a model.

Used by ``kolyric.engine.loading`` (which re-exports these names). A checkpoint is read with
``torch.load(weights_only=True)``: classes it pickles that torch does not know (ratsnlp's
argument dataclass) become inert placeholders, never imported or run. kolyric's own
checkpoints carry a digest of their weights (``integrity.WEIGHTS_DIGEST_KEY``), checked on
every read, so a damaged file is refused by name instead of loading wrong weights; a folder
whose best checkpoint is damaged falls back to the next best one, with a notice.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kolyric.engine.integrity import digest_refusal

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

# Key under which kolyric's own checkpoints carry the model config and tokenizer, so a
# checkpoint made from scratch needs no base model. Plain types only (weights_only-safe).
CHECKPOINT_META_KEY = "kolyric"
_VAL_LOSS_RE = re.compile(r"val_loss=(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")


class ModelLoadError(Exception):
    """A model could not be loaded; the message names the path or id and says why."""


class CorruptCheckpoint(ModelLoadError):
    """The checkpoint file itself is unreadable or damaged (another checkpoint may do)."""


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def checkpoint_val_loss(path: Path) -> float:
    match = _VAL_LOSS_RE.search(path.name)
    if not match:
        return math.inf
    try:
        return float(match.group(1))
    except ValueError:
        return math.inf


def ranked_checkpoints(directory: Path) -> list[Path]:
    """The ``.ckpt`` files in ``directory``, best first: lowest ``val_loss=`` in the name, ties newest."""
    candidates = []
    for path in Path(directory).glob("*.ckpt"):
        try:
            if path.is_file():
                candidates.append((checkpoint_val_loss(path), -path.stat().st_mtime, path.name, path))
        except OSError:  # vanished or unreadable while listing
            continue
    return [path for *_, path in sorted(candidates)]


def best_checkpoint(directory: Path) -> Path | None:
    """The ``.ckpt`` in ``directory`` with the lowest ``val_loss=`` in its name (ties: newest)."""
    ranked = ranked_checkpoints(directory)
    return ranked[0] if ranked else None


def read_checkpoint(path: Path) -> dict:
    """``torch.load`` with ``weights_only=True``; pickled classes it does not know become inert stubs.

    Raises CorruptCheckpoint when the file cannot be read or its weights fail their digest.
    """
    import torch
    import torch.serialization as ser

    try:
        unsafe = ser.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as exc:  # any parse failure means a corrupt or foreign file
        raise CorruptCheckpoint(f"{path}: not a readable PyTorch checkpoint ({one_line(exc)})") from exc
    stubs = [(_make_stub(name), name) for name in unsafe]
    try:
        with ser.safe_globals(stubs):
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # any parse failure means a corrupt or foreign file
        raise CorruptCheckpoint(f"{path}: could not read the checkpoint ({one_line(exc)})") from exc
    if not isinstance(data, dict):
        raise CorruptCheckpoint(f"{path}: a checkpoint must hold a dict, found {type(data).__name__}")
    why = digest_refusal(data)
    if why:
        raise CorruptCheckpoint(f"{path}: {why}")
    return data


def _make_stub(qualified_name: str) -> type:
    """A class that accepts any construction or state and does nothing with it."""

    def _init(self: object, *args: object, **kwargs: object) -> None:
        self._args, self._kwargs = args, kwargs

    def _setstate(self: object, state: object) -> None:
        self._state = state

    module, _, name = qualified_name.rpartition(".")
    stub = type(name or "Stub", (), {"__init__": _init, "__setstate__": _setstate, "__module__": module or __name__})
    return stub


# Buffers some transformers versions store and others rebuild; never a reason to refuse.
IGNORABLE_KEYS = re.compile(r"(\.attn\.bias|\.attn\.masked_bias|\.rotary_emb\.inv_freq)$")


def apply_state_dict(model: PreTrainedModel, tensors: dict, *, source: str) -> None:
    """Load ``tensors`` into ``model``, refusing with the differing names if they do not fit."""
    own = model.state_dict()
    tensors = {k: v for k, v in tensors.items() if not IGNORABLE_KEYS.search(k)}
    tied = _tied_names(model)
    missing = [k for k in own if k not in tensors and not IGNORABLE_KEYS.search(k) and k not in tied]
    unexpected = [k for k in tensors if k not in own]
    shapes = [
        f"{k} {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}"
        for k in tensors
        if k in own and tuple(tensors[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, names in (("missing", missing), ("unexpected", unexpected), ("shape differs", shapes)):
            if names:
                shown = ", ".join(names[:5]) + (f" … (+{len(names) - 5})" if len(names) > 5 else "")
                parts.append(f"{label}: {shown}")
        raise ModelLoadError(f"{source}: the checkpoint does not fit the base model ({'; '.join(parts)})")
    model.load_state_dict(tensors, strict=False)
    if hasattr(model, "tie_weights"):
        model.tie_weights()


def _tied_names(model: PreTrainedModel) -> set[str]:
    """Parameter names that share storage with another (e.g. lm_head.weight tied to wte)."""
    seen: dict[int, str] = {}
    tied = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        ptr = tensor.data_ptr()
        if ptr in seen:
            tied.add(name)
        else:
            seen[ptr] = name
    return tied


def meta_of(data: dict) -> dict | None:
    """The kolyric metadata a checkpoint carries (top level, or in its hyper_parameters), or None."""
    for holder in (data, data.get("hyper_parameters") or {}):
        if isinstance(holder, dict) and isinstance(holder.get(CHECKPOINT_META_KEY), dict):
            return holder[CHECKPOINT_META_KEY]
    return None


def checkpoint_meta(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, base: str | None) -> dict:
    """What kolyric stores in its own checkpoints so they load without the base model."""
    return {
        "config": model.config.to_dict(),
        "tokenizer_json": tokenizer.backend_tokenizer.to_str(),
        "special_tokens": {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)},
        "base": base,
    }


def model_from_meta(
    meta: dict,
    path: Path,
    fill_special_tokens: Callable[[PreTrainedTokenizerFast], PreTrainedTokenizerFast],
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A fresh model and the tokenizer from a kolyric checkpoint's metadata (config, tokenizer.json)."""
    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    try:
        config_dict = dict(meta["config"])
        model_type = config_dict.pop("model_type")
        config = AutoConfig.for_model(model_type, **config_dict)
    except Exception as exc:  # whatever is wrong, the metadata is unusable
        raise ModelLoadError(f"{path}: the model config in the checkpoint is unusable ({one_line(exc)})") from exc
    from kolyric.engine.integrity import size_refusal

    why = size_refusal(config, "its config")
    if why:
        raise ModelLoadError(f"{path}: {why}")
    try:
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer.from_str(meta["tokenizer_json"]), **meta.get("special_tokens", {})
        )
    except Exception as exc:
        raise ModelLoadError(
            f"{path}: the tokenizer stored in the checkpoint (its tokenizer.json) is unusable ({one_line(exc)})"
        ) from exc
    try:
        model = AutoModelForCausalLM.from_config(config)
    except Exception as exc:
        raise ModelLoadError(f"{path}: the model config in the checkpoint is unusable ({one_line(exc)})") from exc
    return model, fill_special_tokens(tokenizer)


__all__ = [
    "CHECKPOINT_META_KEY",
    "IGNORABLE_KEYS",
    "CorruptCheckpoint",
    "ModelLoadError",
    "apply_state_dict",
    "best_checkpoint",
    "checkpoint_meta",
    "checkpoint_val_loss",
    "meta_of",
    "one_line",
    "ranked_checkpoints",
    "read_checkpoint",
]
