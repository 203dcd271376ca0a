"""int8 and int4 ONNX Runtime graphs run without a PyTorch model (kolyric.engine.onnx_model,
onnx_graph): a cached graph loads with no transformers model module imported and no torch module
built, int4's greedy text matches fp32 on a model with clear choices, a graph is built once per
weights, and a damaged cache is built again."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx", "onnxscript")):
    pytest.skip("needs onnxruntime, onnx and onnxscript (kolyric[int8])", allow_module_level=True)

from kolyric.engine import onnx_graph, onnx_model, onnx_session, quantize
from kolyric.engine.loading import load_model
from kolyric.engine.results import GenerationRequest
from kolyric.engine.settings import preset
from kolyric.engine.stream import Generator

from tests.child import run_child
from tests.peaked_model import train_peaked

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["영화 정말", "배우 연기가", "음악도 좋고", "다시 보고"]


@pytest.fixture(scope="module")
def peaked_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model trained until it has memorised four lines: every greedy step has a large
    margin, so 8-bit or 4-bit rounding should not change a choice."""
    return train_peaked(tiny_model_dir, tmp_path_factory.mktemp("peaked-graph"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Graphs go to one temporary folder for the module, never the user's cache."""
    folder = tmp_path_factory.mktemp("onnx-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KOLYRIC_ONNX_CACHE", str(folder))
        mp.delenv("KOLYRIC_INT8_BACKEND", raising=False)
        yield folder


def greedy(loaded, prompt: str, n: int = 8) -> list[int]:
    result = Generator(loaded).generate(GenerationRequest(prompt, None, preset("greedy", max_length=n)))
    return result.candidates[0].token_ids


@pytest.fixture(scope="module")
def fp32_greedy(peaked_dir) -> dict[str, list[int]]:
    loaded = load_model(str(peaked_dir), device="cpu", precision="fp32")
    return {p: greedy(loaded, p) for p in PROMPTS}


@pytest.fixture(scope="module")
def int8_built(peaked_dir, cache) -> Path:
    loaded = load_model(str(peaked_dir), device="cpu", precision="int8")
    assert onnx_model.is_graph_model(loaded.model), loaded.notices
    return peaked_dir


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_a_graph_s_greedy_choices_match_fp32_where_fp32_is_clear(peaked_dir, cache, fp32_greedy, precision):
    """Greedy through kolyric's loop on the graph; then, along fp32's greedy text, the graph's
    likeliest token is fp32's at every position where fp32's top two logits are 2 apart or more
    (4-bit weights move a logit by up to ~1 on this model; closer calls may go either way)."""
    loaded = load_model(str(peaked_dir), device="cpu", precision=precision)
    fp32 = load_model(str(peaked_dir), device="cpu", precision="fp32")
    assert onnx_model.is_graph_model(loaded.model) and not loaded.notices
    assert quantize.precision_of(loaded.model) == precision and loaded.description.endswith(f"cpu {precision}")
    assert quantize.int8_backend(loaded.model) == "onnxruntime"
    if precision == "int8":
        for prompt in PROMPTS:
            assert greedy(loaded, prompt) == fp32_greedy[prompt], prompt
    clear = 0
    for prompt in PROMPTS:
        ids = torch.tensor([fp32.tokenizer.encode(prompt, add_special_tokens=False) + fp32_greedy[prompt]])
        with torch.inference_mode():
            ref = fp32.model(input_ids=ids).logits[0]
            got = loaded.model(input_ids=ids).logits[0]
        top = ref.topk(2, dim=-1).values
        sure = (top[:, 0] - top[:, 1]) >= 2.0
        clear += int(sure.sum())
        assert torch.equal(got.argmax(-1)[sure], ref.argmax(-1)[sure]), prompt
    assert clear >= 10  # the check covered real choices


def test_int4_reads_fewer_weight_bytes_than_int8(peaked_dir, cache, int8_built):
    int8 = load_model(str(peaked_dir), device="cpu", precision="int8")
    int4 = load_model(str(peaked_dir), device="cpu", precision="int4")
    fp32 = load_model(str(peaked_dir), device="cpu", precision="fp32")
    head = fp32.model.config.vocab_size * fp32.model.config.n_embd  # the output head: 8-bit in both
    assert quantize.weight_bytes(int4.model) - head < 0.7 * (quantize.weight_bytes(int8.model) - head)
    assert quantize.weight_bytes(int8.model) < 0.4 * quantize.weight_bytes(fp32.model)


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_what_each_graph_quantizes(peaked_dir, cache, int8_built, precision):
    """Every matrix multiply is a block-quantized ``MatMulNBits`` of the precision's bits (the
    output head 8-bit in both), the token table is quantized and the position table is not."""
    onnx = pytest.importorskip("onnx")
    load_model(str(peaked_dir), device="cpu", precision=precision)
    graph = onnx.load(str(next(cache.glob(f"*/decoder-{precision}.onnx"))), load_external_data=False).graph
    ops = {node.op_type for node in graph.node}
    assert "MatMul" not in ops and "MatMulInteger" not in ops
    bits = {}
    for node in graph.node:
        if node.op_type == "MatMulNBits":
            attrs = {a.name: a.i for a in node.attribute}
            bits["head" if "logits" in node.output else "layers"] = attrs["bits"]
            assert attrs["block_size"] >= 16 and attrs["accuracy_level"] == 4
    assert bits == {"head": 8, "layers": 8 if precision == "int8" else 4}
    floats = {init.name for init in graph.initializer if init.data_type == onnx.TensorProto.FLOAT}
    assert any("wpe" in name for name in floats)  # positions: fp32
    assert not any("wte" in name and "scale" not in name for name in floats)  # tokens: quantized


_CHILD = r"""
import gc, json, sys
from kolyric.engine.loading import load_model
from kolyric.engine.results import GenerationRequest
from kolyric.engine.settings import preset
from kolyric.engine.stream import Generator

loaded = load_model(sys.argv[1], device="cpu", precision=sys.argv[2])
import torch
modules = [type(o).__name__ for o in gc.get_objects() if isinstance(o, torch.nn.Module)]
params = sum(o.numel() for o in gc.get_objects() if isinstance(o, torch.Tensor) and o.numel() > 1000)
request = GenerationRequest(sys.argv[3], None, preset("greedy", max_length=8))
ids = Generator(loaded).generate(request).candidates[0].token_ids
print(json.dumps({"model": type(loaded.model).__name__, "modules": modules, "big_tensor_elements": params,
                  "imported": sorted(m for m in sys.modules if m.startswith("transformers.models")),
                  "onnx": "onnx" in sys.modules, "ids": ids, "notices": loaded.notices}))
"""


def _child(model_dir: Path, precision: str, prompt: str, cache: Path) -> dict:
    return run_child(_CHILD, str(model_dir), precision, prompt, cache=cache)


def test_a_cached_graph_loads_without_the_pytorch_model(int8_built, cache, fp32_greedy):
    got = _child(int8_built, "int8", PROMPTS[0], cache)
    assert got["model"] == "OnnxLM" and not got["notices"]
    assert got["modules"] == []  # no torch.nn.Module was built: no fp32 (or int8) PyTorch weights
    assert got["big_tensor_elements"] == 0
    assert got["imported"] == [], got["imported"]  # no transformers model module (gpt2's modeling) imported
    assert not got["onnx"]  # the graph's sizes come from meta.json, not from parsing it with onnx
    assert got["ids"] == fp32_greedy[PROMPTS[0]]


def test_auto_takes_the_graph_for_a_model_large_enough(int8_built, cache, monkeypatch):
    monkeypatch.setattr(quantize, "AUTO_INT8_MIN_PARAMS", 1)
    loaded = load_model(str(int8_built), device="cpu", precision="auto")
    assert onnx_model.is_graph_model(loaded.model) and loaded.model.precision == "int8"
    monkeypatch.setattr(quantize, "AUTO_INT8_MIN_PARAMS", 10**12)
    assert not onnx_model.is_graph_model(load_model(str(int8_built), device="cpu", precision="auto").model)


def test_the_same_weights_elsewhere_reuse_the_graph(int8_built, cache, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(int8_built, copy)
    builds = []
    real = onnx_graph.build
    monkeypatch.setattr(onnx_graph, "build", lambda *a, **k: (builds.append(1), real(*a, **k))[1])
    loaded = load_model(str(copy), device="cpu", precision="int8")  # a new index entry, the same graph
    assert onnx_model.is_graph_model(loaded.model) and builds == []
    assert onnx_model.load_indexed(str(copy), None, "int8", lambda p: None) is not None


def test_changed_weights_are_not_served_an_old_graph(int8_built, cache, tmp_path, fp32_greedy):
    from transformers import AutoModelForCausalLM

    changed = tmp_path / "changed"
    shutil.copytree(int8_built, changed)
    model = AutoModelForCausalLM.from_pretrained(str(changed))
    with torch.no_grad():
        model.lm_head.weight.mul_(-1.0)  # tied: the embeddings flip too, so greedy choices change
    model.save_pretrained(str(changed))
    before = onnx_model.weights_identity(str(changed), None)
    loaded = load_model(str(changed), device="cpu", precision="int8")
    fp32 = load_model(str(changed), device="cpu", precision="fp32")
    assert greedy(loaded, PROMPTS[1]) == greedy(fp32, PROMPTS[1])
    assert onnx_model.weights_identity(str(changed), None) == before
    assert len([p for p in cache.iterdir() if (p / "meta.json").is_file()]) >= 2


def _entry(model_dir: Path) -> Path:
    return onnx_graph.onnx_cache_dir() / onnx_model.INDEX / onnx_model.weights_identity(str(model_dir), None)


def test_a_damaged_cache_is_built_again(int8_built, cache, tmp_path, fp32_greedy):
    model_dir = tmp_path / "damaged"
    shutil.copytree(int8_built, model_dir)
    assert onnx_model.is_graph_model(load_model(str(model_dir), device="cpu", precision="int8").model)
    entry = _entry(model_dir)
    graph_dir = onnx_graph.onnx_cache_dir() / json.loads((entry / onnx_model.ENTRY).read_text())["graph"]
    data = graph_dir / (onnx_graph.graph_name("int8") + ".data")

    (entry / onnx_model.ENTRY).write_text("{not json")  # a torn index entry: the slow path writes it anew
    assert onnx_model.load_indexed(str(model_dir), None, "int8", lambda p: None) is None
    loaded = load_model(str(model_dir), device="cpu", precision="int8")
    assert onnx_model.is_graph_model(loaded.model) and not loaded.notices
    assert onnx_model.load_indexed(str(model_dir), None, "int8", lambda p: None) is not None

    with data.open("r+b") as f:  # a torn graph: shorter than written
        f.truncate(data.stat().st_size // 2)
    phases: list[str] = []
    loaded = load_model(str(model_dir), device="cpu", precision="int8", progress=phases.append)
    assert onnx_model.is_graph_model(loaded.model)
    [phase] = phases  # what it does, that it is done once, and how long it takes
    assert "int8 graph" in phase and "once per model" in phase and re.search(r"~\d+ (s|min) for", phase), phase
    assert greedy(loaded, PROMPTS[2]) == fp32_greedy[PROMPTS[2]]

    graph = graph_dir / onnx_graph.graph_name("int8")
    graph.write_bytes(b"\0" * graph.stat().st_size)  # the right size, but not a graph ONNX Runtime takes
    phases.clear()
    loaded = load_model(str(model_dir), device="cpu", precision="int8", progress=phases.append)
    assert any("int8 graph" in p for p in phases) and onnx_model.is_graph_model(loaded.model)
    assert not loaded.notices and greedy(loaded, PROMPTS[2]) == fp32_greedy[PROMPTS[2]]


def test_what_the_graph_does_not_cover_goes_to_pytorch(int8_built, cache):
    loaded = load_model(str(int8_built), device="cpu", precision="int8")
    assert loaded.model._torch_model is None
    beam = Generator(loaded).generate(GenerationRequest(PROMPTS[3], None, preset("beam-3", max_length=6)))
    assert beam.candidates[0].token_ids
    assert loaded.model._torch_model is not None
    assert quantize.set_precision(loaded, "fp32") is None
    assert not onnx_model.is_graph_model(loaded.model) and quantize.precision_of(loaded.model) == "fp32"


def test_int4_without_onnx_runtime_falls_back_to_int8_and_says_so(peaked_dir, monkeypatch):
    monkeypatch.setenv("KOLYRIC_INT8_BACKEND", "torch")
    loaded = load_model(str(peaked_dir), device="cpu", precision="int4")
    assert quantize.precision_of(loaded.model) == "int8" and quantize.int8_backend(loaded.model) == "torch"


def test_a_checkpoint_over_its_base_is_indexed_by_both(int8_built, cache, tmp_path, monkeypatch):
    """A tutorial-style checkpoint (``state_dict`` keys ``model.…``) applied over a base folder:
    the second load comes from the index, with the first load's notices; touching the base
    sends the next load down the slow path again, which reuses the graph (same weights)."""
    from transformers import AutoModelForCausalLM

    base = tmp_path / "base"
    shutil.copytree(int8_built, base)
    model = AutoModelForCausalLM.from_pretrained(str(base))
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight.mul_(1.5)
    ckpt = tmp_path / "epoch=1-val_loss=2.00.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    first = load_model(str(ckpt), base=str(base), device="cpu", precision="int8")
    assert onnx_model.is_graph_model(first.model) and any("applied over" in n for n in first.notices)
    builds = []
    real = onnx_graph.build
    monkeypatch.setattr(onnx_graph, "build", lambda *a, **k: (builds.append(1), real(*a, **k))[1])
    assert onnx_model.load_indexed(str(ckpt), str(base), "int8", lambda p: None) is not None
    again = load_model(str(ckpt), base=str(base), device="cpu", precision="int8")
    assert again.notices == first.notices and again.kind == "checkpoint"
    fp32 = load_model(str(ckpt), base=str(base), device="cpu", precision="fp32")
    assert greedy(again, PROMPTS[0]) == greedy(fp32, PROMPTS[0])
    os.utime(base / "config.json", ns=(1, 1))  # the base changed (as far as its files say)
    assert onnx_model.load_indexed(str(ckpt), str(base), "int8", lambda p: None) is None
    assert onnx_model.is_graph_model(load_model(str(ckpt), base=str(base), device="cpu", precision="int8").model)
    assert builds == []  # the same weights: the graph built for the first load serves


def test_graph_folders_of_older_formats_are_pruned_after_a_build(int8_built, cache, tmp_path):
    import fcntl

    root = tmp_path / "onnx"
    folders = {name: root / name for name in ("old", "v1", "current", "unfinished", "building")}
    for folder in folders.values():
        folder.mkdir(parents=True)
        (folder / "decoder-int8.onnx.data").write_bytes(b"x" * 16)
    formats = {"old": "gpt2-any-v2", "current": onnx_graph.FORMAT, "building": "gpt2-any-v2"}
    for name, fmt in formats.items():
        (folders[name] / "meta.json").write_text(json.dumps({"format": fmt, "files": {}}))
    (folders["v1"] / "meta.json").write_text(json.dumps({"files": {"int8": {}}}))  # before formats were written
    (root / "index").mkdir()
    with open(folders["building"] / ".lock", "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # an older kolyric building there now
        removed = onnx_graph.prune_stale(root)
    assert sorted(p.name for p in removed) == ["old", "v1"]
    assert sorted(p.name for p in root.iterdir()) == ["building", "current", "index", "unfinished"]
    assert onnx_graph.prune_stale(root / "missing") == []
    # a real build prunes its cache's stale folders and keeps its own
    stale = cache / "stale-folder"
    stale.mkdir()
    (stale / "meta.json").write_text(json.dumps({"format": "gpt2-step-v1"}))
    graph = onnx_graph.build(load_model(str(int8_built), device="cpu", precision="fp32").model, cache / "fresh", "int8")
    assert graph.is_file() and not stale.exists()


def test_worker_threads_spin_only_where_the_cores_are_free(int8_built, cache, monkeypatch):
    graph = next(cache.glob("*/decoder-int8.onnx"))
    monkeypatch.setattr(onnx_session, "available_cpus", lambda: 2)
    monkeypatch.delenv(onnx_session.SPIN_ENV, raising=False)

    def spinning(threads: int) -> str:
        options = onnx_session.open_session(graph, threads).get_session_options()
        return options.get_session_config_entry("session.intra_op.allow_spinning")

    # a core to spare: spin; as many threads as cores: only while no other process needs one
    for busy, expected in ((1.0, {1: "1", 2: "0", 4: "0"}), (0.1, {1: "1", 2: "1", 4: "0"}), (None, {2: "0"})):
        monkeypatch.setattr(onnx_session, "busy_elsewhere", lambda busy=busy: busy)
        assert {threads: spinning(threads) for threads in expected} == expected, busy
    monkeypatch.setenv(onnx_session.SPIN_ENV, "0")
    assert spinning(1) == "0"
    monkeypatch.setenv(onnx_session.SPIN_ENV, "1")
    monkeypatch.setattr(onnx_session, "busy_elsewhere", lambda: 2.0)
    assert spinning(2) == "1"


def test_busy_elsewhere_leaves_out_this_process_s_own_work(monkeypatch):
    import time

    # the machine's busy seconds advance by 1.5 over the window, this process's own by 1.0: the
    # other processes kept half a core busy on average
    machine = iter([100.0, 101.5])
    own = iter([10.0, 11.0])
    clock = iter([0.0, 1.0])
    monkeypatch.setattr(onnx_session, "machine_busy_seconds", lambda: next(machine))
    monkeypatch.setattr(time, "process_time", lambda: next(own))
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    assert onnx_session.busy_elsewhere(1.0) == pytest.approx(0.5)
    monkeypatch.setattr(time, "process_time", lambda: 0.0)
    monkeypatch.setattr(time, "perf_counter", lambda: 0.0)
    monkeypatch.setattr(onnx_session, "machine_busy_seconds", lambda: None)  # no /proc/stat
    assert onnx_session.busy_elsewhere(1.0) is None


def test_the_machine_s_busy_time_reads_as_a_number_or_none():
    first = onnx_session.machine_busy_seconds()
    if first is None:
        pytest.skip("no /proc/stat here")
    assert 0 <= first <= onnx_session.machine_busy_seconds()
    assert onnx_session.busy_elsewhere(0.05) >= 0
