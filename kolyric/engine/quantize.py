"""The int8 CPU path: the transformer's matrix multiplies with int8 weights (``--precision int8``).

On a CPU, generating with a 125M-parameter GPT-2 is bound by memory bandwidth: each token reads
every weight once, and int8 weights are a quarter of the bytes. Two layers of it:

1. **PyTorch int8, always.** Each matrix multiply (GPT-2's ``Conv1D`` layers, turned into
   ``nn.Linear`` first, and any ``nn.Linear``, the tied output head included) becomes PyTorch's
   dynamically quantized linear layer: int8 weights with one scale per output channel,
   activations quantized on the fly, products by the CPU's int8 kernels (fbgemm on x86, qnnpack
   on Arm). GPT-2's ``gelu_new`` (seven tensor operations) becomes PyTorch's one-operation tanh
   GELU, the same formula. The model stays the same ``transformers`` object: prompts, the KV
   cache, ``model.generate`` (beam search), scoring and evaluation all run over it.
2. **ONNX Runtime decoding steps, when ``onnxruntime`` is installed** (``pip install
   kolyric[int8]``) and the model is a GPT-2. The one-token decoding step with its KV cache is
   exported once per model to ONNX, quantized by ONNX Runtime (int8 weights per output channel,
   8-bit dynamic activations) and cached on disk (the first load of a model takes a minute). The
   step is ~1.6x faster than PyTorch's: less per-operation overhead and faster int8 kernels
   for one row at a time. kolyric's loop calls it through ``model.kolyric_decoder``; the
   prompt still runs on PyTorch int8, and sampling, logits processors, constraints and top-5
   stay in kolyric. While it is on, ONNX Runtime gets PyTorch's CPU threads and PyTorch runs
   on one (see ``OnnxDecoder``). ``KOLYRIC_INT8_BACKEND=torch`` turns this layer off.

Embeddings, layer norms and attention stay fp32; so do the logits. Where int8 cannot run (the
model is not on the CPU, this PyTorch has no quantized engine or no dynamic quantization, the
model has no Linear/Conv1D layer, or the quantized model fails a one-token check) the model is
left in fp32 and a notice says why; where only the ONNX Runtime layer fails, a notice says so
and PyTorch int8 runs every step.

``set_precision`` switches a loaded model between fp32 and int8 at run time, without
reloading: the float layers are kept aside while int8 is on (the fp32 weights stay in memory),
and put back when it is switched off.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import shutil
import tempfile
import threading
import warnings
import weakref
from pathlib import Path
from typing import Any

_ORIGINALS = "_kolyric_float_layers"
"""Model attribute holding {qualified name: float module} while the int8 layers are in."""
DECODER = "kolyric_decoder"
"""Model attribute holding the ONNX Runtime decoding step, when there is one."""
BACKENDS = ("auto", "torch", "onnxruntime")
_FORMAT = "gpt2-step-v1"
"""Changes whenever the exported graph changes, so old cached graphs are not reused."""
_CORES = {"holders": 0, "torch_threads": 0}
_CORES_LOCK = threading.Lock()


def is_quantized(model: Any) -> bool:
    """True when ``model`` currently runs with kolyric's int8 layers."""
    return bool(getattr(model, _ORIGINALS, None))


