"""Quantizing a fused GPT-2 graph's weights with ONNX Runtime's own tools (``onnx_graph`` builds
and caches the graphs; this module holds what each precision does to the weights).

- **int8**: ``MatMulNBits`` with 8-bit weights in blocks of ``BLOCK`` along the input, one fp32
  scale a block, symmetric, activations quantized to int8 a block at a time inside the kernel
  (``accuracy_level=4``); the token embedding table 8-bit through ``quantize_dynamic`` (one
  scale for the table).
- **int4**: the same with 4-bit weights, but the output head 8-bit; the token embedding table
  4-bit in blocks of 32 (``GatherBlockQuantized``).

Embeddings' positions, layer norms, attention and the logits stay fp32.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

BLOCK = 128
"""Weights one scale covers, in 4 and 8 bits. Against blocks of 32, a KoGPT2-shaped 4-bit
decoding step is ~18% faster (fewer scales, longer int8 dot products in ``MatMulNBits``), and
kolyric-mini's bits per character are no worse (+0.020 over fp32 with 32, -0.001 with 128). A
narrower model gets the largest block that divides its width (``block_for``), so no row is
padded to a block."""


def block_for(width: int) -> int:
    """The quantization block for a model ``width`` wide: ``BLOCK`` or the largest smaller power
    of two (16 at least, what ``MatMulNBits`` takes) that divides it."""
    block = BLOCK
    while block > 16 and width % block:
        block //= 2
    return block


def int8(source: Path, out: Path, block: int = BLOCK) -> None:
    """8-bit matrix multiplies in blocks of ``block`` (``MatMulNBits``: its int8 products read
    the weights faster than ``quantize_dynamic``'s ``MatMulInteger``, and a scale a block and
    activations quantized a block at a time lose less than one scale a channel and a tensor),
    then the token embedding table 8-bit through ``quantize_dynamic`` (the block quantizer takes
    a table at 4 bits only); the position table stays fp32, as in int4."""
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from kolyric.engine.onnx_optimize import save

    model = onnx.load(str(source))
    tokens, _ = _tables(model)
    matmuls = {"bits": 8, "block_size": block, "op_types_to_quantize": ("MatMul",)}
    model = _block_quantized(model, [matmuls])
    if tokens is None:
        save(model, out)
        return
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".int8-") as staging:
        staged = Path(staging) / "matmuls.onnx"
        save(model, staged)
        quantize_dynamic(
            str(staged),
            str(out),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Gather"],
            nodes_to_quantize=[tokens.name] if tokens.name else None,  # unnamed: every table
            use_external_data_format=True,
        )


def int4(source: Path, out: Path, block: int = BLOCK) -> None:
    """4-bit matrix multiplies in blocks of ``block``, but the output head 8-bit (as llama.cpp's
    Q4_K_M keeps its output at 6 bits: the logits' error is most of 4-bit's), and the token
    embedding table 4-bit in blocks of 32 (a step gathers one row: its size is what counts)."""
    import onnx

    from kolyric.engine.onnx_optimize import save

    model = onnx.load(str(source))
    head = [n.name for n in model.graph.node if n.op_type == "MatMul" and "logits" in n.output]
    tokens, others = _tables(model)  # others: positions', kept fp32 (see the docstring)
    passes = [
        {"bits": 4, "block_size": block, "nodes_to_exclude": head, "op_types_to_quantize": ("MatMul",)},
        {"bits": 8, "block_size": block, "nodes_to_include": head, "op_types_to_quantize": ("MatMul",)},
    ]
    if tokens is not None:  # the quantizer takes Gathers to leave out, not ones to take
        passes.append({"bits": 4, "block_size": 32, "nodes_to_exclude": others, "op_types_to_quantize": ("Gather",)})
    save(_block_quantized(model, passes), out)


def _tables(model: onnx.ModelProto) -> tuple[onnx.NodeProto | None, list[str]]:
    """The ``Gather`` of the token embedding table (the largest table the graph gathers from),
    and the names of the other tables' (the position table's)."""
    sizes = {init.name: math.prod(init.dims) for init in model.graph.initializer}
    tables = [n for n in model.graph.node if n.op_type == "Gather" and n.input[0] in sizes]
    tokens = max(tables, key=lambda n: sizes[n.input[0]], default=None)
    return tokens, [n.name for n in tables if n is not tokens]


def _block_quantized(model: onnx.ModelProto, passes: list[dict]) -> onnx.ModelProto:
    """``model`` through ONNX Runtime's block quantizer once for each pass's settings
    (symmetric, int8 products inside ``MatMulNBits``: ``accuracy_level=4``)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    for settings in passes:
        if settings.get("nodes_to_include") == []:  # no such node: an empty list means "all"
            continue
        quantizer = MatMulNBitsQuantizer(model, is_symmetric=True, accuracy_level=4, **settings)
        quantizer.process()
        model = quantizer.model.model
    return model


__all__ = ["BLOCK", "block_for", "int4", "int8"]
