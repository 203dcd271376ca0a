"""ONNX Runtime decoding steps for a PyTorch int8 model, and the KV cache both graph paths share.

``kolyric.engine.quantize`` puts PyTorch's int8 layers into a model; when ``onnxruntime`` is
installed (``pip install kolyric[int8]``) and the model is a GPT-2, it also attaches an
``OnnxDecoder`` as ``model.kolyric_decoder``, which kolyric's loop calls for every decoding step
after the prompt. It runs the model's int8 graph (``kolyric.engine.onnx_graph``: built once per
weights and cached on disk). ``load_model`` itself runs such graphs without a PyTorch model
(``kolyric.engine.onnx_model``); this decoder is for a model switched to int8 at run time
(``quantize.set_precision``).
"""

from __future__ import annotations

import contextlib
import threading
import typing
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kolyric.engine import onnx_graph, onnx_session
from kolyric.engine.onnx_graph import onnx_cache_dir, quiet

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime
    import torch
    from transformers import PreTrainedModel

_GRAPH_KWARGS = frozenset({"use_cache", "return_dict", "logits_to_keep", "past_key_values", "cache"})
"""Keyword arguments of a model call that the graph answers as PyTorch would."""
DECODER = "kolyric_decoder"
"""Model attribute holding the ONNX Runtime decoding step, when there is one."""
_CORES = {"holders": 0, "torch_threads": 0}
_CORES_LOCK = threading.Lock()


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


