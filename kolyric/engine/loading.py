"""Model loading: one function, ``load_model``, for every place a model can come from.

- ``mini``: kolyric-mini, the small model shipped inside the package;
- a Hugging Face hub id (default ``skt/kogpt2-base-v2``), from the local cache or the hub;
- a local model directory in ``save_pretrained`` layout;
- a PyTorch Lightning checkpoint (``.ckpt``; ``state_dict`` keys prefixed ``model.``, as the
  ratsnlp tutorial and ``kolyric train`` write them) applied over its base model;
- a directory of such checkpoints: the one with the lowest ``val_loss`` in its file name (a
  damaged one is skipped, with a notice, for the next best).

Nothing here executes code from a file: checkpoints load with ``weights_only=True`` (unknown
pickled classes, such as ratsnlp's argument dataclass, are replaced by inert placeholders),
weights prefer safetensors, and ``trust_remote_code`` is always off. Every failure is a
``ModelLoadError`` whose message names the path or id; a hub id with no network and no cache
fails within a few seconds instead of waiting on the network (``hub.py``). Files that lie are
refused before they can do harm (``integrity.py``): a config too big for memory before any
allocation, a tokenizer with ids beyond the embedding, a kolyric checkpoint whose weights fail
their digest. Checkpoint files themselves are read in ``checkpoints.py``.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kolyric.engine.checkpoints import (
    CHECKPOINT_META_KEY,
    IGNORABLE_KEYS,
    CorruptCheckpoint,
    ModelLoadError,
    apply_state_dict,
    best_checkpoint,
    checkpoint_meta,
    checkpoint_val_loss,
    meta_of,
    model_from_meta,
    one_line,
    ranked_checkpoints,
    read_checkpoint,
)
from kolyric.engine.hub import hub_unreachable_reason
from kolyric.engine.integrity import size_refusal, vocab_refusal
from kolyric.engine.placement import place

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

    from kolyric.engine.onnx_lm import OnnxLM
    from kolyric.engine.tokenizer_files import FastTokenizer

DEFAULT_MODEL = "skt/kogpt2-base-v2"
# The tutorial (ratsnlp) checkpoints are fine-tunes of this model.
DEFAULT_CHECKPOINT_BASE = DEFAULT_MODEL
MINI_PATH = Path(__file__).resolve().parent.parent / "models" / "kolyric-mini"
# KoGPT2's tokenizer.json defines no special-token roles; the tutorial passes these.
KOGPT2_SPECIAL_TOKENS = {
    "bos_token": "</s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8", "int4")
"""auto: int8 on a CPU for a model large enough for it to pay, else fp32 (``quantize.auto_precision``).
int4 is an ONNX Runtime graph (``onnx_graph``); without ONNX Runtime it falls back to int8."""


@dataclass
class LoadedModel:
    """A causal LM ready for generation, with its tokenizer and where it came from."""

    model: PreTrainedModel | OnnxLM
    tokenizer: PreTrainedTokenizerFast | FastTokenizer  # FastTokenizer: a cached graph's (tokenizer_files)
    source: str  # what the user asked for
    kind: str  # mini | hub | directory | checkpoint
    description: str  # one line for status bars: "kolyric-mini · 4.1M params · cpu fp32"
    notices: list[str] = field(default_factory=list)

    @property
    def n_params(self) -> int:
        if getattr(type(self.model), "kolyric_graph", False):  # an ONNX Runtime graph: no parameters()
            return int(self.model.n_params)
        return sum(p.numel() for p in self.model.parameters())

    @property
    def device(self) -> str:
        if getattr(type(self.model), "kolyric_graph", False):
            return "cpu"
        return str(next(self.model.parameters()).device)


def load_model(
    spec: str | os.PathLike | None = None,
    *,
    base: str | None = None,
    device: str = "auto",
    precision: str = "fp32",
    network_timeout: float = 3.0,
    progress: Callable[[str], None] | None = None,
) -> LoadedModel:
    """Load a causal LM and its tokenizer from ``spec`` (see the module docstring).

    ``base`` is the model a checkpoint is applied over when the checkpoint does not carry its
    own config (tutorial checkpoints: default ``skt/kogpt2-base-v2``). ``progress`` hears the
    slow phases as they begin (quantizing; building a model's int8 graph, once per model).
    """
    spec = str(spec) if spec is not None else DEFAULT_MODEL
    if precision not in PRECISIONS:
        raise ModelLoadError(f"precision: must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision in ("int8", "int4", "auto") and device in ("cpu", "auto"):  # a cached graph, if any
        from kolyric.engine import onnx_model

        fast = onnx_model.load_fast(spec, base, device, precision, network_timeout)
        if fast is not None:
            return fast
    try:
        loaded = _load_any(spec, base=base, network_timeout=network_timeout)
    except ModelLoadError:
        raise
    except _file_errors() as exc:
        raise ModelLoadError(f"{spec}: could not load the model: {one_line(exc)}") from exc
    why = vocab_refusal(loaded.model, loaded.tokenizer)
    if why:
        raise ModelLoadError(f"{spec}: {why}")
    try:
        place(loaded, device, precision, progress, graph_source=(spec, base, network_timeout))
    except ModelLoadError:
        raise
    except (RuntimeError, AssertionError, ValueError) as exc:  # an unknown or unavailable device
        raise ModelLoadError(f"{spec}: cannot use device {device!r}: {one_line(exc)}") from exc
    return loaded


def _file_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the files are not a usable model (a torn weights file, a foreign pickle)."""
    from safetensors import SafetensorError

    return (OSError, ValueError, RuntimeError, KeyError, pickle.UnpicklingError, SafetensorError)


def _load_any(spec: str, *, base: str | None, network_timeout: float) -> LoadedModel:
    if spec.strip().lower() in ("mini", "kolyric-mini"):
        if not (MINI_PATH / "config.json").is_file():
            raise ModelLoadError(f"mini: kolyric-mini is not in this install (looked in {MINI_PATH})")
        loaded = _load_directory(MINI_PATH, source=spec)
        loaded.kind = "mini"
        return loaded
    path = Path(spec).expanduser()
    if path.is_file():
        return _load_checkpoint(path, base=base, network_timeout=network_timeout)
    if path.is_dir():
        if (path / "config.json").is_file():
            return _load_directory(path, source=spec)
        return _load_checkpoint_folder(path, base=base, network_timeout=network_timeout)
    _refuse_broken_link(spec, path)
    if looks_like_path(spec) or not _HUB_ID_RE.match(spec):
        raise ModelLoadError(f"{spec}: no such file or directory")
    return _load_hub(spec, network_timeout=network_timeout)


def _refuse_broken_link(spec: str, path: Path) -> None:
    """A symbolic link loop or a dangling link is reported as such, not taken for a hub id."""
    import errno

    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ModelLoadError(f"{spec}: a loop of symbolic links (following them never reaches a file)") from None
        if os.path.islink(path):
            raise ModelLoadError(f"{spec}: a symbolic link to {os.readlink(path)}, which does not exist") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise ModelLoadError(f"{spec}: permission denied") from None
    except ValueError:  # an embedded NUL byte
        raise ModelLoadError(f"{spec!r}: not a valid path") from None


def looks_like_path(spec: str) -> bool:
    """Whether ``spec`` names a file or folder rather than a hub id."""
    return (
        spec.startswith((".", "/", "~"))
        or spec.endswith((".ckpt", ".bin", ".safetensors"))
        or spec.count("/") > 1
        or (os.sep != "/" and os.sep in spec)
    )


# -- directories and the hub ---------------------------------------------------------------------
def _load_directory(path: Path, *, source: str) -> LoadedModel:
    model = _model_from_pretrained(str(path), source=source, local_files_only=True)
    tokenizer = load_tokenizer(str(path), local_files_only=True)
    return LoadedModel(model, tokenizer, source=source, kind="directory", description="")


def _load_hub(repo_id: str, *, network_timeout: float) -> LoadedModel:
    # The local cache first: no network call at all when the model is there. The cache and
    # the network are checked before transformers is imported, so a missing model is
    # reported in seconds even on a slow machine.
    if _hub_cached(repo_id):
        try:
            model = _model_from_pretrained(repo_id, source=repo_id, local_files_only=True)
            tokenizer = load_tokenizer(repo_id, local_files_only=True)
            return LoadedModel(model, tokenizer, source=repo_id, kind="hub", description="")
        except OSError:
            pass  # a partial cache: fetch the rest if the hub answers
    reason = hub_unreachable_reason(network_timeout)
    if reason:
        raise ModelLoadError(
            f"{repo_id}: not in the local Hugging Face cache, and the hub cannot be reached ({reason}). "
            f"Use a local model directory, a .ckpt checkpoint, or the shipped model, mini."
        )
    model = _model_from_pretrained(repo_id, source=repo_id, local_files_only=False)
    tokenizer = load_tokenizer(repo_id, local_files_only=False)
    return LoadedModel(model, tokenizer, source=repo_id, kind="hub", description="")


def _model_from_pretrained(name: str, *, source: str, local_files_only: bool) -> PreTrainedModel:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(name, local_files_only=local_files_only, trust_remote_code=False)
    if type(config) not in AutoModelForCausalLM._model_mapping:  # a type check only
        raise ModelLoadError(
            f"{source}: is a {config.model_type!r} model, not a causal language model "
            f"(kolyric needs a GPT-2 style model)"
        )
    why = size_refusal(config, "its config.json")
    if why:
        raise ModelLoadError(f"{source}: {why}")
    # Shapes that differ are loaded as "mismatched" (and refused below, by name) instead of
    # raising transformers' "look at the above report", whose report is a log line we silence.
    model, info = AutoModelForCausalLM.from_pretrained(
        name,
        config=config,
        local_files_only=local_files_only,
        trust_remote_code=False,
        output_loading_info=True,
        ignore_mismatched_sizes=True,
    )
    mismatched = sorted(f"{key} {tuple(ckpt)} vs {tuple(own)}" for key, ckpt, own in info.get("mismatched_keys", []))
    if mismatched:
        shown = ", ".join(mismatched[:5]) + (f" … (+{len(mismatched) - 5})" if len(mismatched) > 5 else "")
        raise ModelLoadError(
            f"{source}: the weights do not fit its config.json (shape differs, weights vs config: {shown})"
        )
    # Weights the files lack would be silently random: a model with another head or another
    # architecture's checkpoint. Refuse, naming them.
    missing = [k for k in info.get("missing_keys", []) if not IGNORABLE_KEYS.search(k)]
    if missing:
        shown = ", ".join(sorted(missing)[:5]) + (f" … (+{len(missing) - 5})" if len(missing) > 5 else "")
        raise ModelLoadError(
            f"{source}: the weights do not fit a {config.model_type!r} causal language model (missing: {shown})"
        )
    return model


def load_tokenizer(name: str, *, local_files_only: bool = True) -> PreTrainedTokenizerFast:
    """The model's fast tokenizer, with KoGPT2's special-token roles filled in where missing.

    ``tokenizer.json`` is loaded as-is through ``PreTrainedTokenizerFast`` (as the tutorial
    does): model-specific tokenizer classes may impose their own pre-tokenizer on it.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    folder = Path(name)
    where = f"{folder / 'tokenizer.json'}" if folder.is_dir() else f"{name}'s tokenizer.json"
    if folder.is_dir() and not (folder / "tokenizer.json").exists() and not (folder / "vocab.json").is_file():
        raise ModelLoadError(f"{folder}: no tokenizer.json (the model's tokenizer) in the folder")
    if (folder / "tokenizer.json").is_dir():
        raise ModelLoadError(f"{where}: a folder, where the tokenizer file should be")
    try:
        try:
            tokenizer = PreTrainedTokenizerFast.from_pretrained(name, local_files_only=local_files_only)
        except (OSError, ValueError, TypeError):
            tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_files_only, trust_remote_code=False)
    except Exception as exc:  # JSON, decoding and schema errors alike: the file is unusable
        raise ModelLoadError(f"{where}: not a usable tokenizer ({one_line(exc)})") from exc
    if len(tokenizer) < 2:
        raise ModelLoadError(f"{where}: the tokenizer holds {len(tokenizer)} token(s); it cannot encode text")
    return fill_special_tokens(tokenizer)


def fill_special_tokens(tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """Give the tokenizer KoGPT2's special tokens for every role it lacks, when its vocab has them."""
    vocab = tokenizer.get_vocab()
    missing = {}
    for role, token in KOGPT2_SPECIAL_TOKENS.items():
        if getattr(tokenizer, role, None) is None and token in vocab:
            missing[role] = token
    if missing:
        tokenizer.add_special_tokens(missing)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def plain_backend(tokenizer: PreTrainedTokenizerFast) -> Tokenizer:
    """The fast tokenizer's Rust backend with padding and truncation off.

    A ``tokenizer.json`` saved after a padded, truncated call keeps both settings, and code
    that calls the backend directly (batched tokenizing for training and evaluation) would
    get every row padded and cut. Returns a copy, leaving the shared tokenizer untouched.
    """
    from tokenizers import Tokenizer

    backend = tokenizer.backend_tokenizer
    if backend.padding is None and backend.truncation is None:
        return backend
    plain = Tokenizer.from_str(backend.to_str())
    plain.no_padding()
    plain.no_truncation()
    return plain


# -- checkpoints ---------------------------------------------------------------------------------
def _load_checkpoint_folder(path: Path, *, base: str | None, network_timeout: float) -> LoadedModel:
    """The best checkpoint in ``path``; past a damaged one, the next best, with a notice naming it."""
    ranked = ranked_checkpoints(path)
    if not ranked:
        raise ModelLoadError(f"{path}: not a model directory (no config.json) and holds no .ckpt checkpoint")
    damaged: list[CorruptCheckpoint] = []
    for ckpt in ranked:
        try:
            loaded = _load_checkpoint(ckpt, base=base, network_timeout=network_timeout)
        except CorruptCheckpoint as exc:
            damaged.append(exc)
            continue
        for exc in damaged:
            loaded.notices.append(f"skipped a damaged checkpoint: {exc}")
        which = "the best one left" if damaged else "lowest val_loss"
        loaded.notices.append(f"chose {ckpt.name} ({which} in {path})")
        return loaded
    if len(damaged) == 1:
        raise damaged[0]
    raise CorruptCheckpoint(f"{path}: all {len(damaged)} checkpoints are damaged; the best: {damaged[0]}")


def _load_checkpoint(path: Path, *, base: str | None, network_timeout: float) -> LoadedModel:
    data = read_checkpoint(path)
    state = data.get("state_dict", data)
    if not isinstance(state, dict) or not state:
        raise CorruptCheckpoint(f"{path}: no state_dict in the checkpoint")
    import torch

    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CorruptCheckpoint(f"{path}: the checkpoint's state_dict holds no tensors")
    # Lightning modules hold the HF model as `self.model`; strip only that leading prefix.
    if any(k.startswith("model.") for k in tensors):
        tensors = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    meta = meta_of(data)
    if meta is not None and base is None:
        model, tokenizer = model_from_meta(meta, path, fill_special_tokens)
        base_desc = "its own config"
    else:
        base_name = base or (meta or {}).get("base") or DEFAULT_CHECKPOINT_BASE
        base_loaded = _load_any(base_name, base=None, network_timeout=network_timeout)
        model, tokenizer = base_loaded.model, base_loaded.tokenizer
        base_desc = base_name
    apply_state_dict(model, tensors, source=str(path))
    loaded = LoadedModel(model, tokenizer, source=str(path), kind="checkpoint", description="")
    loaded.notices.append(f"checkpoint {path.name} applied over {base_desc}")
    return loaded


def resolve_model_spec(
    spec: str | None, configured: str | None = None, network_timeout: float = 2.0
) -> tuple[str, str | None]:
    """Which model to load when the user may not have named one, and a notice saying why.

    Named > configured default > ``skt/kogpt2-base-v2`` when cached or the hub answers quickly >
    kolyric-mini.
    """
    if spec:
        return spec, None
    if configured:
        return configured, None
    if _hub_cached(DEFAULT_MODEL):
        return DEFAULT_MODEL, None
    reason = hub_unreachable_reason(network_timeout)
    if reason is None:
        return DEFAULT_MODEL, None
    if (MINI_PATH / "config.json").is_file():
        return "mini", f"using kolyric-mini: {DEFAULT_MODEL} is not cached and the hub cannot be reached ({reason})"
    return DEFAULT_MODEL, None


def _hub_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
        return isinstance(found, str)
    except Exception:  # noqa: BLE001 - a broken cache is the same as no cache here
        return False


__all__ = [  # checkpoint-file helpers live in checkpoints.py and the hub probe in hub.py; both re-exported here
    "CHECKPOINT_META_KEY",
    "CorruptCheckpoint",
    "DEFAULT_MODEL",
    "LoadedModel",
    "MINI_PATH",
    "ModelLoadError",
    "PRECISIONS",
    "apply_state_dict",
    "best_checkpoint",
    "checkpoint_meta",
    "checkpoint_val_loss",
    "fill_special_tokens",
    "hub_unreachable_reason",
    "load_model",
    "load_tokenizer",
    "plain_backend",
    "read_checkpoint",
    "resolve_model_spec",
]
