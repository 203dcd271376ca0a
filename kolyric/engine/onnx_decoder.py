"""The ONNX Runtime half of the int8 CPU path: one GPT-2 decoding step, int8, in ONNX Runtime.

``kolyric.engine.quantize`` puts PyTorch's int8 layers into the model; when ``onnxruntime`` is
installed (``pip install kolyric[int8]``) and the model is a GPT-2, it also attaches an
``OnnxDecoder`` as ``model.kolyric_decoder``, which kolyric's loop calls for every decoding step
after the prompt. The one-token step with its KV cache is exported once per model to ONNX,
quantized by ONNX Runtime (int8 weights per output channel, 8-bit dynamic activations) and
cached on disk under ``onnx_cache_dir()``, named by a hash of the weights, config and versions
(the first load of a model takes a minute).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
import weakref
from pathlib import Path
from typing import Any

DECODER = "kolyric_decoder"
"""Model attribute holding the ONNX Runtime decoding step, when there is one."""
_FORMAT = "gpt2-step-v1"
"""Changes whenever the exported graph changes, so old cached graphs are not reused."""
_CORES = {"holders": 0, "torch_threads": 0}
_CORES_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet():
    """torch.ao.quantization warns that it is moving to torchao on every use; the API is still
    shipped and tested in this PyTorch, and the warning would only clutter the terminal. The
    ONNX exporter and quantizer log their progress and optional parts they skip."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript", "root")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(deprecated|torchao).*")
        for logger in loggers[:-1]:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


class OnnxDecoder:
    """One decoding step of a GPT-2 (one new token per row, over a KV cache) in ONNX Runtime.

    Called like the model's forward. A call it does not cover (a prompt of several tokens, no
    cache yet) goes to the PyTorch model; its cache is taken over at the next step. The cache it
    returns holds ONNX Runtime's arrays and is only for passing back to this decoder.

    While it is attached, ONNX Runtime has the CPU threads PyTorch had and PyTorch runs on one
    (restored when the last decoder goes): PyTorch's work between steps is small operations,
    and its idle OpenMP threads spinning beside ONNX Runtime's made each step ~40% slower on
    2 cores. The prompt, passed through here, gets every thread back while it runs; beam
    search (``model.generate`` on PyTorch int8) runs on one.
    """

    def __init__(self, model: Any, session: Any, weight_bytes: int):
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
    def model(self) -> Any:
        return self._model()

    def take_cores(self) -> None:
        import torch

        with _CORES_LOCK:
            if self._holds_cores:
                return
            if _CORES["holders"] == 0:
                _CORES["torch_threads"] = torch.get_num_threads()
            _CORES["holders"] += 1
            self._holds_cores = True
            torch.set_num_threads(1)
        self._release = weakref.finalize(self, _release_cores)

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

    def __call__(self, input_ids: Any = None, attention_mask: Any = None, **kwargs: Any) -> Any:
        import types

        import numpy as np
        import torch

        past = kwargs.get(self.cache_name)
        arrays = self._arrays(past) if input_ids is not None and input_ids.shape[-1] == 1 else None
        if arrays is None:
            if isinstance(past, _OnnxPast):
                raise ValueError("an ONNX Runtime cache can only continue one token at a time")
            with self._all_threads():  # the prompt: many tokens at once, worth every thread
                return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        rows, length = input_ids.shape[0], _seq_length(arrays[0]) + 1
        mask = attention_mask if attention_mask is not None else torch.ones(rows, length, dtype=torch.long)
        feeds = {"input_ids": _ort_value(input_ids.cpu().numpy().astype(np.int64, copy=False)),
                 "attention_mask": _ort_value(np.ascontiguousarray(mask.cpu().numpy(), dtype=np.int64)),
                 **dict(zip(self.past_names, arrays))}
        # ONNX Runtime's own tensors in and out: the KV cache stays in the buffers ONNX Runtime
        # wrote it to, instead of being copied into NumPy arrays after every step (2 x 12 layers,
        # ~5 MB a step at 64 positions; a step measured ~4% faster).
        out = self.session.run_with_ort_values(self.output_names, feeds)
        logits = torch.from_numpy(out[0].numpy()).unsqueeze(1)
        return types.SimpleNamespace(logits=logits, **{self.cache_name: _OnnxPast(list(out)[1:])})

    def _arrays(self, past: Any) -> list | None:
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

    def rows(self, indices: list[int], length: int) -> "_OnnxPast":
        """A new cache of the given rows (repeats allowed) and first ``length`` positions, to run
        a few candidate tokens from one row's state; this cache is left as it is."""
        import numpy as np

        index = np.asarray(indices, dtype=np.int64)
        return _OnnxPast([_ort_value(np.ascontiguousarray(value.numpy()[index, :, :length])) for value in self.arrays])


def _ort_value(array: Any) -> Any:
    """An ONNX Runtime value sharing ``array``'s memory (it keeps a reference to the array)."""
    import onnxruntime as ort

    return ort.OrtValue.ortvalue_from_numpy(array)


def _seq_length(value: Any) -> int:
    return int(value.shape()[2])


def _cache_pairs(past: Any) -> list | None:
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


