"""Fusing the exported GPT-2 graph into fewer, larger ONNX Runtime operators before quantizing.

A decoding step of a 125M GPT-2 runs a few hundred small operators around its 49 matrix
multiplies, and on one CPU thread their fixed costs add up to about a fifth of the step. Two
passes cut them to about ten a layer:

1. ONNX Runtime's own transformer fusions (``onnxruntime.transformers.optimizer``, GPT-2 rules):
   a residual add and the layer norm after it become ``SkipLayerNormalization``, the bias add and
   tanh GELU of the MLP one ``FastGelu``.
2. The attention of each layer, as ``torch.onnx.export(dynamo=True)`` writes it (split heads,
   concatenate the cache, scaled scores plus the causal and padding mask, softmax, weighted sum,
   merge heads: about twenty operators), becomes one ``com.microsoft.MultiHeadAttention`` with
   ``past_key``/``past_value`` in and ``present_key``/``present_value`` out, causal
   (``unidirectional``) with the caller's ``attention_mask`` as its key padding mask. ONNX
   Runtime's fusion does not recognise the dynamo exporter's attention, so this pass matches it
   itself.
3. ``ReduceLogSumExp`` (the step's log-normaliser output) is written as max, subtract, exp,
   sum and log, ~9x quicker on ONNX Runtime's CPU.

The fused graph keeps every input and output of the exported one, with the same names, shapes
and meaning. ``fuse`` checks it against the exported graph on a padded two-row batch over a
cache; a graph that does not match (another exporter's patterns, a model that is not GPT-2)
is not used, and the exported graph is quantized as it is.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

log = logging.getLogger(__name__)

MS_DOMAIN = "com.microsoft"
TOLERANCE = 2e-3
"""Largest difference, relative to the largest logit, the fused fp32 graph may show."""


def save(model: onnx.ModelProto, out: Path) -> None:
    """Write ``model`` to ``out`` with its weights in one file beside it (``NAME.data``), as
    every kolyric graph is stored (a graph over 2 GB cannot hold its weights inside)."""
    onnx.save_model(
        model,
        str(out),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=out.name + ".data",
        size_threshold=1024,
    )


def fuse(source: Path, out: Path, num_heads: int, hidden_size: int) -> Path:
    """Write ``source``'s fused graph to ``out`` (weights beside it) and return ``out``; return
    ``source`` itself when the fusions fail or change what the graph computes."""
    try:
        model = _fused(source, num_heads, hidden_size)
        save(model, out)
        difference = compare(source, out)
    except Exception as error:  # noqa: BLE001 - a failure costs only speed: the exported graph runs
        log.warning("graph fusion skipped: %s", error)
        return source
    if difference > TOLERANCE:
        log.warning("graph fusion skipped: the fused graph's logits differ by %.2g", difference)
        return source
    return out


def _fused(source: Path, num_heads: int, hidden_size: int) -> onnx.ModelProto:
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("gpt2")
    options.enable_attention = False  # its GPT-2 rules do not match; attention_to_mha does
    options.enable_embed_layer_norm = False
    options.enable_shape_inference = False  # slow on a full-size graph, and no fusion here needs it
    optimized = optimize_model(
        str(source),
        model_type="gpt2",
        num_heads=num_heads,
        hidden_size=hidden_size,
        opt_level=0,
        optimization_options=options,
        use_gpu=False,
    )
    model = optimized.model
    if attention_to_mha(model, num_heads) == 0:
        raise ValueError("no attention matched the exporter's pattern")
    split_log_sum_exp(model)
    return model


def split_log_sum_exp(model: onnx.ModelProto) -> int:
    """Write each ``ReduceLogSumExp`` as max + log(sum(exp(x - max))), in place; the number
    rewritten. ONNX Runtime's CPU kernel takes ~270 us over a 51,200-word vocabulary, the five
    vectorised operators ~30 us, and subtracting the maximum first is the more exact. Only from
    opset 18, where every reduction takes its axes as an input alike."""
    opset = next((op.version for op in model.opset_import if op.domain in ("", "ai.onnx")), 0)
    graph = model.graph
    if opset < 18 or not any(node.op_type == "ReduceLogSumExp" for node in graph.node):
        return 0
    nodes, count = [], 0
    for node in graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "ReduceLogSumExp" or attributes.get("noop_with_empty_axes", 0):
            nodes.append(node)
            continue
        x, axes = node.input[0], list(node.input[1:2])
        keep, base = attributes.get("keepdims", 1), f"{node.name or node.output[0]}_split"
        peak, shifted, exp, total, log = (f"{base}_{n}" for n in ("max", "shifted", "exp", "sum", "log"))
        nodes += [
            helper.make_node("ReduceMax", [x, *axes], [peak], name=f"{base}_max", keepdims=1),
            helper.make_node("Sub", [x, peak], [shifted], name=f"{base}_sub"),
            helper.make_node("Exp", [shifted], [exp], name=f"{base}_exp"),
            helper.make_node("ReduceSum", [exp, *axes], [total], name=f"{base}_sum", keepdims=1),
            helper.make_node("Log", [total], [log], name=f"{base}_log"),
        ]
        if keep:
            nodes.append(helper.make_node("Add", [log, peak], [node.output[0]], name=f"{base}_add"))
        else:
            nodes += [
                helper.make_node("Add", [log, peak], [f"{base}_kept"], name=f"{base}_add"),
                helper.make_node("Squeeze", [f"{base}_kept", *axes], [node.output[0]], name=f"{base}_squeeze"),
            ]
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return count


# -- attention -----------------------------------------------------------------------------------
class _Graph:
    """Who produces and who consumes each value of a graph."""

    def __init__(self, graph: onnx.GraphProto):
        self.producer = {name: node for node in graph.node for name in node.output if name}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.constants = {init.name: init for init in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute:
                self.constants[node.output[0]] = node.attribute[0].t

    def parent(self, node: onnx.NodeProto, index: int, op_type: str) -> onnx.NodeProto:
        found = self.producer.get(node.input[index]) if index < len(node.input) else None
        if found is None or found.op_type != op_type:
            raise LookupError(f"{node.name}: input {index} is not a {op_type}")
        return found

    def only_child(self, node: onnx.NodeProto, op_type: str) -> onnx.NodeProto:
        users = self.consumers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != op_type:
            raise LookupError(f"{node.name}: not followed by one {op_type}")
        return users[0]

    def scalar(self, name: str) -> float:
        if name not in self.constants:
            raise LookupError(f"{name} is not a constant")
        value = onnx.numpy_helper.to_array(self.constants[name])
        if value.size != 1:
            raise LookupError(f"{name} is not a scalar")
        return float(value.reshape(-1)[0])


def _perm(node: onnx.NodeProto) -> list[int]:
    for attribute in node.attribute:
        if attribute.name == "perm":
            return list(attribute.ints)
    return []


def _heads_of(graph: _Graph, head_view: onnx.NodeProto) -> str:
    """The (batch, seq, hidden) tensor a ``Reshape`` + ``Transpose(0, 2, 1, 3)`` splits into heads."""
    reshape = graph.producer.get(head_view.input[0])
    if reshape is None or reshape.op_type != "Reshape" or _perm(head_view) != [0, 2, 1, 3]:
        raise LookupError(f"{head_view.name}: not a split into heads")
    return reshape.input[0]


def _match(graph: _Graph, softmax: onnx.NodeProto) -> dict:
    """The parts of one exported attention around its ``Softmax``; LookupError if it is not one."""
    masked = graph.parent(softmax, 0, "Add")
    scaled_index = 0 if graph.producer.get(masked.input[0], softmax).op_type == "Mul" else 1
    scaled = graph.parent(masked, scaled_index, "Mul")
    scores_index = 0 if graph.producer.get(scaled.input[0], softmax).op_type == "MatMul" else 1
    scores = graph.parent(scaled, scores_index, "MatMul")
    scale = graph.scalar(scaled.input[1 - scores_index])
    query = _heads_of(graph, graph.parent(scores, 0, "Transpose"))
    key_t = graph.parent(scores, 1, "Transpose")
    if _perm(key_t) != [0, 1, 3, 2]:
        raise LookupError(f"{key_t.name}: not the keys transposed")
    key_cat = graph.parent(key_t, 0, "Concat")
    weighted = graph.only_child(softmax, "MatMul")
    if weighted.input[0] != softmax.output[0]:
        raise LookupError(f"{weighted.name}: the probabilities are not its first input")
    value_cat = graph.parent(weighted, 1, "Concat")
    merge_t = graph.only_child(weighted, "Transpose")
    merged = graph.only_child(merge_t, "Reshape")
    if _perm(merge_t) != [0, 2, 1, 3]:
        raise LookupError(f"{merge_t.name}: not merging heads")
    cats = []
    for cat in (key_cat, value_cat):
        if len(cat.input) != 2 or not any(a.name == "axis" and a.i in (-2, 2) for a in cat.attribute):
            raise LookupError(f"{cat.name}: not the cache concatenation")
        new = graph.producer.get(cat.input[1])
        if new is None or new.op_type != "Transpose":
            raise LookupError(f"{cat.name}: the new positions are not split heads")
        cats.append((cat.input[0], _heads_of(graph, new), cat.output[0]))
    (past_key, key, present_key), (past_value, value, present_value) = cats
    return {
        "query": query,
        "key": key,
        "value": value,
        "past_key": past_key,
        "past_value": past_value,
        "present_key": present_key,
        "present_value": present_value,
        "output": merged.output[0],
        "scale": scale,
        "mask": masked.input[1 - scaled_index],
        "name": softmax.name,
    }


def attention_to_mha(model: onnx.ModelProto, num_heads: int) -> int:
    """Replace each exported attention of ``model`` by ``MultiHeadAttention``, in place; the
    number replaced. The mask the exporter computes from ``attention_mask`` (causal, and the
    padding columns off) becomes MultiHeadAttention's ``unidirectional`` causal mask with
    ``attention_mask`` as its key padding mask; where the graph has no such input, nothing is
    replaced."""
    graph = model.graph
    if "attention_mask" not in {i.name for i in graph.input}:
        return 0
    index = _Graph(graph)
    found = []
    for node in graph.node:
        if node.op_type != "Softmax":
            continue
        try:
            found.append(_match(index, node))
        except LookupError as reason:
            log.debug("attention not matched: %s", reason)
            return 0  # all or none: a half-fused graph would be a pattern this pass does not know
    if not found or len({part["mask"] for part in found}) != 1:
        return 0
    mask32 = "attention_mask_int32"
    fused = [
        helper.make_node("Cast", ["attention_mask"], [mask32], name="AttentionMaskInt32", to=onnx.TensorProto.INT32)
    ]
    for i, part in enumerate(found):
        fused.append(
            helper.make_node(
                "MultiHeadAttention",
                [part["query"], part["key"], part["value"], "", mask32, "", part["past_key"], part["past_value"]],
                [part["output"], part["present_key"], part["present_value"]],
                name=f"MultiHeadAttention_{i}",
                domain=MS_DOMAIN,
                num_heads=num_heads,
                scale=part["scale"],
                unidirectional=1,
            )
        )
    replaced = {name for part in found for name in (part["output"], part["present_key"], part["present_value"])}
    kept = [node for node in graph.node if not replaced & set(node.output)]
    _set_nodes(graph, _topological(kept + fused, graph))
    if not any(op.domain == MS_DOMAIN for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return len(found)


def _topological(nodes: list[onnx.NodeProto], graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes that some graph output depends on, each after the nodes it reads from."""
    producer = {name: node for node in nodes for name in node.output if name}
    order: list[onnx.NodeProto] = []
    seen: set[int] = set()
    stack = [(producer[o.name], False) for o in reversed(graph.output) if o.name in producer]
    while stack:
        node, expanded = stack.pop()
        if id(node) in seen:
            continue
        if expanded:
            seen.add(id(node))
            order.append(node)
            continue
        stack.append((node, True))
        for name in reversed(node.input):
            parent = producer.get(name)
            if parent is not None and id(parent) not in seen:
                stack.append((parent, False))
    return order


