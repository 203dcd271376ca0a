"""The int8 CPU path (kolyric.engine.quantize): what it swaps, that generation and every decoding
control work over it on both backends (PyTorch int8; ONNX Runtime decoding steps when it is
installed), switching precision at run time, and falling back with a notice."""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from kolyric.engine import onnx_decoder, onnx_graph, quantize
from kolyric.engine.loading import LoadedModel, load_model
from kolyric.engine.results import DoneEvent, GenerationRequest, TokenEvent
from kolyric.engine.settings import preset
from kolyric.engine.stream import Generator, LiveControls

from tests.peaked_model import LINES, train_peaked

HAS_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx", "onnxscript"))
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="needs onnxruntime, onnx and onnxscript (kolyric[int8])")
BACKENDS = ["torch", pytest.param("onnxruntime", marks=needs_onnx)]


@pytest.fixture(scope="module")
def peaked_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model trained until it has memorised four lines: every greedy step has a large
    margin, so int8 rounding cannot change a choice."""
    return train_peaked(tiny_model_dir, tmp_path_factory.mktemp("peaked"))


@pytest.fixture(scope="module")
def fp32(peaked_dir) -> LoadedModel:
    return load_model(str(peaked_dir), device="cpu", precision="fp32")


@pytest.fixture(scope="module", autouse=True)
def onnx_cache(tmp_path_factory):
    """Exported graphs go to a temporary folder, never the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KOLYRIC_ONNX_CACHE", str(tmp_path_factory.mktemp("onnx")))
        mp.delenv("KOLYRIC_INT8_BACKEND", raising=False)
        yield