def decoder_for(model: Any, required: bool,
                progress: Any = None) -> tuple[OnnxDecoder | None, str | None]:
    """The decoder for ``model`` (built and cached on first use), or None and a notice.
    ``progress(phase)`` hears when a graph is built (seconds for a small model, ~35 s for a
    KoGPT2-sized one), so a waiting user is told why."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None, ("int8: onnxruntime is not installed; decoding steps run on PyTorch int8"
                      if required else None)
    if getattr(getattr(model, "config", None), "model_type", None) != "gpt2":
        kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        return None, (f"int8: ONNX Runtime decoding covers GPT-2 models, not {kind}; using PyTorch int8"
                      if required else None)
    try:
        path = _decoder_path(model)
        if path.is_file():
            try:
                return _load_decoder(model, path), None
            except Exception:  # noqa: BLE001 - a damaged cached graph (a torn write, a lost file): build anew
                shutil.rmtree(path.parent, ignore_errors=True)
        if progress is not None:
            progress("building this model's int8 graph for ONNX Runtime (once per model; ~35 s for KoGPT2)")
        _build_decoder(model, path)
        return _load_decoder(model, path), None
    except Exception as exc:  # noqa: BLE001 - a graph that cannot be built means: PyTorch int8
        return None, f"int8: ONNX Runtime decoding unavailable ({first_line(exc)}); using PyTorch int8"


def onnx_cache_dir() -> Path:
    """Where exported graphs live: ``$KOLYRIC_ONNX_CACHE``, else the user cache dir."""
    explicit = os.environ.get("KOLYRIC_ONNX_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("kolyric")) / "onnx"


def _decoder_path(model: Any) -> Path:
    """The cached graph's path, named by a hash of the weights, the config and the versions."""
    import onnxruntime
    import torch
    import transformers

    digest = hashlib.blake2b(digest_size=12)
    config = model.config.to_dict()
    config.pop("_name_or_path", None)  # where the weights were loaded from does not change the graph
    for text in (_FORMAT, torch.__version__, transformers.__version__, onnxruntime.__version__,
                 json.dumps(config, sort_keys=True, default=str)):
        digest.update(text.encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return onnx_cache_dir() / digest.hexdigest() / "decoder-int8.onnx"


def _build_decoder(model: Any, path: Path) -> None:
    """Export the decoding step to ONNX (fp32), quantize it with ONNX Runtime, keep the int8 graph."""
    import copy

    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import DynamicCache

    n_layer, heads = int(model.config.n_layer), int(model.config.n_head)
    head_size = int(model.config.n_embd) // heads
    step_model = copy.deepcopy(model).float().eval()
    # The output head shares the token embeddings; a weight of its own lets the quantizer take it.
    step_model.lm_head.weight = torch.nn.Parameter(step_model.lm_head.weight.detach().clone())
    if hasattr(step_model, "set_attn_implementation"):
        step_model.set_attn_implementation("eager")
    else:
        step_model.config._attn_implementation = "eager"  # noqa: SLF001
    cache_name = OnnxDecoder(step_model, None, 0).cache_name

    class Step(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, *past: Any) -> Any:
            cache = DynamicCache()
            for i in range(n_layer):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=True,
                             **{cache_name: cache})
            cache = getattr(out, cache_name, None)
            pairs = _cache_pairs(cache if cache is not None else out.past_key_values)
            return (out.logits[:, -1, :], *[t for pair in pairs for t in pair])

    rows, positions = 2, 4  # examples above 1, so neither size is fixed into the graph
    example = (torch.zeros((rows, 1), dtype=torch.long), torch.ones((rows, positions + 1), dtype=torch.long),
               *[torch.zeros((rows, heads, positions, head_size)) for _ in range(2 * n_layer)])
    batch, total, past_len = (torch.export.Dim(n) for n in ("batch", "total", "past"))
    shapes = ({0: batch}, {0: batch, 1: total}, tuple({0: batch, 2: past_len} for _ in range(2 * n_layer)))
    path.parent.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=path.parent.parent, prefix=".build-"))
    try:
        with quiet(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            logging.getLogger().setLevel(logging.ERROR)  # the quantizer's advice goes to the root logger
            torch.onnx.export(Step(step_model).eval(), example, str(work / "fp32.onnx"), dynamo=True,
                              dynamic_shapes=shapes, external_data=True,
                              input_names=["input_ids", "attention_mask", *[f"past_{i}" for i in range(2 * n_layer)]],
                              output_names=["logits", *[f"present_{i}" for i in range(2 * n_layer)]])
            quantize_dynamic(str(work / "fp32.onnx"), str(work / path.name), weight_type=QuantType.QInt8,
                             per_channel=True, use_external_data_format=True)
        for leftover in work.glob("fp32.onnx*"):
            leftover.unlink()
        if path.parent.exists() and not path.is_file():  # left by an interrupted build
            shutil.rmtree(path.parent, ignore_errors=True)
        try:
            work.rename(path.parent)
        except OSError:  # another process built the same graph first
            if not path.is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _load_decoder(model: Any, path: Path) -> OnnxDecoder:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = _cpu_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return OnnxDecoder(model, session, _graph_weight_bytes(path))


def _graph_weight_bytes(path: Path) -> int:
    """Bytes of the graph's weights one step reads: all initializers but the embedding tables,
    of which a step gathers one row."""
    import onnx
    from onnx import helper

    graph = onnx.load(str(path), load_external_data=False).graph
    gathered = {n.input[0] for n in graph.node if n.op_type == "Gather"}
    users: dict[str, set] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, set()).add(node.op_type)
    total = 0
    for init in graph.initializer:
        if init.name in gathered and users.get(init.name) == {"Gather"}:
            continue
        size = 1
        for dim in init.dims:
            size *= dim
        total += size * helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
    return total


__all__ = ["DECODER", "OnnxDecoder", "decoder_for", "onnx_cache_dir"]
