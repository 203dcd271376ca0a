"""The int8 CPU path: the transformer's matrix multiplies with int8 weights (``--precision int8``).

On a CPU, generating with a 125M-parameter GPT-2 is bound by memory bandwidth: each token reads
every weight once, and int8 weights are a quarter of the bytes. Three ways it runs:

1. **An ONNX Runtime graph alone, when ``onnxruntime`` is installed** (``pip install
   kolyric[int8]``) and the model is a GPT-2: ``load_model(..., precision="int8" | "int4")``
   gives an ``onnx_lm.OnnxLM``, the model's graph (``onnx_graph``: built once per weights,
   cached on disk) with no PyTorch model beside it. Prompt and decoding steps run on it;
   sampling, logits processors, constraints and top-5 stay in kolyric's loop. A cached graph
   loads in about a second, without building the fp32 model first.
2. **PyTorch int8, where there is no graph.** Each matrix multiply (GPT-2's ``Conv1D`` layers,
   turned into ``nn.Linear`` first, and any ``nn.Linear``, the tied output head included)
   becomes PyTorch's dynamically quantized linear layer: int8 weights with one scale per output
   channel, activations quantized on the fly (fbgemm on x86, qnnpack on Arm); GPT-2's
   ``gelu_new`` becomes PyTorch's one-operation tanh GELU, the same formula. The model stays
   the same ``transformers`` object. ``KOLYRIC_INT8_BACKEND=torch`` asks for this path.
3. **PyTorch int8 with ONNX Runtime decoding steps**, for a model switched to int8 at run time
   (``set_precision``): the graph is attached as ``model.kolyric_decoder`` (``OnnxDecoder``);
   the prompt runs on PyTorch int8. While it is on, ONNX Runtime gets PyTorch's CPU threads and
   PyTorch runs on one.

Where int8 cannot run (the model is not on the CPU, this PyTorch has no quantized engine or no
dynamic quantization, the model has no Linear/Conv1D layer, or the quantized model fails a
one-token check) the model is left in fp32 and a notice says why; where only the ONNX Runtime
part fails, a notice says so and PyTorch int8 runs every step.

``set_precision`` switches a loaded model between fp32 and int8 at run time, without
reloading: the float layers are kept aside while int8 is on (the fp32 weights stay in memory),
and put back when it is switched off. A graph model switched to another precision is replaced
by its PyTorch model, loaded from the same source.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from kolyric.engine import onnx_decoder as _onnx
from kolyric.engine.onnx_decoder import OnnxDecoder
from kolyric.engine.onnx_graph import onnx_cache_dir

if TYPE_CHECKING:
    import torch

    from kolyric.engine.loading import LoadedModel

    Model = torch.nn.Module
    """A transformers model (or any torch module kolyric quantizes), or an ``onnx_lm.OnnxLM``."""

_ORIGINALS = "_kolyric_float_layers"
"""Model attribute holding {qualified name: float module} while the int8 layers are in."""
DECODER = _onnx.DECODER
BACKENDS = ("auto", "torch", "onnxruntime")


def is_quantized(model: Model) -> bool:
    """True when ``model`` currently runs with kolyric's int8 layers or is an int8/int4 graph."""
    return _is_graph(model) or bool(getattr(model, _ORIGINALS, None))


def _is_graph(model: object) -> bool:
    return bool(getattr(type(model), "kolyric_graph", False))