@pytest.fixture(scope="module", params=BACKENDS)
def int8(request, peaked_dir) -> LoadedModel:
    """The peaked model loaded with precision int8, decoding steps on each backend."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KOLYRIC_INT8_BACKEND", request.param)
        loaded = load_model(str(peaked_dir), device="cpu", precision="int8")
    assert quantize.int8_backend(loaded.model) == request.param, loaded.notices
    return loaded


def run(loaded_or_gen, name="greedy", prompt="영화", **settings):
    gen = loaded_or_gen if isinstance(loaded_or_gen, Generator) else Generator(loaded_or_gen)
    settings.setdefault("seed", 3)
    return gen.generate(GenerationRequest(prompt, settings=preset(name, **settings)))


def ids(result, i=0):
    return result.candidates[i].token_ids


# -- what is swapped ---------------------------------------------------------------------------
def test_every_matrix_multiply_is_int8_and_the_rest_stays_fp32(fp32, int8):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from transformers.pytorch_utils import Conv1D

    modules = list(int8.model.modules())
    assert not any(isinstance(m, (Conv1D, torch.nn.Linear)) for m in modules)
    quantized = [m for m in modules if isinstance(m, DynamicLinear)]
    assert len(quantized) == 4 * int8.model.config.n_layer + 1  # c_attn, c_proj, c_fc, mlp c_proj; head
    assert int8.model.lm_head.weight().dtype == torch.qint8
    assert int8.model.transformer.wte.weight.dtype == torch.float32
    assert isinstance(int8.model.transformer.h[0].mlp.act, torch.nn.GELU)  # gelu_new, as one operation
    assert quantize.precision_of(int8.model) == "int8" and quantize.precision_of(fp32.model) == "fp32"
    assert int8.description.endswith("int8") and not int8.notices
    assert quantize.weight_bytes(int8.model) < 0.35 * quantize.weight_bytes(fp32.model)


def test_quantizing_twice_changes_nothing(int8):
    head = int8.model.lm_head
    assert quantize.quantize_int8(int8) is None
    assert int8.model.lm_head is head


def test_int8_logits_stay_close_to_fp32(fp32, int8):
    ids_ = torch.tensor([fp32.tokenizer.encode(LINES[0])])
    with torch.inference_mode():
        a = torch.log_softmax(fp32.model(input_ids=ids_).logits, -1)
        b = torch.log_softmax(int8.model(input_ids=ids_).logits, -1)
    assert torch.equal(a.argmax(-1), b.argmax(-1))
    assert (a.exp() - b.exp()).abs().max() < 0.05


# -- generation over int8 ------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", ["영화", "배우", "음악도"])
def test_int8_and_fp32_greedy_give_the_same_text(fp32, int8, prompt):
    a, b = run(fp32, prompt=prompt, max_length=12), run(int8, prompt=prompt, max_length=12)
    assert ids(a) == ids(b) and a.candidates[0].text == b.candidates[0].text
    assert [t.alternatives[0].token_id for t in a.candidates[0].tokens] == [
        t.alternatives[0].token_id for t in b.candidates[0].tokens
    ]


def test_every_decoding_control_works_on_int8(int8):
    gen = Generator(int8)
    greedy = run(gen, max_length=10)
    assert ids(run(gen, "top-k-50", top_k=1, max_length=10)) == ids(greedy)
    assert ids(run(gen, "top-p-0.8", top_p=1e-6, max_length=10)) == ids(greedy)
    for info in greedy.candidates[0].tokens:  # top-5 from the int8 model, most likely first
        probs = [a.prob for a in info.alternatives]
        assert info.token_id == info.alternatives[0].token_id and probs == sorted(probs, reverse=True)

    combined = run(gen, "combined", n=3, max_length=12, seed=11)
    assert len(combined.candidates) == 3
    assert ids(run(gen, "combined", n=3, max_length=12, seed=11), 1) == ids(combined, 1)  # seeded
    for cand in combined.candidates:
        grams = [tuple(cand.token_ids[i : i + 3]) for i in range(len(cand.token_ids) - 2)]
        assert len(grams) == len(set(grams))  # no_repeat_ngram_size=3
    hot = {tuple(ids(run(gen, "top-k-50", temperature=3.0, seed=s, max_length=8))) for s in range(4)}
    assert len(hot) > 1
    for s in range(3):  # top-k limits the draw to the k most likely under the processed scores
        result = run(gen, "top-k-50", top_k=2, temperature=5.0, seed=s, max_length=6)
        for info in result.candidates[0].tokens:
            assert info.token_id in {a.token_id for a in info.alternatives[:2]}

    exact = run(gen, "repetition-1.5", min_length=14, max_length=14)
    assert len(exact.candidates[0].tokens) == 14 and exact.candidates[0].finish_reason == "length"

    beam = run(gen, "beam-3", n=2, max_length=8)
    assert len(beam.candidates) == 2 and all(c.tokens for c in beam.candidates)

    forced = greedy.candidates[0].tokens[0].alternatives[1].token_id
    branch = gen.generate(
        GenerationRequest("영화", settings=preset("greedy", max_length=6, seed=3), forced_ids=(forced,))
    )
    assert ids(branch)[0] == forced


def test_cancel_and_live_changes_work_on_int8(int8):
    gen = Generator(int8)
    cancel = threading.Event()
    events = []
    for event in gen.stream(
        GenerationRequest("영화", settings=preset("top-k-50", max_length=30, seed=1)), cancel=cancel
    ):
        events.append(event)
        if isinstance(event, TokenEvent) and event.step == 2:
            cancel.set()
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.result.candidates[0].finish_reason == "cancelled"
    assert done.result.new_tokens == 3

    controls = LiveControls(preset("top-k-50", max_length=8, seed=1))
    steps = []
    for event in gen.stream(GenerationRequest("영화", settings=controls.current), controls=controls):
        if isinstance(event, TokenEvent):
            steps.append(event.step)
            if event.step == 1:
                controls.update(preset("greedy", max_length=4))
    assert steps == [0, 1, 2, 3]  # the shorter max_length applied from the next token


# -- ONNX Runtime decoding steps ---------------------------------------------------------------------
@needs_onnx
def test_onnx_runtime_runs_the_prompt_and_every_step(peaked_dir, monkeypatch):
    monkeypatch.setenv("KOLYRIC_INT8_BACKEND", "onnxruntime")
    loaded = load_model(str(peaked_dir), device="cpu", precision="int8")
    decoder = loaded.model  # the graph alone (kolyric.engine.onnx_model), no PyTorch model
    calls = []
    session = decoder.session

    class Counting:
        def run_with_ort_values(self, *args, **kwargs):
            calls.append(1)
            return session.run_with_ort_values(*args, **kwargs)

    decoder.session = Counting()
    result = run(loaded, max_length=6)
    assert len(result.candidates[0].tokens) == 6 and len(calls) == 6  # the prompt is the graph's too
    assert quantize.weight_bytes(loaded.model) == decoder.weight_bytes


@needs_onnx
@pytest.mark.parametrize(
    "name, extra",
    [
        ("combined", {"min_p": 0.05, "dry_multiplier": 0.8, "temperature": 1.5}),
        ("combined", {"n": 3, "temperature": 1.5}),
        ("greedy", {"repetition_penalty": 1.3, "no_repeat_ngram_size": 2, "min_length": 12}),
    ],
)
def test_ranking_the_graphs_top_logits_alone_changes_no_token(peaked_dir, monkeypatch, name, extra):
    """The step graph gives each row's top logits; a chain that only lowers scores ranks those
    alone (``ProcessorChain.lowered_top``) and leaves the row as it is. The tokens, and each
    token's probability, are those of the same chain over the whole row."""
    from kolyric.engine import decode
    from kolyric.engine.chain import ProcessorChain

    monkeypatch.setenv("KOLYRIC_INT8_BACKEND", "onnxruntime")
    gen = Generator(load_model(str(peaked_dir), device="cpu", precision="int8"))
    found = []
    lowered_top = ProcessorChain.lowered_top
    monkeypatch.setattr(ProcessorChain, "lowered_top", lambda *a: found.append(lowered_top(*a)) or found[-1])
    ranked = [run(gen, name, prompt=prompt, seed=seed, max_length=20, **extra) for prompt in LINES for seed in (1, 2)]
    assert any(f is not None for f in found), "the bound was never ranked"
    monkeypatch.setattr(decode, "_lowers_only", lambda procs: False)  # no bound: the whole row
    found.clear()
    whole = [run(gen, name, prompt=prompt, seed=seed, max_length=20, **extra) for prompt in LINES for seed in (1, 2)]
    assert not found
    for a, b in zip(ranked, whole):
        assert [c.token_ids for c in a.candidates] == [c.token_ids for c in b.candidates]
        assert [[t.prob for t in c.tokens] for c in a.candidates] == [[t.prob for t in c.tokens] for c in b.candidates]