def _set_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    used = {name for node in nodes for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    copies = [onnx.NodeProto.FromString(node.SerializeToString()) for node in nodes]
    del graph.node[:]
    graph.node.extend(copies)
    del graph.initializer[:]
    graph.initializer.extend(kept)


# -- checking ------------------------------------------------------------------------------------
def compare(reference: Path, candidate: Path) -> float:
    """The largest difference between two graphs' outputs on a two-row batch, one row left-padded,
    over a three-position cache: relative to the largest reference logit."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # quicker to open
    results = []
    for path in (reference, candidate):
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        results.append(dict(zip(names, session.run(None, _example(session)))))
        del session
    want, got = results
    if set(want) != set(got):
        return float("inf")
    scale = float(np.abs(want[next(iter(want))]).max()) or 1.0
    # integer outputs (token ids) follow from the float ones; near-ties may order them otherwise
    floats = [name for name, value in want.items() if np.issubdtype(value.dtype, np.floating)]
    return max(float(np.abs(want[name] - got[name]).max()) for name in floats) / scale


def _example(session: object) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    rows, past, seq = 2, 3, 4
    feeds: dict[str, np.ndarray] = {
        "input_ids": rng.integers(0, 100, (rows, seq), dtype=np.int64),
        "attention_mask": np.ones((rows, past + seq), dtype=np.int64),
    }
    feeds["attention_mask"][1, :2] = 0  # a shorter row, left-padded
    for arg in session.get_inputs():
        if arg.name.startswith("past_"):
            heads, size = arg.shape[1], arg.shape[3]
            feeds[arg.name] = rng.standard_normal((rows, heads, past, size)).astype(np.float32)
    return feeds
