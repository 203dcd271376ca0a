"""Model loading: one function, ``load_model``, for every place a model can come from.

- ``mini``: kolyric-mini, the small model shipped inside the package;
- a Hugging Face hub id (default ``skt/kogpt2-base-v2``), from the local cache or the hub;
- a local model directory in ``save_pretrained`` layout;
- a PyTorch Lightning checkpoint (``.ckpt``; ``state_dict`` keys prefixed ``model.``, as the
  ratsnlp tutorial and ``kolyric train`` write them) applied over its base model;
- a directory of such checkpoints: the one with the lowest ``val_loss`` in its file name.

Nothing here executes code from a file: checkpoints load with ``weights_only=True`` (unknown
pickled classes, such as ratsnlp's argument dataclass, are replaced by inert placeholders),
weights prefer safetensors, and ``trust_remote_code`` is always off. Every failure is a
``ModelLoadError`` whose message names the path or id; a hub id with no network and no cache
fails within a few seconds instead of waiting on the network.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

DEFAULT_MODEL = "skt/kogpt2-base-v2"
# The tutorial (ratsnlp) checkpoints are fine-tunes of this model.
DEFAULT_CHECKPOINT_BASE = DEFAULT_MODEL
MINI_PATH = Path(__file__).resolve().parent.parent / "models" / "kolyric-mini"
# Key under which kolyric's own checkpoints carry the model config and tokenizer, so a
# checkpoint made from scratch needs no base model. Plain types only (weights_only-safe).
CHECKPOINT_META_KEY = "kolyric"
# KoGPT2's tokenizer.json defines no special-token roles; the tutorial passes these.
KOGPT2_SPECIAL_TOKENS = {
    "bos_token": "</s>", "eos_token": "</s>", "unk_token": "<unk>",
    "pad_token": "<pad>", "mask_token": "<mask>",
}
_VAL_LOSS_RE = re.compile(r"val_loss=(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
"""auto: int8 on a CPU for a model large enough for it to pay, else fp32 (``quantize.auto_precision``)."""


class ModelLoadError(Exception):
    """A model could not be loaded; the message names the path or id and says why."""


@dataclass
class LoadedModel:
    """A causal LM ready for generation, with its tokenizer and where it came from."""

    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers.PreTrainedTokenizerFast
    source: str  # what the user asked for
    kind: str  # mini | hub | directory | checkpoint
    description: str  # one line for status bars: "kolyric-mini · 4.1M params · cpu fp32"
    notices: list[str] = field(default_factory=list)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def device(self) -> str:
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
    try:
        loaded = _load_any(spec, base=base, network_timeout=network_timeout)
    except ModelLoadError:
        raise
    except _file_errors() as exc:
        raise ModelLoadError(f"{spec}: could not load the model: {_one_line(exc)}") from exc
    try:
        _place(loaded, device, precision, progress)
    except ModelLoadError:
        raise
    except (RuntimeError, AssertionError, ValueError) as exc:  # an unknown or unavailable device
        raise ModelLoadError(f"{spec}: cannot use device {device!r}: {_one_line(exc)}") from exc
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
        ckpt = best_checkpoint(path)
        if ckpt is None:
            raise ModelLoadError(
                f"{path}: not a model directory (no config.json) and holds no .ckpt checkpoint")
        loaded = _load_checkpoint(ckpt, base=base, network_timeout=network_timeout)
        loaded.notices.append(f"chose {ckpt.name} (lowest val_loss in {path})")
        return loaded
    if _looks_like_path(spec) or not _HUB_ID_RE.match(spec):
        raise ModelLoadError(f"{spec}: no such file or directory")
    return _load_hub(spec, network_timeout=network_timeout)


def _looks_like_path(spec: str) -> bool:
    return (spec.startswith((".", "/", "~")) or spec.endswith((".ckpt", ".bin", ".safetensors"))
            or spec.count("/") > 1 or os.sep != "/" and os.sep in spec)


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
            f"Use a local model directory, a .ckpt checkpoint, or --model mini.")
    model = _model_from_pretrained(repo_id, source=repo_id, local_files_only=False)
    tokenizer = load_tokenizer(repo_id, local_files_only=False)
    return LoadedModel(model, tokenizer, source=repo_id, kind="hub", description="")


def hub_unreachable_reason(timeout: float = 3.0) -> str | None:
    """None when the hub answers an HTTP request within ``timeout`` s; else why not.

    The deadline covers the whole exchange (name resolution, connecting, TLS, sending and
    reading the status line), so a hub that accepts and never answers, or answers a byte a
    second, fails as fast as one that refuses. Name resolution can block far longer than a
    socket timeout, so the probe runs in a daemon thread and is abandoned at the deadline.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    secure = parsed.scheme != "http"
    host = parsed.hostname or "huggingface.co"
    try:
        port = parsed.port or (443 if secure else 80)
    except ValueError:  # a port that is not a number, or out of range
        return f"HF_ENDPOINT {endpoint!r} is not a valid URL"
    deadline = time.monotonic() + timeout
    result: list[str | None] = []

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out")
        return remaining

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=left()) as raw:
                sock = raw
                if secure:
                    import ssl

                    sock = ssl.create_default_context().wrap_socket(raw, server_hostname=host)
                target = parsed.path or "/"
                sock.settimeout(left())
                sock.sendall(f"HEAD {target} HTTP/1.1\r\nHost: {parsed.netloc}\r\nUser-Agent: kolyric\r\n"
                             f"Connection: close\r\n\r\n".encode("ascii", "replace"))
                data = b""
                while b"\n" not in data and len(data) < 4096:
                    sock.settimeout(left())
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise ConnectionError("closed the connection without answering")
                    data += chunk
            result.append(None if data.startswith(b"HTTP/") else f"{host}: answered, but not with HTTP")
        except (OSError, ValueError, UnicodeError) as exc:
            result.append(f"{host} did not answer within {timeout:g} s" if isinstance(exc, socket.timeout)
                          else f"{host}: {_one_line(exc)}")

    thread = threading.Thread(target=probe, name="kolyric-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        return f"{host} did not answer within {timeout:g} s"
    return result[0]


def _model_from_pretrained(name: str, *, source: str, local_files_only: bool) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(name, local_files_only=local_files_only, trust_remote_code=False)
    if type(config) not in AutoModelForCausalLM._model_mapping:  # noqa: SLF001 - a type check only
        raise ModelLoadError(
            f"{source}: is a {config.model_type!r} model, not a causal language model "
            f"(kolyric needs a GPT-2 style model)")
    model, info = AutoModelForCausalLM.from_pretrained(
        name, config=config, local_files_only=local_files_only, trust_remote_code=False,
        output_loading_info=True)
    # Weights the files lack would be silently random: a model with another head or another
    # architecture's checkpoint. Refuse, naming them.
    missing = [k for k in info.get("missing_keys", []) if not _IGNORABLE.search(k)]
    if missing:
        shown = ", ".join(sorted(missing)[:5]) + (f" … (+{len(missing) - 5})" if len(missing) > 5 else "")
        raise ModelLoadError(f"{source}: the weights do not fit a {config.model_type!r} causal language "
                             f"model (missing: {shown})")
    return model


def load_tokenizer(name: str, *, local_files_only: bool = True) -> Any:
    """The model's fast tokenizer, with KoGPT2's special-token roles filled in where missing.

    ``tokenizer.json`` is loaded as-is through ``PreTrainedTokenizerFast`` (as the tutorial
    does): model-specific tokenizer classes may impose their own pre-tokenizer on it.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(name, local_files_only=local_files_only)
    except (OSError, ValueError, TypeError):
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_files_only,
                                                  trust_remote_code=False)
    return fill_special_tokens(tokenizer)


def fill_special_tokens(tokenizer: Any) -> Any:
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


def plain_backend(tokenizer: Any) -> Any:
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
def checkpoint_val_loss(path: Path) -> float:
    match = _VAL_LOSS_RE.search(path.name)
    if not match:
        return math.inf
    try:
        return float(match.group(1))
    except ValueError:
        return math.inf


def best_checkpoint(directory: Path) -> Path | None:
    """The ``.ckpt`` in ``directory`` with the lowest ``val_loss=`` in its name (ties: newest)."""
    candidates = [p for p in Path(directory).glob("*.ckpt") if p.is_file()]
    if not candidates:
        return None
    return min(candidates, key=lambda p: (checkpoint_val_loss(p), -p.stat().st_mtime))


def read_checkpoint(path: Path) -> dict:
    """``torch.load`` with ``weights_only=True``; pickled classes it does not know become inert stubs.

    ratsnlp checkpoints pickle the tutorial's own argument classes; we never import or run
    them, we only need the tensors.
    """
    import torch
    import torch.serialization as ser

    try:
        unsafe = ser.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse failure means a corrupt or foreign file
        raise ModelLoadError(f"{path}: not a readable PyTorch checkpoint ({_one_line(exc)})") from exc
    stubs = [(_make_stub(name), name) for name in unsafe]
    try:
        with ser.safe_globals(stubs):
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"{path}: could not read the checkpoint ({_one_line(exc)})") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: a checkpoint must hold a dict, found {type(data).__name__}")
    return data


def _make_stub(qualified_name: str) -> type:
    """A class that accepts any construction or state and does nothing with it."""

    def _init(self, *args, **kwargs):  # noqa: ANN001
        self._args, self._kwargs = args, kwargs

    def _setstate(self, state):  # noqa: ANN001
        self._state = state

    module, _, name = qualified_name.rpartition(".")
    stub = type(name or "Stub", (), {"__init__": _init, "__setstate__": _setstate,
                                     "__module__": module or __name__})
    return stub


def _load_checkpoint(path: Path, *, base: str | None, network_timeout: float) -> LoadedModel:
    data = read_checkpoint(path)
    state = data.get("state_dict", data)
    if not isinstance(state, dict) or not state:
        raise ModelLoadError(f"{path}: no state_dict in the checkpoint")
    import torch

    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelLoadError(f"{path}: the checkpoint's state_dict holds no tensors")
    # Lightning modules hold the HF model as `self.model`; strip only that leading prefix.
    if any(k.startswith("model.") for k in tensors):
        tensors = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    meta = _checkpoint_meta(data)
    if meta is not None and base is None:
        model, tokenizer = _model_from_meta(meta, path)
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


def _checkpoint_meta(data: dict) -> dict | None:
    for holder in (data, data.get("hyper_parameters") or {}):
        if isinstance(holder, dict) and isinstance(holder.get(CHECKPOINT_META_KEY), dict):
            return holder[CHECKPOINT_META_KEY]
    return None


def checkpoint_meta(model: Any, tokenizer: Any, base: str | None) -> dict:
    """What kolyric stores in its own checkpoints so they load without the base model."""
    return {
        "config": model.config.to_dict(),
        "tokenizer_json": tokenizer.backend_tokenizer.to_str(),
        "special_tokens": {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)},
        "base": base,
    }


def _model_from_meta(meta: dict, path: Path) -> tuple[Any, Any]:
    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    try:
        config_dict = dict(meta["config"])
        model_type = config_dict.pop("model_type")
        config = AutoConfig.for_model(model_type, **config_dict)
        model = AutoModelForCausalLM.from_config(config)
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(meta["tokenizer_json"]),
                                            **meta.get("special_tokens", {}))
    except Exception as exc:  # noqa: BLE001 - whatever is wrong, the metadata is unusable
        raise ModelLoadError(f"{path}: the checkpoint's kolyric metadata is unusable ({_one_line(exc)})") from exc
    return model, fill_special_tokens(tokenizer)


# Buffers some transformers versions store and others rebuild; never a reason to refuse.
_IGNORABLE = re.compile(r"(\.attn\.bias|\.attn\.masked_bias|\.rotary_emb\.inv_freq)$")


def apply_state_dict(model: Any, tensors: dict, *, source: str) -> None:
    """Load ``tensors`` into ``model``, refusing with the differing names if they do not fit."""
    own = model.state_dict()
    tensors = {k: v for k, v in tensors.items() if not _IGNORABLE.search(k)}
    tied = _tied_names(model)
    missing = [k for k in own if k not in tensors and not _IGNORABLE.search(k) and k not in tied]
    unexpected = [k for k in tensors if k not in own]
    shapes = [f"{k} {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}"
              for k in tensors if k in own and tuple(tensors[k].shape) != tuple(own[k].shape)]
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


def _tied_names(model: Any) -> set[str]:
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


# -- device and precision ---------------------------------------------------------------------------
def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _place(loaded: LoadedModel, device: str, precision: str,
           progress: Callable[[str], None] | None = None) -> None:
    import torch

    device = resolve_device(device)
    if precision == "auto":
        from kolyric.engine import quantize

        precision = quantize.auto_precision(loaded.model, device)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    loaded.model.to(device=device, dtype=dtype)
    loaded.model.eval()
    n_params = loaded.n_params  # counted before int8 packing hides the weights from parameters()
    if precision == "int8":
        from kolyric.engine import quantize  # the int8 CPU path (issue 8)

        notice = quantize.quantize_int8(loaded, progress=progress)
        if notice:
            loaded.notices.append(notice)
        precision = quantize.precision_of(loaded.model)  # fp32 when it fell back
    if loaded.model.generation_config is not None:
        # Generation settings come from DecodingSettings alone, never from the checkpoint.
        loaded.model.generation_config.pad_token_id = loaded.tokenizer.pad_token_id
    name = "kolyric-mini" if loaded.kind == "mini" else loaded.source
    loaded.description = (f"{name} · {_human(n_params)} params · {device} "
                          f"{precision}")


def _human(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def resolve_model_spec(spec: str | None, configured: str | None = None,
                       network_timeout: float = 2.0) -> tuple[str, str | None]:
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