@needs_onnx
def test_onnx_runtime_has_the_cpu_threads_while_it_decodes(peaked_dir):
    import gc

    gc.collect()  # decoders of models other tests dropped give their threads back
    before = torch.get_num_threads()
    holders = onnx_decoder._CORES["holders"]
    torch.set_num_threads(2)
    try:
        loaded = load_model(str(peaked_dir), device="cpu", precision="fp32")
        quantize.set_precision(loaded, "int8", backend="onnxruntime")
        assert torch.get_num_threads() == 1 and onnx_decoder._CORES["holders"] == holders + 1
        quantize.set_precision(loaded, "fp32")
        assert onnx_decoder._CORES["holders"] == holders
        assert torch.get_num_threads() == (2 if holders == 0 else 1)
    finally:
        torch.set_num_threads(before)


@needs_onnx
def test_the_onnx_graph_is_built_once_per_model(peaked_dir, monkeypatch):
    builds = []
    real = onnx_graph.build
    monkeypatch.setattr(onnx_graph, "build", lambda *a, **k: (builds.append(1), real(*a, **k))[1])
    for _ in range(2):
        loaded = load_model(str(peaked_dir), device="cpu", precision="int8")
        assert quantize.int8_backend(loaded.model) == "onnxruntime" and not loaded.notices
    assert len(builds) <= 1  # none when another test built it first
    assert list(quantize.onnx_cache_dir().glob("*/decoder-int8.onnx"))


