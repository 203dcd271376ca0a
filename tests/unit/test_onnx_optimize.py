"""The fused decoding graph (kolyric.engine.onnx_optimize): each layer's attention becomes one
MultiHeadAttention and the layer norms SkipLayerNormalization, with the exported graph's inputs
and outputs and the same logits and cache, on padded rows over a cache; a graph the pass does
not recognise is left as it is."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx", "onnxscript")):
    pytest.skip("needs onnxruntime, onnx and onnxscript (kolyric[int8])", allow_module_level=True)

import onnx
import onnxruntime as ort

from kolyric.engine import onnx_graph, onnx_optimize, onnx_quantize


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory) -> tuple[Path, object]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    out = tmp_path_factory.mktemp("export") / "fp32.onnx"
    with onnx_graph.quiet():
        onnx_graph._export(model, out)
    return out, model.config


@pytest.fixture(scope="module")
def fused(exported) -> Path:
    source, config = exported
    out = onnx_optimize.fuse(source, source.with_name("fused.onnx"), config.n_head, config.n_embd)
    assert out != source, "the fusion did not apply"
    return out


def ops(path: Path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node)


def test_each_layer_s_attention_becomes_one_operator(exported, fused):
    _, config = exported
    counts = ops(fused)
    assert counts["MultiHeadAttention"] == config.n_layer
    assert counts["Softmax"] == 0 and counts["Transpose"] == 0
    assert counts["SkipLayerNormalization"] == 2 * config.n_layer
    assert sum(counts.values()) < sum(ops(exported[0]).values()) / 2


def test_the_fused_graph_keeps_every_input_and_output(exported, fused):
    def io(path: Path) -> tuple[list[str], list[str]]:
        graph = onnx.load(str(path), load_external_data=False).graph
        return [i.name for i in graph.input], [o.name for o in graph.output]

    assert io(fused) == io(exported[0])


def run(path: Path, feeds: dict) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


@pytest.mark.parametrize("past", [0, 5])
def test_logits_and_cache_match_the_exported_graph_on_padded_rows(exported, fused, past):
    source, config = exported
    rng = np.random.default_rng(1)
    rows, seq, heads = 3, 4, config.n_head
    mask = np.ones((rows, past + seq), dtype=np.int64)
    mask[1, :2] = 0  # left padding
    mask[2, : past + 1] = 0  # padding up to the first new position
    feeds = {"input_ids": rng.integers(0, config.vocab_size, (rows, seq)), "attention_mask": mask}
    for i in range(2 * config.n_layer):
        feeds[f"past_{i}"] = rng.standard_normal((rows, heads, past, config.n_embd // heads)).astype(np.float32)
    want, got = run(source, feeds), run(fused, feeds)
    assert set(got) == set(want)
    real = mask[:, past:].astype(bool)  # padded positions' outputs are never read
    np.testing.assert_allclose(got["logits"][real], want["logits"][real], rtol=1e-4, atol=1e-4)
    keep = np.concatenate([np.ones((rows, past), bool), real], axis=1)
    for i in range(2 * config.n_layer):
        a, b = got[f"present_{i}"], want[f"present_{i}"]
        np.testing.assert_array_equal(a[:, :, :past], b[:, :, :past])  # the cache passes through
        np.testing.assert_allclose(a.transpose(0, 2, 1, 3)[keep], b.transpose(0, 2, 1, 3)[keep], rtol=1e-4, atol=1e-4)
    for name in set(want) - {"logits"} - {f"present_{i}" for i in range(2 * config.n_layer)}:
        if np.issubdtype(want[name].dtype, np.floating):  # the last position: a real one in every row
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4, err_msg=name)


def test_a_graph_the_pass_does_not_recognise_is_used_as_it_is(tmp_path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"])], "plain", [x], [y])
    source = tmp_path / "plain.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    assert onnx_optimize.fuse(source, tmp_path / "fused.onnx", 2, 4) == source


def test_the_4_bit_block_divides_the_model_s_width():
    assert onnx_quantize.block_for(768) == onnx_quantize.BLOCK == 128  # KoGPT2
    assert [onnx_quantize.block_for(w) for w in (64, 96, 1600, 100)] == [64, 32, 64, 16]


@pytest.mark.parametrize("keepdims", [0, 1])
def test_log_sum_exp_written_out_gives_the_same_values(keepdims):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", 5000])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    axes = onnx.numpy_helper.from_array(np.array([-1], dtype=np.int64), "axes")
    node = helper.make_node("ReduceLogSumExp", ["x", "axes"], ["y"], keepdims=keepdims)
    graph = helper.make_graph([node], "lse", [x], [y], initializer=[axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert onnx_optimize.split_log_sum_exp(model) == 1
    assert "ReduceLogSumExp" not in {n.op_type for n in model.graph.node}
    logits = np.random.default_rng(0).normal(0, 8, (3, 5000)).astype(np.float32)
    logits[1] += 300  # large logits: exp alone would overflow
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": logits})[0]
    peak = logits.astype(np.float64).max(-1, keepdims=True)
    want = peak + np.log(np.exp(logits - peak).sum(-1, keepdims=True))
    np.testing.assert_allclose(got, want if keepdims else want[:, 0], rtol=1e-6)