class OnnxDecoder:
    """One decoding step of a GPT-2 (one new token per row, over a KV cache) in ONNX Runtime.

    Called like the model's forward. The prompt runs on the same graph (an empty cache), so a
    model switched to int8 here gives the same tokens as one loaded in int8, whose graph runs
    alone (``onnx_lm.OnnxLM``); PyTorch's int8 layers round differently (logits ~0.08 apart on
    a tiny model, enough to change a sampled token). A call the graph does not cover (hidden
    states or labels asked for, a PyTorch cache of several positions continued by several
    tokens) goes to the PyTorch model; a PyTorch cache is taken over at the next one-token step.
    The cache it returns holds ONNX Runtime's arrays and is only for passing back to this decoder.

    While it is attached, ONNX Runtime has the CPU threads PyTorch had and PyTorch runs on one
    (restored when the last decoder goes): PyTorch's work between steps is small operations,
    and its idle OpenMP threads spinning beside ONNX Runtime's made each step ~40% slower on
    2 cores. A call that goes to PyTorch gets every thread back while it runs; beam search
    (``model.generate`` on PyTorch int8) runs on one.
    """

    def __init__(self, model: PreTrainedModel, session: onnxruntime.InferenceSession | None, weight_bytes: int):
        import inspect

        self._model = weakref.ref(model)  # no cycle: the model going frees this at once
        self.session = session
        self.weight_bytes = weight_bytes
        self.n_layer = int(model.config.n_layer)
        self.past_names = [f"past_{i}" for i in range(2 * self.n_layer)]
        self.output_names = [o.name for o in session.get_outputs()] if session is not None else []
        params = inspect.signature(model.forward).parameters
        self.cache_name = "cache" if "cache" in params else "past_key_values"
        self._holds_cores = False
        self._release = None

    @property
    def model(self) -> PreTrainedModel:
        return self._model()

    def take_cores(self) -> None:
        if not self._holds_cores:
            self._release = hold_cores(self)
            self._holds_cores = True

    @contextlib.contextmanager
    def _all_threads(self):
        import torch

        with _CORES_LOCK:
            threads = _CORES["torch_threads"] if self._holds_cores else 0
        if threads <= 1:
            yield
            return
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(1)

    def release_cores(self) -> None:
        if self._release is not None:
            self._release()  # runs once, here or when the decoder is collected
            self._holds_cores = False

    def __call__(
        self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, **kwargs: object
    ) -> object:
        import types

        import numpy as np
        import torch

        past = kwargs.get(self.cache_name)
        others = beyond_graph(kwargs)
        arrays = None
        if input_ids is not None and not others and self.session is not None:
            if past is None:
                config = self.model.config
                heads = int(config.n_head)
                arrays = empty_cache(int(input_ids.shape[0]), heads, int(config.n_embd) // heads, len(self.past_names))
            elif isinstance(past, _OnnxPast) or input_ids.shape[-1] == 1:
                arrays = self._arrays(past)
        if arrays is None:
            if isinstance(past, _OnnxPast):
                raise ValueError(f"an ONNX Runtime cache cannot be continued with {', '.join(others) or 'this call'}")
            with self._all_threads():  # PyTorch's turn: worth every thread
                return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        rows, length = input_ids.shape[0], _seq_length(arrays[0]) + input_ids.shape[-1]
        mask = attention_mask if attention_mask is not None else torch.ones(rows, length, dtype=torch.long)
        feeds = {
            "input_ids": _ort_value(np.ascontiguousarray(input_ids.cpu().numpy(), dtype=np.int64)),
            "attention_mask": _ort_value(np.ascontiguousarray(mask.cpu().numpy(), dtype=np.int64)),
            **dict(zip(self.past_names, arrays)),
        }
        # ONNX Runtime's own tensors in and out: the KV cache stays in the buffers ONNX Runtime
        # wrote it to, instead of being copied into NumPy arrays after every step (2 x 12 layers,
        # ~5 MB a step at 64 positions; a step measured ~4% faster).
        out = run_graph(self.session, self.output_names, feeds)
        logits = torch.from_numpy(out[0].numpy())
        keep = kwargs.get("logits_to_keep")
        if keep:
            logits = logits[:, -int(keep) :]
        past, top = split_outputs(out, 2 * self.n_layer)
        return types.SimpleNamespace(logits=logits, kolyric_next=top, **{self.cache_name: past})

    def _arrays(self, past: object) -> list | None:
        """The cache as 2 x n_layer float32 arrays (rows, heads, positions, head size), or None."""
        if isinstance(past, _OnnxPast):
            return past.arrays
        pairs = _cache_pairs(past)
        if pairs is None or len(pairs) != self.n_layer or pairs[0][0].shape[2] < 1:
            return None
        return [_ort_value(t.detach().float().contiguous().numpy()) for pair in pairs for t in pair]

    def check(self) -> None:
        """A prompt on PyTorch then two steps here: finite logits, the same shapes as PyTorch's."""
        import torch

        with torch.inference_mode():
            ids = torch.zeros((2, 3), dtype=torch.long)
            out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
            past = getattr(out, self.cache_name, None)
            if past is None:
                past = out.past_key_values
            for step in range(2):
                mask = torch.ones((2, 4 + step), dtype=torch.long)
                out = self(input_ids=ids[:, :1], attention_mask=mask, use_cache=True, **{self.cache_name: past})
                past = getattr(out, self.cache_name)
        if out.logits.shape != (2, 1, self.model.config.vocab_size) or not bool(torch.isfinite(out.logits).all()):
            raise RuntimeError(f"bad logits from the ONNX graph: shape {tuple(out.logits.shape)}")


def hold_cores(owner: object) -> weakref.finalize:
    """Give ONNX Runtime PyTorch's CPU threads while ``owner`` lives: PyTorch runs on one until
    the finalizer returned runs (called, or ``owner`` collected) for the last holder."""
    import torch

    with _CORES_LOCK:
        if _CORES["holders"] == 0:
            _CORES["torch_threads"] = torch.get_num_threads()
        _CORES["holders"] += 1
        torch.set_num_threads(1)
    return weakref.finalize(owner, _release_cores)


def _release_cores() -> None:
    import torch

    with _CORES_LOCK:
        _CORES["holders"] -= 1
        if _CORES["holders"] == 0 and _CORES["torch_threads"]:
            torch.set_num_threads(_CORES["torch_threads"])


def _cpu_threads() -> int:
    """The threads PyTorch has, or had before a decoder took them."""
    import torch

    with _CORES_LOCK:
        return _CORES["torch_threads"] if _CORES["holders"] else torch.get_num_threads()


class _OnnxPast:
    """The KV cache as ONNX Runtime values (keys and values of each layer, in layer order)."""

    def __init__(self, arrays: list):
        self.arrays = arrays

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return _seq_length(self.arrays[0])

    def crop(self, tokens_to_remove: int) -> None:
        """Drop the last ``-tokens_to_remove`` positions (transformers' ``DynamicCache.crop``
        convention), so a decoding step can be taken back: the next step then continues from the
        positions kept, as a step never taken."""
        import numpy as np

        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative count of positions to drop, got {tokens_to_remove}")
        keep = _seq_length(self.arrays[0]) + tokens_to_remove
        if tokens_to_remove == 0:
            return
        if keep < 1:
            raise ValueError(f"cannot drop {-tokens_to_remove} of {_seq_length(self.arrays[0])} positions")
        self.arrays = [_ort_value(np.ascontiguousarray(value.numpy()[:, :, :keep])) for value in self.arrays]

    def rows(self, indices: list[int], length: int) -> _OnnxPast:
        """A new cache of the given rows (repeats allowed) and first ``length`` positions, to run
        a few candidate tokens from one row's state; this cache is left as it is."""
        import numpy as np

        index = np.asarray(indices, dtype=np.int64)
        return _OnnxPast([_ort_value(np.ascontiguousarray(value.numpy()[index, :, :length])) for value in self.arrays])


def split_outputs(out: list, n_past: int) -> tuple[_OnnxPast, NextTop | None]:
    """A step graph's outputs after the logits: the cache, and the last position's
    (log-sum-exp, top logits, their ids) as NumPy arrays where the graph gives them
    (``onnx_graph.NEXT_OUTPUTS``; a graph built before them has the cache alone)."""
    import numpy as np

    past = _OnnxPast(out[1 : 1 + n_past])
    if len(out) < n_past + 1 + len(onnx_graph.NEXT_OUTPUTS):
        return past, None
    lse, values, ids = (value.numpy() for value in out[1 + n_past : 1 + n_past + len(onnx_graph.NEXT_OUTPUTS)])
    logits = out[0].numpy()
    return past, NextTop(lse, values, ids, logits[:, -1, :] if logits.dtype == np.float32 else None)


class NextTop(typing.NamedTuple):
    """The last position's log-sum-exp of the logits (rows,) and its top logits and their ids
    (rows, k), largest first, as a step graph gives them; ``last``: that position's logits
    (rows, vocab), a view of the graph's float32 output."""

    lse: np.ndarray
    values: np.ndarray
    ids: np.ndarray
    last: np.ndarray | None = None


def beyond_graph(kwargs: dict[str, object]) -> list[str]:
    """The model-call arguments that ask for what a step graph does not give (hidden states,
    attentions, labels …): those set to anything but None or False, beside ``_GRAPH_KWARGS``."""
    return [k for k, v in kwargs.items() if v is not None and v is not False and k not in _GRAPH_KWARGS]


def empty_cache(rows: int, heads: int, head_size: int, count: int) -> list:
    """A cache of no positions, ``count`` values (keys and values of each layer), for a prompt's
    first call to a step graph."""
    import numpy as np

    empty = np.zeros((rows, heads, 0, head_size), dtype=np.float32)
    return [_ort_value(empty) for _ in range(count)]


def _ort_value(array: np.ndarray) -> onnxruntime.OrtValue:
    """An ONNX Runtime value sharing ``array``'s memory (it keeps a reference to the array)."""
    import onnxruntime as ort

    return ort.OrtValue.ortvalue_from_numpy(array)


def run_graph(session: onnxruntime.InferenceSession, output_names: list[str], feeds: dict) -> list:
    """``session.run_with_ort_values(output_names, feeds)`` through the session's C binding: the
    Python wrapper checks every input's name and ownership and wraps every output in a Python
    ``OrtValue`` (~110 Python calls a step at 12 layers). The values fed may be either kind;
    those returned are the binding's own (``numpy()`` and ``shape()`` as the wrapper's)."""
    binding = getattr(session, "_sess", None)
    if binding is None or not hasattr(binding, "run_with_ort_values"):  # another session object
        import onnxruntime as ort

        wrapped = {name: v if isinstance(v, ort.OrtValue) else ort.OrtValue(v) for name, v in feeds.items()}
        return list(session.run_with_ort_values(output_names, wrapped))
    c_feeds = {name: getattr(value, "_ortvalue", value) for name, value in feeds.items()}
    return list(binding.run_with_ort_values(c_feeds, output_names, None))


def _seq_length(value: onnxruntime.OrtValue) -> int:
    return int(value.shape()[2])


def _cache_pairs(past: object) -> list | None:
    """[(keys, values)] per layer from a transformers cache of any recent version, or None."""
    if past is None:
        return None
    layers = getattr(past, "layers", None)
    if layers is not None and all(hasattr(layer, "keys") for layer in layers):
        return [(layer.keys, layer.values) for layer in layers]
    if hasattr(past, "key_cache") and hasattr(past, "value_cache"):
        return list(zip(past.key_cache, past.value_cache))
    if isinstance(past, (tuple, list)) and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in past):
        return [tuple(p) for p in past]
    return None