@needs_onnx
def test_the_slow_phases_are_reported_and_a_damaged_graph_is_built_again(peaked_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("KOLYRIC_ONNX_CACHE", str(tmp_path))
    phases: list[str] = []
    loaded = load_model(str(peaked_dir), device="cpu", precision="int8", progress=phases.append)
    assert quantize.int8_backend(loaded.model) == "onnxruntime"
    assert any("int8 graph" in p for p in phases)
    phases.clear()
    load_model(str(peaked_dir), device="cpu", precision="int8", progress=phases.append)
    assert not any("int8 graph" in p for p in phases)  # cached: nothing to build
    [graph] = tmp_path.glob("*/decoder-int8.onnx")
    graph.write_bytes(b"torn")  # a write cut short, a disk error
    loaded = load_model(str(peaked_dir), device="cpu", precision="int8", progress=phases.append)
    assert quantize.int8_backend(loaded.model) == "onnxruntime" and not loaded.notices
    assert any("int8 graph" in p for p in phases) and graph.stat().st_size > 1000


@needs_onnx
def test_an_onnx_graph_that_cannot_be_built_leaves_pytorch_int8(peaked_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("KOLYRIC_ONNX_CACHE", str(tmp_path))

    def broken(*_):
        raise RuntimeError("export failed")

    monkeypatch.setattr(onnx_graph, "build", broken)
    loaded = load_model(str(peaked_dir), device="cpu", precision="int8")
    assert quantize.int8_backend(loaded.model) == "torch"
    assert loaded.notices == ["int8: ONNX Runtime graph unavailable (export failed); using PyTorch int8"]
    assert run(loaded, max_length=4).candidates[0].tokens


def test_asking_for_onnx_runtime_without_it_says_so(peaked_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    monkeypatch.setenv("KOLYRIC_INT8_BACKEND", "onnxruntime")
    loaded = load_model(str(peaked_dir), device="cpu", precision="int8")
    assert quantize.int8_backend(loaded.model) == "torch"
    assert any("onnxruntime is not installed" in n for n in loaded.notices)
    monkeypatch.setenv("KOLYRIC_INT8_BACKEND", "auto")  # not asked for: no notice
    assert not load_model(str(peaked_dir), device="cpu", precision="int8").notices
    with pytest.raises(ValueError, match="int8 backend"):
        quantize.quantize_int8(load_model(str(peaked_dir), device="cpu"), backend="onnx")


# -- switching precision at run time ---------------------------------------------------------------
def test_set_precision_switches_in_place_and_back(peaked_dir):
    loaded = load_model(str(peaked_dir), device="cpu", precision="fp32")
    gen = Generator(loaded)  # built before the switches, used across them
    before = run(gen, "top-k-50", max_length=10, seed=5)
    head = loaded.model.lm_head

    assert quantize.set_precision(loaded, "int8") is None
    assert quantize.precision_of(loaded.model) == "int8" and loaded.description.endswith("int8")
    fresh = load_model(str(peaked_dir), device="cpu", precision="int8")
    assert ids(run(gen, "top-k-50", max_length=10, seed=5)) == ids(run(fresh, "top-k-50", max_length=10, seed=5))

    assert quantize.set_precision(loaded, "fp32") is None
    assert loaded.model.lm_head is head and loaded.description.endswith("fp32")
    assert type(loaded.model.transformer.h[0].mlp.act).__name__ == "NewGELUActivation"
    again = run(gen, "top-k-50", max_length=10, seed=5)
    assert ids(again) == ids(before)
    assert [t.prob for t in again.candidates[0].tokens] == [t.prob for t in before.candidates[0].tokens]

    assert quantize.set_precision(loaded, "bf16") is None
    assert quantize.precision_of(loaded.model) == "bf16"
    assert quantize.set_precision(loaded, "int8", backend="torch") is None  # from bf16, through fp32 weights
    assert quantize.precision_of(loaded.model) == "int8"
    with pytest.raises(ValueError, match="precision"):
        quantize.set_precision(loaded, "int4")


# -- falling back ------------------------------------------------------------------------------------
def test_no_quantized_engine_falls_back_to_fp32_with_a_notice(peaked_dir, monkeypatch):
    monkeypatch.setenv("KOLYRIC_INT8_BACKEND", "torch")  # ONNX Runtime's graphs need no PyTorch engine
    monkeypatch.setattr(quantize, "_pick_engine", lambda: None)
    loaded = load_model(str(peaked_dir), device="cpu", precision="int8")
    assert not quantize.is_quantized(loaded.model)
    assert any("int8" in n and "fp32" in n and "engine" in n for n in loaded.notices), loaded.notices
    assert run(loaded, max_length=5).candidates[0].tokens


class _RecurrentLM(torch.nn.Module):
    """Not GPT-2, and no Linear or Conv1D anywhere."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(50, 8)
        self.rnn = torch.nn.GRU(8, 8, batch_first=True)

    def forward(self, input_ids=None, **_):
        return self.rnn(self.embed(input_ids))[0]


def test_a_model_without_matrix_multiplies_stays_fp32(monkeypatch):
    loaded = LoadedModel(_RecurrentLM(), tokenizer=None, source="rnn", kind="directory", description="rnn · cpu fp32")
    notice = quantize.quantize_int8(loaded)
    assert notice and "_RecurrentLM has no Linear or Conv1D" in notice and "fp32" in notice
    assert not quantize.is_quantized(loaded.model)


class _Fragile(torch.nn.Module):
    """Has a Linear, but refuses to run once it is swapped: the check must catch it and undo."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, input_ids=None, **_):
        if type(self.proj) is not torch.nn.Linear:
            raise RuntimeError("unsupported layer")
        return self.proj(torch.zeros(1, 4))


def test_a_model_the_int8_kernels_cannot_run_is_restored():
    model = _Fragile()
    proj = model.proj
    loaded = LoadedModel(model, tokenizer=None, source="fragile", kind="directory", description="")
    notice = quantize.quantize_int8(loaded)
    assert notice and "quantizing failed (unsupported layer)" in notice
    assert model.proj is proj and not quantize.is_quantized(model)


def test_a_model_off_the_cpu_stays_as_it_is():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4)).to("meta")
    loaded = LoadedModel(model, tokenizer=None, source="meta", kind="directory", description="")
    notice = quantize.quantize_int8(loaded)
    assert notice and "CPU path" in notice and "meta" in notice
    assert type(model[0]) is torch.nn.Linear


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_the_same_engine_runs_on_cuda(peaked_dir, precision):
    loaded = load_model(str(peaked_dir), device="cuda", precision=precision)
    for name in ("greedy", "combined", "beam-3"):
        result = run(loaded, name, max_length=8, n=2 if name != "greedy" else 1)
        assert all(c.tokens for c in result.candidates)
    notice = quantize.set_precision(loaded, "int8")
    assert notice and "CPU path" in notice and not quantize.is_quantized(loaded.model)


# -- the default precision ------------------------------------------------------------------------
def test_auto_keeps_a_small_model_in_fp32(peaked_dir):
    """The default (``auto``) quantizes on a CPU only from AUTO_INT8_MIN_PARAMS parameters up: a
    small model stays fp32 and no ONNX graph is built for it."""
    loaded = load_model(str(peaked_dir), device="cpu", precision="auto")
    assert quantize.precision_of(loaded.model) == "fp32" and not loaded.notices
    assert loaded.description.endswith("cpu fp32")


def test_auto_picks_int8_for_a_large_model_on_the_cpu(peaked_dir, monkeypatch):
    monkeypatch.setattr(quantize, "AUTO_INT8_MIN_PARAMS", 1)
    monkeypatch.setenv("KOLYRIC_INT8_BACKEND", "torch")  # no ONNX export in this test
    loaded = load_model(str(peaked_dir), device="cpu", precision="auto")
    assert quantize.precision_of(loaded.model) == "int8" and loaded.description.endswith("cpu int8")
    assert run(loaded, max_length=4).candidates[0].tokens


def test_auto_means_fp32_off_the_cpu():
    model = torch.nn.Linear(4, 4)
    assert quantize.auto_precision(model, "cuda") == "fp32"
    assert quantize.auto_precision(model, "cuda:1") == "fp32"
    assert quantize.auto_precision(model, "cpu") == "fp32"  # 20 parameters: too small to pay


def test_auto_falls_back_to_fp32_with_a_notice(peaked_dir, monkeypatch):
    monkeypatch.setattr(quantize, "AUTO_INT8_MIN_PARAMS", 1)
    monkeypatch.setattr(quantize, "_pick_engine", lambda: None)
    monkeypatch.setenv("KOLYRIC_INT8_BACKEND", "torch")
    loaded = load_model(str(peaked_dir), device="cpu", precision="auto")
    assert quantize.precision_of(loaded.model) == "fp32"
    assert any("quantized CPU engine" in n for n in loaded.notices)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_on_cuda_is_fp32_and_fp16_needs_no_code_change(peaked_dir):
    loaded = load_model(str(peaked_dir), device="cuda", precision="auto")
    assert quantize.precision_of(loaded.model) == "fp32" and loaded.device.startswith("cuda")
    assert quantize.set_precision(loaded, "fp16") is None and quantize.precision_of(loaded.model) == "fp16"
    result = run(loaded, "combined", max_length=8, n=2)
    assert all(c.tokens for c in result.candidates)
