"""The int8 CPU path: the transformer's matrix multiplies with int8 weights (``--precision int8``).

On a CPU, generating with a 125M-parameter GPT-2 is bound by memory bandwidth: each token reads
every weight once. Storing the weights of the matrix multiplies as int8 reads a quarter of the
bytes. This module swaps each of them (GPT-2's ``Conv1D`` layers, turned into ``nn.Linear``
first, and any ``nn.Linear``, the tied output head included) for PyTorch's dynamically
quantized linear layer: int8 weights with one scale per output channel, activations quantized
on the fly per call, the product run by the CPU's int8 kernels (fbgemm on x86, qnnpack on Arm).

The model stays the same ``transformers`` object with the same ``forward``: the KV cache,
``logits_to_keep``, ``model.generate`` (beam search) and kolyric's own decoding loop (logits
processors, constraints, top-5) run unchanged over it. Embeddings, layer norms and attention
stay fp32; so do the logits.

Where int8 cannot run (the model is not on the CPU, this PyTorch has no quantized engine or
no dynamic quantization, the model has no Linear/Conv1D layer, or the quantized model fails a
one-token check) the model is left in fp32 and a notice says why.

``set_precision`` switches a loaded model between fp32 and int8 at run time, without
reloading: the float layers are kept aside while int8 is on (the fp32 weights stay in memory),
and put back when it is switched off.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from typing import Any

_ORIGINALS = "_kolyric_float_layers"
"""Model attribute holding {qualified name: float module} while the int8 layers are in."""


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


def quantize_int8(loaded: Any) -> str | None:
    """Put int8 layers into ``loaded.model`` in place; None when done, else a notice saying why
    the model stays in floating point. Idempotent."""
    model = loaded.model
    if is_quantized(model):
        return None
    reason = _unsupported_reason(model)
    if reason:
        return f"int8: {reason}; running in {precision_of(model)} instead"
    import torch

    with _quiet():
        engine = _pick_engine()
        previous_engine = torch.backends.quantized.engine
        torch.backends.quantized.engine = engine
        originals: dict[str, Any] = {}
        try:
            for name, module in _matmul_layers(model):
                originals[name] = module
                _set_submodule(model, name, _to_int8(module, engine))
            setattr(model, _ORIGINALS, originals)
            _check_forward(model)
        except Exception as exc:  # noqa: BLE001 - any failure means: stay in fp32
            _restore(model, originals)
            torch.backends.quantized.engine = previous_engine
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            return f"int8: quantizing failed ({first}); running in fp32 instead"
    return None


def dequantize(loaded: Any) -> None:
    """Put the float layers back (the fp32 model, exactly as loaded)."""
    originals = getattr(loaded.model, _ORIGINALS, None)
    if originals:
        _restore(loaded.model, originals)


def set_precision(loaded: Any, precision: str) -> str | None:
    """Switch ``loaded`` to ``precision`` (fp32, fp16, bf16 or int8) in place, on its device.

    Call it between generations, not while a ``Generator`` streams over the model: a
    ``Generator`` built earlier keeps working, since the model object stays the same. Returns a
    notice when the switch could not be made as asked (int8 falling back to fp32).
    """
    import torch

    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in (*dtypes, "int8"):
        raise ValueError(f"precision: must be one of fp32, fp16, bf16, int8, got {precision!r}")
    model = loaded.model
    if precision_of(model) == precision:
        return None
    dequantize(loaded)
    model.to(dtype=dtypes.get(precision, torch.float32))
    notice = quantize_int8(loaded) if precision == "int8" else None
    loaded.description = re.sub(r"\b(fp32|fp16|bf16|int8)$", precision_of(model), loaded.description or "")
    if notice:
        loaded.notices.append(notice)
    return notice


def weight_bytes(model: Any) -> int:
    """Bytes of weights one generated token reads: every matrix multiply's weights (int8 ones
    with their scales), biases and layer norms, the output head included; of the token and
    position embeddings only one row each, so they are left out unless tied to the head."""
    import torch

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


@contextlib.contextmanager
def _quiet():
    """torch.ao.quantization warns that it is moving to torchao on every use; the API is still
    shipped and tested in this PyTorch, and the warning would only clutter the terminal."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(deprecated|torchao).*")
        yield


__all__ = ["dequantize", "is_quantized", "precision_of", "quantize_int8", "set_precision", "weight_bytes"]
