"""Putting a loaded model on its device in its precision: fp32/fp16/bf16 in PyTorch, int8 and
int4 on a CPU as an ONNX Runtime graph when one can be built (``onnx_model``), else PyTorch int8
(``quantize``); and the one-line description the status bars show.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from kolyric.engine.integrity import human_count

if TYPE_CHECKING:
    from kolyric.engine.loading import LoadedModel

RUNNABLE_DEVICES = ("cpu", "cuda", "mps")


def resolve_device(device: str = "auto") -> str:
    """``auto`` → cuda when there is one, else cpu; anything else must name a device that runs
    models (ValueError otherwise: ``meta`` holds no data, ``bogus`` is no device)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ValueError("not a device (use cpu, cuda or cuda:N)") from exc
    if kind not in RUNNABLE_DEVICES:
        raise ValueError(f"a {kind} device cannot run a model (use cpu, cuda or cuda:N)")
    return device


def surely_cpu() -> bool:
    """Whether ``resolve_device("auto")`` would say cpu, decided without importing torch where the
    machine makes it certain: a CPU-only torch build, or no GPU device node (NVIDIA, ROCm, WSL).
    False means: ask torch."""
    import sys

    if "torch" in sys.modules:
        return resolve_device("auto") == "cpu"
    if not any(os.path.exists(node) for node in _GPU_NODES):
        return True
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch").endswith("+cpu")
    except PackageNotFoundError:
        return True


_GPU_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/kfd", "/dev/dxg")


def place(
    loaded: LoadedModel,
    device: str,
    precision: str,
    progress: Callable[[str], None] | None = None,
    int8_backend: str | None = None,
    graph_source: tuple[str, str | None, float] | None = None,
) -> None:
    """Put the model on ``device`` in ``precision``. int8 and int4 on a CPU become an ONNX Runtime
    graph when they can (``graph_source``: the spec, base and network timeout to load its
    PyTorch model again from, when asked), and the PyTorch model is let go; else PyTorch int8."""
    import torch

    device = resolve_device(device)
    if precision == "auto":
        from kolyric.engine import quantize

        precision = quantize.auto_precision(loaded.model, device)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    loaded.model.to(device=device, dtype=dtype)
    loaded.model.eval()
    if loaded.model.generation_config is not None:
        # Generation settings come from DecodingSettings alone, never from the checkpoint.
        loaded.model.generation_config.pad_token_id = loaded.tokenizer.pad_token_id
    n_params = loaded.n_params  # counted before int8 packing hides the weights from parameters()
    if precision in ("int8", "int4") and device == "cpu" and graph_source is not None and int8_backend != "torch":
        from kolyric.engine import onnx_model

        if onnx_model.runtime_available():
            spec, base, timeout = graph_source
            fallback = onnx_model.torch_loader(spec, base, timeout)
            lm, notice = onnx_model.graph_for(loaded, precision, spec, base, fallback, progress)
            if lm is not None:
                loaded.model = lm  # the PyTorch model goes: the graph holds the weights once
                describe(loaded, device, precision, n_params)
                return
            if notice:
                loaded.notices.append(f"{notice}; using PyTorch int8")
            int8_backend = "torch"  # the graph was tried: no second attempt at its decoder
    if precision == "int4":
        from kolyric.engine import onnx_model

        why = (
            "KOLYRIC_INT8_BACKEND is torch"
            if onnx_model.runtime_available() or os.environ.get("KOLYRIC_INT8_BACKEND", "").strip().lower() == "torch"
            else "onnxruntime is not installed (pip install kolyric[int8])"
        )
        loaded.notices.append(f"int4: runs on ONNX Runtime graphs and {why}; using int8")
        precision = "int8"
    if precision == "int8":
        from kolyric.engine import quantize  # the int8 CPU path

        notice = quantize.quantize_int8(loaded, backend=int8_backend, progress=progress)
        if notice:
            loaded.notices.append(notice)
        precision = quantize.precision_of(loaded.model)  # fp32 when it fell back
    describe(loaded, device, precision, n_params)


def describe(loaded: LoadedModel, device: str, precision: str, n_params: int) -> None:
    name = "kolyric-mini" if loaded.kind == "mini" else loaded.source
    loaded.description = f"{name} · {human_count(n_params)} params · {device} {precision}"


__all__ = ["RUNNABLE_DEVICES", "describe", "place", "resolve_device", "surely_cpu"]