def decoder_for(
    model: PreTrainedModel, required: bool, progress: Callable[[str], None] | None = None
) -> tuple[OnnxDecoder | None, str | None]:
    """The decoder for ``model`` (built and cached on first use), or None and a notice.
    ``progress(phase)`` hears when a graph is built (seconds for a small model, ~35 s for a
    KoGPT2-sized one), so a waiting user is told why."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None, ("int8: onnxruntime is not installed; decoding steps run on PyTorch int8" if required else None)
    if getattr(getattr(model, "config", None), "model_type", None) != "gpt2":
        kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        return None, (
            f"int8: ONNX Runtime decoding covers GPT-2 models, not {kind}; using PyTorch int8" if required else None
        )
    try:
        folder = onnx_cache_dir() / onnx_graph.content_digest(model)
        if onnx_graph.graph_ok(folder, "int8"):
            try:
                return _load_decoder(model, folder), None
            except Exception:  # noqa: BLE001 - a damaged cached graph (a torn write, a lost file): build anew
                onnx_graph.drop_graph(folder, "int8")
        onnx_graph.build(model, folder, "int8", progress)
        return _load_decoder(model, folder), None
    except Exception as exc:  # noqa: BLE001 - a graph that cannot be built means: PyTorch int8
        return None, f"int8: ONNX Runtime decoding unavailable ({first_line(exc)}); using PyTorch int8"


def _load_decoder(model: PreTrainedModel, folder: Path) -> OnnxDecoder:
    path = folder / onnx_graph.graph_name("int8")
    session = onnx_session.open_session(path, _cpu_threads())
    return OnnxDecoder(model, session, onnx_graph.weight_bytes(folder, "int8"))


__all__ = [
    "DECODER",
    "NextTop",
    "OnnxDecoder",
    "beyond_graph",
    "decoder_for",
    "empty_cache",
    "hold_cores",
    "onnx_cache_dir",
    "quiet",
    "split_outputs",
]
