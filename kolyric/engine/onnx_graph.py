"""Building and caching a GPT-2's ONNX Runtime graphs: int8 and int4 weights, one file each.

One graph covers every call kolyric makes: ``input_ids`` of any number of rows and positions
over a KV cache of any length, zero included, so the prompt and each decoding step run on it
alike. It is exported from the fp32 model once (``torch.onnx.export``), fused into about ten
operators a layer (``onnx_optimize``: ONNX Runtime's ``SkipLayerNormalization`` and ``FastGelu``,
and each layer's attention as one ``MultiHeadAttention`` over the KV cache; checked against the
exported graph, which is used as it is where the fusions do not match), then quantized by ONNX
Runtime's own tools (``onnx_quantize``: int8 and int4 through ``MatMulNBits``). ``onnx_session``
opens it.

A model's graphs live in one folder under ``onnx_cache_dir()``, named by a digest of its weights,
config and the library versions (``content_digest``), beside ``meta.json`` (the files' sizes and
modification times, checked before a graph is used, and the model's parameter count). A build
holds the folder's lock; each graph file is written under a temporary name and moved into
place, so an interrupted build leaves no half a graph.
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
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

FORMAT = "gpt2-fused-v6"
"""Changes whenever the exported graph changes, so old cached graphs are not reused."""
GRAPH_PRECISIONS = ("int8", "int4")
BUILD_SECONDS = (25.0, 0.45)
"""Seconds a build takes: a fixed part (the exporter's tracing) and a part per million
parameters; measured 21-29 s for kolyric-mini on 2 cores under a load of 4, and 50-62 s for
KoGPT2's 125M (int8 and int4 alike, both block-quantized) under a load of 1-2, the fusions
(``onnx_optimize``) ~7 s of it."""


def onnx_cache_dir() -> Path:
    """Where exported graphs live: ``$KOLYRIC_ONNX_CACHE``, else the user cache dir."""
    explicit = os.environ.get("KOLYRIC_ONNX_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("kolyric")) / "onnx"


def graph_name(precision: str) -> str:
    return f"decoder-{precision}.onnx"


def versions() -> str:
    """The library versions a graph depends on, read without importing the libraries."""
    from importlib.metadata import PackageNotFoundError, version

    parts = [FORMAT]
    for name in ("torch", "transformers", "onnxruntime"):
        try:
            parts.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name}=none")
    return " ".join(parts)


def content_digest(model: PreTrainedModel) -> str:
    """A digest of the weights, the config and the versions: the model's graph folder name."""
    import torch

    digest = hashlib.blake2b(digest_size=12)
    config = model.config.to_dict()
    config.pop("_name_or_path", None)  # where the weights were loaded from does not change the graph
    for text in (versions(), json.dumps(config, sort_keys=True, default=str)):
        digest.update(text.encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def graph_ok(folder: Path, precision: str) -> bool:
    """Whether ``folder`` holds a complete ``precision`` graph: its files as big and as old as
    when they were written (a torn copy, a file rewritten since, a lost one all fail)."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        files = meta["files"][precision]
        return bool(files) and all(_stamp(folder / name) == list(stamp) for name, stamp in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def read_meta(folder: Path) -> dict:
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        return meta if isinstance(meta, dict) else {}
    except (OSError, ValueError):
        return {}


def drop_graph(folder: Path, precision: str) -> None:
    """Forget a damaged graph, so the next load builds it again."""
    for path in folder.glob(graph_name(precision) + "*"):
        with contextlib.suppress(OSError):
            path.unlink()


def build_estimate(n_params: int) -> str:
    fixed, per_million = BUILD_SECONDS
    seconds = max(5, round((fixed + n_params / 1e6 * per_million) / 5) * 5)
    return f"~{seconds} s" if seconds < 90 else f"~{round(seconds / 60)} min"


def build(model: PreTrainedModel, folder: Path, precision: str, progress: Callable[[str], None] | None = None) -> Path:
    """Export ``model`` and quantize it to ``precision`` into ``folder``; the graph's path."""
    if precision not in GRAPH_PRECISIONS:
        raise ValueError(f"precision: a graph is int8 or int4, got {precision!r}")
    n_params = sum(p.numel() for p in model.parameters())
    if progress is not None:
        progress(
            f"building this model's {precision} graph for ONNX Runtime (once per model; "
            f"{build_estimate(n_params)} for {n_params / 1e6:.0f}M parameters)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    name = graph_name(precision)
    with _build_lock(folder):  # one build per folder at a time; a waiter finds the graph done
        if graph_ok(folder, precision):
            return folder / name
        for leftover in folder.glob(".build-*"):  # a build killed midway (the lock is ours now)
            shutil.rmtree(leftover, ignore_errors=True)
        _build_into(model, folder, precision, n_params)
    prune_stale(folder.parent)
    return folder / name


def prune_stale(cache: Path) -> list[Path]:
    """Remove the graph folders of older formats (``FORMAT``) under ``cache``: a new version
    never reads them, and a KoGPT2-sized folder holds ~280 MB. A folder whose build holds its
    lock, or without a ``meta.json`` (a build not finished), is left alone. The folders removed."""
    removed = []
    for folder in sorted(cache.iterdir()) if cache.is_dir() else []:
        meta = read_meta(folder) if folder.is_dir() else {}
        if not meta or meta.get("format") == FORMAT:
            continue
        with contextlib.suppress(OSError), _build_lock(folder, wait=False) as held:
            if held:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed


@contextlib.contextmanager
def _build_lock(folder: Path, wait: bool = True) -> Iterator[bool]:
    """The folder's build lock; whether it is held (without ``wait``, False when another holds it)."""
    try:
        import fcntl
    except ImportError:  # Windows: builds are rare and the last one to finish wins
        yield wait
        return
    with open(folder / ".lock", "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_into(model: PreTrainedModel, folder: Path, precision: str, n_params: int) -> None:
    from kolyric.engine import onnx_quantize  # onnx is imported only to build a graph
    from kolyric.engine.onnx_optimize import fuse

    name = graph_name(precision)
    work = Path(tempfile.mkdtemp(dir=folder, prefix=".build-"))
    try:
        with (
            quiet(),
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            _export(model, work / "fp32.onnx")
            heads, hidden = int(model.config.n_head), int(model.config.n_embd)
            source = fuse(work / "fp32.onnx", work / "fused.onnx", heads, hidden)
            if precision == "int8":
                onnx_quantize.int8(source, work / name, onnx_quantize.block_for(hidden))
            else:
                onnx_quantize.int4(source, work / name, onnx_quantize.block_for(hidden))
        produced = sorted(work.glob(name + "*"))
        drop_graph(folder, precision)
        for path in sorted(produced, key=lambda p: p.name == name):  # the graph last: it names its data
            os.replace(path, folder / path.name)
        _write_meta(folder, precision, {p.name: _stamp(folder / p.name) for p in produced}, n_params)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def weight_bytes(folder: Path, precision: str) -> int:
    """``graph_weight_bytes`` of ``folder``'s graph in ``precision``, from meta.json where it was
    noted (reading the graph's header imports ``onnx``, ~0.7 s of a start); noted there once
    measured, whichever path built the graph."""
    meta = read_meta(folder)
    noted = meta.get("weight_bytes") if isinstance(meta.get("weight_bytes"), dict) else {}
    value = noted.get(precision)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    size = graph_weight_bytes(folder / graph_name(precision))
    try:
        meta = read_meta(folder)  # again: another process may have written it meanwhile
        if not isinstance(meta.get("weight_bytes"), dict):
            meta["weight_bytes"] = {}
        meta["weight_bytes"][precision] = size
        _save_meta(folder, meta)
    except OSError:  # a read-only cache: measured again next time
        pass
    return size


def graph_weight_bytes(path: Path) -> int:
    """Bytes of the graph's weights one step reads: all initializers but the embedding tables,
    of which a step gathers one row. Read from the graph's header (``onnx`` when installed)."""
    import onnx
    from onnx import helper

    graph = onnx.load(str(path), load_external_data=False).graph
    gathered = {n.input[0] for n in graph.node if n.op_type in ("Gather", "GatherBlockQuantized")}
    gathered |= {n.input[1] for n in graph.node if n.op_type == "GatherBlockQuantized" and len(n.input) > 2}
    users: dict[str, set] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, set()).add(node.op_type)
    total = 0
    for init in graph.initializer:
        if init.name in gathered and users.get(init.name, set()) <= {"Gather", "GatherBlockQuantized"}:
            continue
        size = 1
        for dim in init.dims:
            size *= dim
        itemsize = helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        total += size * itemsize // (2 if init.data_type in (onnx.TensorProto.UINT4, onnx.TensorProto.INT4) else 1)
    return total


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The ONNX exporter and quantizer log their progress and the optional parts they skip, and
    torch.ao.quantization warns on every use that it is moving to torchao."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript", "")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(deprecated|torchao).*")
        for logger in loggers:
            logger.setLevel(logging.ERROR)  # the quantizer's advice goes to the root logger
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


# -- internals --------------------------------------------------------------------------------
def _write_meta(folder: Path, precision: str, stamps: dict[str, list[int]], n_params: int) -> None:
    meta = read_meta(folder)
    meta.setdefault("files", {})[precision] = stamps
    if isinstance(meta.get("weight_bytes"), dict):
        meta["weight_bytes"].pop(precision, None)  # of the graph this one replaces: measured anew
    meta["n_params"] = n_params
    meta["format"] = FORMAT
    _save_meta(folder, meta)


def _save_meta(folder: Path, meta: dict) -> None:
    """meta.json written whole beside itself and moved into place (a reader never sees half)."""
    tmp = folder / f".meta-{os.getpid()}.json"
    tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    os.replace(tmp, folder / "meta.json")


def _matmul_of(conv: torch.nn.Module) -> torch.nn.Module:
    """A module computing ``x @ W + b`` for a GPT-2 ``Conv1D``, so the export writes a ``MatMul``
    (which both quantizers take) instead of the ``Gemm`` of its flattened ``addmm``."""
    import torch

    class MatMulAdd(torch.nn.Module):
        def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
            super().__init__()
            self.weight = torch.nn.Parameter(weight, requires_grad=False)
            self.bias = torch.nn.Parameter(bias, requires_grad=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.matmul(x, self.weight) + self.bias

    return MatMulAdd(conv.weight.detach(), conv.bias.detach())


NEXT_TOP_K = 64
"""Top scores of the last position a step graph gives: the inspector shows at most 20, and a
sampling top-k up to 63 or greedy finds its token among them (``chain.StepCache.bound``); ONNX
Runtime's TopK costs the step a few µs."""
NEXT_OUTPUTS = ("next_logsumexp", "next_top_logits", "next_top_ids")
"""A step graph's outputs after the cache: the last position's log-sum-exp of the logits, and its
``NEXT_TOP_K`` largest logits with their ids (largest first, ties: the lower id first)."""


def _export(model: PreTrainedModel, out: Path) -> None:
    import copy

    import torch
    from transformers import DynamicCache
    from transformers.pytorch_utils import Conv1D

    from kolyric.engine.onnx_decoder import _cache_pairs as cache_pairs

    n_layer, heads = int(model.config.n_layer), int(model.config.n_head)
    head_size = int(model.config.n_embd) // heads
    step_model = copy.deepcopy(model).float().eval()
    # The output head shares the token embeddings; a weight of its own lets the quantizer take it.
    step_model.lm_head.weight = torch.nn.Parameter(step_model.lm_head.weight.detach().clone())
    for name, module in list(step_model.named_modules()):
        if type(module) is Conv1D:
            parent, _, child = name.rpartition(".")
            setattr(step_model.get_submodule(parent), child, _matmul_of(module))
    if hasattr(step_model, "set_attn_implementation"):
        step_model.set_attn_implementation("eager")
    else:
        step_model.config._attn_implementation = "eager"
    import inspect

    cache_name = "cache" if "cache" in inspect.signature(step_model.forward).parameters else "past_key_values"

    class Step(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *past: torch.Tensor
        ) -> tuple[torch.Tensor, ...]:
            cache = DynamicCache()
            for i in range(n_layer):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=True, **{cache_name: cache})
            cache = getattr(out, cache_name, None)
            pairs = cache_pairs(cache if cache is not None else out.past_key_values)
            # the last position's log-normaliser and top scores: the loop's probabilities and the
            # inspector's alternatives without a pass over the vocabulary in Python
            last = out.logits[:, -1, :].float()
            top_values, top_ids = torch.topk(last, min(NEXT_TOP_K, last.shape[-1]), dim=-1)
            return (out.logits, *[t for pair in pairs for t in pair], torch.logsumexp(last, -1), top_values, top_ids)

    rows, seq, positions = 2, 3, 4  # examples above 1, so no size is fixed into the graph
    example = (
        torch.zeros((rows, seq), dtype=torch.long),
        torch.ones((rows, positions + seq), dtype=torch.long),
        *[torch.zeros((rows, heads, positions, head_size)) for _ in range(2 * n_layer)],
    )
    batch, length, total, past_len = (torch.export.Dim(n) for n in ("batch", "seq", "total", "past"))
    shapes = ({0: batch, 1: length}, {0: batch, 1: total}, tuple({0: batch, 2: past_len} for _ in range(2 * n_layer)))
    torch.onnx.export(
        Step(step_model).eval(),
        example,
        str(out),
        dynamo=True,
        dynamic_shapes=shapes,
        external_data=True,
        input_names=["input_ids", "attention_mask", *[f"past_{i}" for i in range(2 * n_layer)]],
        output_names=["logits", *[f"present_{i}" for i in range(2 * n_layer)], *NEXT_OUTPUTS],
    )