def precision_of(model: Model) -> str:
    """fp32, fp16, bf16, int8 or int4: what the model runs in now."""
    import torch

    if _is_graph(model):
        return model.precision
    if is_quantized(model):
        return "int8"
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    return {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32")


def int8_backend(model: Model) -> str | None:
    """onnxruntime or torch: what runs the int8 decoding steps; None when not int8."""
    if not is_quantized(model):
        return None
    return "onnxruntime" if _is_graph(model) or getattr(model, DECODER, None) is not None else "torch"


def quantize_int8(
    loaded: LoadedModel, backend: str | None = None, progress: Callable[[str], None] | None = None
) -> str | None:
    """Put int8 layers into ``loaded.model`` in place; None when done, else a notice saying why
    the model stays in floating point (or why decoding steps run on PyTorch int8). Idempotent.

    ``backend`` (default ``$KOLYRIC_INT8_BACKEND``, else auto): auto runs the decoding steps on
    ONNX Runtime when it is installed and on PyTorch int8 otherwise; torch always on PyTorch int8;
    onnxruntime as auto, with a notice when ONNX Runtime is missing. ``progress`` hears the
    slow phases as they begin.
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
        decoder, decoder_notice = _onnx.decoder_for(model, required=backend == "onnxruntime", progress=progress)
    if progress is not None:
        progress("quantizing to int8")
    with _quiet():
        engine = _pick_engine()
        previous_engine = torch.backends.quantized.engine
        torch.backends.quantized.engine = engine
        originals: dict[str, torch.nn.Module] = {}
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


def dequantize(loaded: LoadedModel) -> None:
    """Put the float layers back (the fp32 model, exactly as loaded)."""
    if _is_graph(loaded.model):
        return
    originals = getattr(loaded.model, _ORIGINALS, None)
    if originals:
        _restore(loaded.model, originals)
    decoder = getattr(loaded.model, DECODER, None)
    if decoder is not None:
        decoder.release_cores()
        delattr(loaded.model, DECODER)


def set_precision(loaded: LoadedModel, precision: str, backend: str | None = None) -> str | None:
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
    if _is_graph(model):  # an ONNX Runtime graph alone: switching loads the PyTorch model
        if model.precision == precision and backend in (None, "auto", "onnxruntime"):
            return None
        model = loaded.model = model.plain_model()
    if precision_of(model) == precision and (
        precision != "int8" or backend in (None, "auto") or int8_backend(model) == backend
    ):
        return None
    dequantize(loaded)
    model.to(dtype=dtypes.get(precision, torch.float32))
    notice = quantize_int8(loaded, backend) if precision == "int8" else None
    loaded.description = re.sub(r"\b(fp32|fp16|bf16|int8)$", precision_of(model), loaded.description or "")
    if notice:
        loaded.notices.append(notice)
    return notice


AUTO_INT8_MIN_PARAMS = 50_000_000
"""``auto_precision`` picks int8 on a CPU from this many parameters up (see the README's Speed
section): a KoGPT2-sized model (125M) decodes ~3.5x faster in int8 with its bits per character
within 0.003 of fp32, while a small one (kolyric-mini, 4M) gains little and would pay the
one-time ONNX export.

int4 is not chosen: its graph decodes a KoGPT2-shaped model ~1.5x faster than int8's (5.0 vs
7.8 ms a step, graph alone, one thread), but on kolyric-mini its greedy text agrees with fp32's
first 10 tokens in 4 of 30 prompts against int8's 23, and on the KoGPT2-shaped model its argmax
matches fp32's at 38% of positions against int8's 90%; ``--precision int4`` asks for it."""


def auto_precision(model: Model, device: str) -> str:
    """The precision ``--precision auto`` means for ``model`` on ``device``: int8 on a CPU when the
    model has at least ``AUTO_INT8_MIN_PARAMS`` parameters (quantizing may still fall back to
    fp32, with a notice), else fp32 (CUDA included: fp16 and bf16 there are unmeasured)."""
    if _is_graph(model):
        return auto_precision_for(model.n_params, device)
    return auto_precision_for(sum(p.numel() for p in model.parameters()), device)


def auto_precision_for(n_params: int, device: str) -> str:
    """``auto_precision`` for a model of ``n_params`` parameters."""
    if not str(device).startswith("cpu"):
        return "fp32"
    return "int8" if n_params >= AUTO_INT8_MIN_PARAMS else "fp32"


def weight_bytes(model: Model) -> int:
    """Bytes of weights one generated token reads: every matrix multiply's weights (int8 ones
    with their scales), biases and layer norms, the output head included; of the token and
    position embeddings only one row each, so they are left out unless tied to the head.
    With the ONNX Runtime decoder, the bytes of its graph's weights, counted the same way."""
    import torch

    decoder = model if _is_graph(model) else getattr(model, DECODER, None)
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
def _unsupported_reason(model: Model) -> str | None:
    import torch

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if device.type != "cpu":
        return f"int8 weights are a CPU path and the model is on {device.type} (use fp16 or bf16 there)"
    try:
        import torch.ao.nn.quantized.dynamic
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
    for name in ("qnnpack",) if arm else ("x86", "fbgemm", "onednn", "qnnpack"):
        if name in engines:
            return name
    return None


def _matmul_layers(model: Model) -> Iterator[tuple[str, torch.nn.Module]]:
    """(qualified name, module) of every nn.Linear and GPT-2 Conv1D, in model order."""
    import torch

    conv1d = _conv1d_class()
    for name, module in model.named_modules():
        if type(module) is torch.nn.Linear or (conv1d is not None and type(module) is conv1d):
            yield name, module


def _tanh_gelus(model: Model) -> Iterator[tuple[str, torch.nn.Module]]:
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


def _to_int8(module: torch.nn.Module, engine: str) -> torch.nn.Module:
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


def _set_submodule(model: Model, name: str, module: torch.nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _restore(model: Model, originals: dict[str, torch.nn.Module]) -> None:
    for name, module in originals.items():
        _set_submodule(model, name, module)
    if hasattr(model, _ORIGINALS):
        delattr(model, _ORIGINALS)


def _check_forward(model: Model) -> None:
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


_first_line = _onnx.first_line


_quiet = _onnx.quiet


__all__ = [
    "AUTO_INT8_MIN_PARAMS",
    "BACKENDS",
    "DECODER",
    "OnnxDecoder",
    "auto_precision",
    "dequantize",
    "int8_backend",
    "is_quantized",
    "onnx_cache_dir",
    "precision_of",
    "quantize_int8",
    "set_precision",
    "weight_bytes",
]