def precision_of(model: Any) -> str:
    """fp32, fp16, bf16 or int8: what the model runs in now."""
    import torch

    if is_quantized(model):
        return "int8"
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    return {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32")


def int8_backend(model: Any) -> str | None:
    """onnxruntime or torch: what runs the int8 decoding steps; None when not int8."""
    if not is_quantized(model):
        return None
    return "onnxruntime" if getattr(model, DECODER, None) is not None else "torch"


def quantize_int8(loaded: Any, backend: str | None = None) -> str | None:
    """Put int8 layers into ``loaded.model`` in place; None when done, else a notice saying why
    the model stays in floating point (or why decoding steps run on PyTorch int8). Idempotent.

    ``backend`` (default ``$KOLYRIC_INT8_BACKEND``, else auto): auto runs the decoding steps on
    ONNX Runtime when it is installed and on PyTorch int8 otherwise; torch always on PyTorch int8;
    onnxruntime as auto, with a notice when ONNX Runtime is missing.
    """
    backend = (backend or os.environ.get("KOLYRIC_INT8_BACKEND") or "auto").strip().lower()
    if backend not in BACKENDS:
        raise ValueError(f"int8 backend: must be one of {', '.join(BACKENDS)}, got {backend!r}")
    model = loaded.model
    if is_quantized(model):
        return None
    reason = _unsupported_reason(model)
    if reason:
        return f"int8: {reason}; running in {precision_of(model)} instead"
    import torch

    decoder, decoder_notice = None, None
    if backend != "torch":  # exported from the fp32 model, so before the int8 layers go in
        decoder, decoder_notice = _onnx_decoder(model, required=backend == "onnxruntime")
    with _quiet():
        engine = _pick_engine()
        previous_engine = torch.backends.quantized.engine
        torch.backends.quantized.engine = engine
        originals: dict[str, Any] = {}
        try:
            for name, module in _matmul_layers(model):
                originals[name] = module
                _set_submodule(model, name, _to_int8(module, engine))
            for name, module in _tanh_gelus(model):
                originals[name] = module
                _set_submodule(model, name, torch.nn.GELU(approximate="tanh"))
            setattr(model, _ORIGINALS, originals)
            _check_forward(model)
        except Exception as exc:  # noqa: BLE001 - any failure means: stay in fp32
            _restore(model, originals)
            torch.backends.quantized.engine = previous_engine
            return f"int8: quantizing failed ({_first_line(exc)}); running in fp32 instead"
    if decoder is not None:
        try:
            decoder.check()
            setattr(model, DECODER, decoder)
            decoder.take_cores()
        except Exception as exc:  # noqa: BLE001
            decoder_notice = f"int8: ONNX Runtime decoding failed its check ({_first_line(exc)}); using PyTorch int8"
    return decoder_notice


def dequantize(loaded: Any) -> None:
    """Put the float layers back (the fp32 model, exactly as loaded)."""
    originals = getattr(loaded.model, _ORIGINALS, None)
    if originals:
        _restore(loaded.model, originals)
    decoder = getattr(loaded.model, DECODER, None)
    if decoder is not None:
        decoder.release_cores()
        delattr(loaded.model, DECODER)


def set_precision(loaded: Any, precision: str, backend: str | None = None) -> str | None:
    """Switch ``loaded`` to ``precision`` (fp32, fp16, bf16 or int8) in place, on its device.

    Call it between generations, not while a ``Generator`` streams over the model: a
    ``Generator`` built earlier keeps working, since the model object stays the same. Returns a
    notice when the switch could not be made as asked (int8 falling back to fp32, or its
    decoding steps to PyTorch int8). ``backend`` as for ``quantize_int8``.
    """
    import torch

    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in (*dtypes, "int8"):
        raise ValueError(f"precision: must be one of fp32, fp16, bf16, int8, got {precision!r}")
    model = loaded.model
    if precision_of(model) == precision and (precision != "int8" or backend in (None, "auto")
                                             or int8_backend(model) == backend):
        return None
    dequantize(loaded)
    model.to(dtype=dtypes.get(precision, torch.float32))
    notice = quantize_int8(loaded, backend) if precision == "int8" else None
    loaded.description = re.sub(r"\b(fp32|fp16|bf16|int8)$", precision_of(model), loaded.description or "")
    if notice:
        loaded.notices.append(notice)
    return notice


def weight_bytes(model: Any) -> int:
    """Bytes of weights one generated token reads: every matrix multiply's weights (int8 ones
    with their scales), biases and layer norms, the output head included; of the token and
    position embeddings only one row each, so they are left out unless tied to the head.
    With the ONNX Runtime decoder, the bytes of its graph's weights, counted the same way."""
    import torch

    decoder = getattr(model, DECODER, None)
    if decoder is not None:
        return decoder.weight_bytes
    total = 0
    seen: set[int] = set()
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            continue
        packed = getattr(module, "_packed_params", None)
        if packed is not None and callable(getattr(module, "weight", None)):
            weight = module.weight()
            total += weight.numel() * weight.element_size()
            if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                total += weight.q_per_channel_scales().numel() * 4  # read as fp32 by the kernel
            bias = module.bias()
            total += bias.numel() * bias.element_size() if bias is not None else 0
            continue
        for param in module.parameters(recurse=False):
            if param.data_ptr() not in seen:
                seen.add(param.data_ptr())
                total += param.numel() * param.element_size()
    return total


# -- internals --------------------------------------------------------------------------------
def _unsupported_reason(model: Any) -> str | None:
    import torch

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if device.type != "cpu":
        return f"int8 weights are a CPU path and the model is on {device.type} (use fp16 or bf16 there)"
    try:
        import torch.ao.nn.quantized.dynamic  # noqa: F401
        from torch.ao.quantization import QConfig  # noqa: F401
    except ImportError:
        return "this PyTorch has no dynamic quantization (torch.ao.quantization)"
    if _pick_engine() is None:
        return "this PyTorch build has no quantized CPU engine (fbgemm, x86, onednn or qnnpack)"
    if not any(True for _ in _matmul_layers(model)):
        return f"{type(model).__name__} has no Linear or Conv1D layer to quantize"
    return None


def _pick_engine() -> str | None:
    """The quantized engine for this CPU: x86/fbgemm on x86, qnnpack on Arm."""
    import platform

    import torch

    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    arm = platform.machine().lower() in ("arm64", "aarch64")
    for name in (("qnnpack",) if arm else ("x86", "fbgemm", "onednn", "qnnpack")):
        if name in engines:
            return name
    return None


def _matmul_layers(model: Any):
    """(qualified name, module) of every nn.Linear and GPT-2 Conv1D, in model order."""
    import torch

    conv1d = _conv1d_class()
    for name, module in model.named_modules():
        if type(module) is torch.nn.Linear or (conv1d is not None and type(module) is conv1d):
            yield name, module


def _tanh_gelus(model: Any):
    """GPT-2's ``gelu_new`` modules: the tanh-approximated GELU written as seven tensor
    operations, which PyTorch computes in one (the same formula; ~0.7 ms a token over 12 layers)."""
    try:
        from transformers.activations import NewGELUActivation
    except ImportError:
        return
    for name, module in model.named_modules():
        if type(module) is NewGELUActivation:
            yield name, module


def _conv1d_class() -> type | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:
        return None
    return Conv1D


def _to_int8(module: Any, engine: str) -> Any:
    """The int8 dynamic-quantized equivalent of a Linear or Conv1D (which stays untouched)."""
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

    weight = module.weight.detach()
    bias = module.bias.detach() if module.bias is not None else None
    if type(module) is not torch.nn.Linear:  # Conv1D stores (in, out) and computes x @ W + b
        weight = weight.t()
    # A Linear shell on the meta device borrows the weights: no fp32 copy is made.
    shell = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    shell.weight = torch.nn.Parameter(weight, requires_grad=False)
    if bias is not None:
        shell.bias = torch.nn.Parameter(bias, requires_grad=False)
    # One scale per output channel keeps rows with small weights precise; qnnpack's dynamic
    # linear takes per-tensor scales only.
    shell.qconfig = default_dynamic_qconfig if engine == "qnnpack" else per_channel_dynamic_qconfig
    return DynamicLinear.from_float(shell)


def _set_submodule(model: Any, name: str, module: Any) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _restore(model: Any, originals: dict[str, Any]) -> None:
    for name, module in originals.items():
        _set_submodule(model, name, module)
    if hasattr(model, _ORIGINALS):
        delattr(model, _ORIGINALS)


def _check_forward(model: Any) -> None:
    """One tiny forward pass, so a model the int8 kernels cannot run fails here, not mid-stream."""
    import torch

    config = getattr(model, "config", None)
    vocab = int(getattr(config, "vocab_size", 0) or 1)
    ids = torch.zeros((1, 2), dtype=torch.long).clamp_(max=vocab - 1)
    with torch.inference_mode():
        out = model(input_ids=ids)
    logits = getattr(out, "logits", out)
    if isinstance(logits, torch.Tensor) and not bool(torch.isfinite(logits).all()):
        raise RuntimeError("the int8 model gives non-finite logits")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


@contextlib.contextmanager
def _quiet():
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


# -- ONNX Runtime decoding steps -------------------------------------------------------------------
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
        rows, length = input_ids.shape[0], arrays[0].shape[2] + 1
        mask = attention_mask if attention_mask is not None else torch.ones(rows, length, dtype=torch.long)
        feeds = {"input_ids": input_ids.cpu().numpy().astype(np.int64, copy=False),
                 "attention_mask": mask.cpu().numpy().astype(np.int64, copy=False),
                 **dict(zip(self.past_names, arrays))}
        out = self.session.run(None, feeds)
        logits = torch.from_numpy(out[0]).unsqueeze(1)
        return types.SimpleNamespace(logits=logits, **{self.cache_name: _OnnxPast(out[1:])})

    def _arrays(self, past: Any) -> list | None:
        """The cache as 2 x n_layer float32 arrays (rows, heads, positions, head size), or None."""
        if isinstance(past, _OnnxPast):
            return past.arrays
        pairs = _cache_pairs(past)
        if pairs is None or len(pairs) != self.n_layer or pairs[0][0].shape[2] < 1:
            return None
        return [t.detach().float().contiguous().numpy() for pair in pairs for t in pair]

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
    def __init__(self, arrays: list):
        self.arrays = arrays

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return int(self.arrays[0].shape[2])


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


def _onnx_decoder(model: Any, required: bool) -> tuple[OnnxDecoder | None, str | None]:
    """The decoder for ``model`` (built and cached on first use), or None and a notice."""
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
        if not path.is_file():
            _build_decoder(model, path)
        return _load_decoder(model, path), None
    except Exception as exc:  # noqa: BLE001 - a graph that cannot be built means: PyTorch int8
        return None, f"int8: ONNX Runtime decoding unavailable ({_first_line(exc)}); using PyTorch int8"


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
    for text in (_FORMAT, torch.__version__, transformers.__version__, onnxruntime.__version__,
                 model.config.to_json_string(use_diff=False)):
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
        with _quiet(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
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


__all__ = ["BACKENDS", "DECODER", "OnnxDecoder", "dequantize", "int8_backend", "is_quantized", "onnx_cache_dir",
           "precision_of", "quantize_int8", "set_precision", "weight_bytes"]
