"""A cached graph's start (onnx_model.load_indexed, tokenizer_files): the tokenizer is read with the
``tokenizers`` library alone and answers as transformers' fast tokenizer does, the load imports no
transformers at all and builds no PyTorch module, and what the model generates through it is the
same text, token for token, as through the transformers tokenizer."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kolyric.engine import tokenizer_files
from kolyric.engine.loading import MINI_PATH, fill_special_tokens, load_tokenizer

from tests.child import run_child

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = [
    "",
    " ",
    "영화 정말 재밌다",
    "  두 칸  띄고\t탭\n줄바꿈\n\n두 줄",
    "</s>영화<pad> <unk><mask>",
    "<s>시작</s>끝",
    "English words, don't stop . ! ?",
    "😀 이모지와 ㄱㄴㄷ 자모, 漢字",
    "\u00a0nbsp\u200bzero-width",
    "ﾟ半角ｶﾅ",
    "가" * 300,
]


def _entry_like(source: Path, out: Path) -> Path:
    """The tokenizer as an index entry keeps it: loaded, special roles filled, saved again."""
    load_tokenizer(str(source)).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module", params=["tiny", "tiny-bytes", "hub-layout", "mini"])
def folder(request, tiny_model_dir, tiny_bytelevel_dir, tiny_hub_layout_dir, tmp_path_factory) -> Path:
    source = {
        "tiny": tiny_model_dir,
        "tiny-bytes": tiny_bytelevel_dir,
        "hub-layout": tiny_hub_layout_dir,
        "mini": MINI_PATH,
    }[request.param]
    if not (source / "tokenizer.json").is_file():
        pytest.skip(f"{source}: no tokenizer.json")
    return _entry_like(source, tmp_path_factory.mktemp(f"entry-{request.param}"))


def _pair(folder: Path):
    from transformers import PreTrainedTokenizerFast

    direct = tokenizer_files.read(folder)
    assert direct is not None
    real = fill_special_tokens(PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True))
    return direct, real


def test_it_answers_as_the_transformers_tokenizer(folder):
    direct, real = _pair(folder)
    assert len(direct) == len(real) and direct.get_vocab() == real.get_vocab()
    for role in tokenizer_files.ROLES:
        assert getattr(direct, role) == getattr(real, role), role
        assert getattr(direct, f"{role}_id") == getattr(real, f"{role}_id"), role
    assert direct.special_tokens_map == real.special_tokens_map
    assert direct.all_special_tokens == real.all_special_tokens
    assert direct.all_special_ids == real.all_special_ids
    assert {i: (t.content, t.special) for i, t in direct.added_tokens_decoder.items()} == {
        i: (t.content, t.special) for i, t in real.added_tokens_decoder.items()
    }
    assert direct.clean_up_tokenization_spaces == real.clean_up_tokenization_spaces
    for text in HOSTILE:
        for specials in (False, True):
            ids = direct.encode(text, add_special_tokens=specials)
            assert ids == real.encode(text, add_special_tokens=specials), (text, specials)
            for skip in (False, True):
                assert direct.decode(ids, skip_special_tokens=skip) == real.decode(ids, skip_special_tokens=skip)
            assert direct.convert_ids_to_tokens(ids) == real.convert_ids_to_tokens(ids)
    everything = list(range(len(real)))
    assert direct.convert_ids_to_tokens(everything) == real.convert_ids_to_tokens(everything)
    assert direct.convert_ids_to_tokens(everything, skip_special_tokens=True) == real.convert_ids_to_tokens(
        everything, skip_special_tokens=True
    )
    singles = [[i] for i in everything]
    assert direct.batch_decode(singles, skip_special_tokens=False) == real.batch_decode(
        singles, skip_special_tokens=False
    )
    assert direct.decode(singles[:5]) == real.decode(singles[:5])  # a batch given to decode
    assert direct.decode(3) == real.decode(3)
    assert direct.convert_tokens_to_ids(["없는토큰", *real.all_special_tokens]) == real.convert_tokens_to_ids(
        ["없는토큰", *real.all_special_tokens]
    )


def test_what_it_does_not_do_itself_goes_to_transformers_which_then_answers_everything(folder):
    direct, real = _pair(folder)
    batch = direct(["영화 정말", "음악"], padding=True, return_tensors="np")
    expected = real(["영화 정말", "음악"], padding=True, return_tensors="np")
    assert batch["input_ids"].tolist() == expected["input_ids"].tolist()
    assert direct._real is not None  # from now on the transformers tokenizer answers
    direct.add_tokens(["새토큰"])
    real.add_tokens(["새토큰"])
    assert len(direct) == len(real) and direct.encode("새토큰 영화") == real.encode("새토큰 영화")


def test_files_it_cannot_reproduce_are_left_to_transformers(tiny_model_dir, tmp_path):
    bare = tmp_path / "no-json"
    bare.mkdir()
    (bare / "tokenizer_config.json").write_text("{}")
    assert tokenizer_files.read(bare) is None  # a slow tokenizer's folder: no tokenizer.json
    lacking = tmp_path / "lacking"
    lacking.mkdir()
    shutil.copy(tiny_model_dir / "tokenizer.json", lacking / "tokenizer.json")
    (lacking / "tokenizer_config.json").write_text("{}")  # KoGPT2's roles would be added to it
    assert tokenizer_files.read(lacking) is None
    odd = _entry_like(tiny_model_dir, tmp_path / "odd")
    config = json.loads((odd / "tokenizer_config.json").read_text())
    (odd / "tokenizer_config.json").write_text(json.dumps({**config, "add_prefix_space": True}))
    assert tokenizer_files.read(odd) is None  # a setting transformers would apply
    (odd / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "BertTokenizer"}))
    assert tokenizer_files.read(odd) is None


# -- a fresh process on a cached graph ------------------------------------------------------------
needs_ort = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx", "onnxscript")),
    reason="needs onnxruntime, onnx and onnxscript (kolyric[int8])",
)

_CHILD = r"""
import gc, json, sys
from kolyric.engine.loading import load_model, load_tokenizer

loaded = load_model(sys.argv[1], device="auto", precision=sys.argv[2])
after_load = sorted(m for m in sys.modules if m == "transformers" or m.startswith("transformers."))
import torch
from kolyric.engine.results import GenerationRequest
from kolyric.engine.settings import preset
from kolyric.engine.stream import Generator

modules = [type(o).__name__ for o in gc.get_objects() if isinstance(o, torch.nn.Module)]
prompts = ["영화 정말", "배우 연기가 </s>", "음악\n\n다시"]
from kolyric.engine.lyric.spec import LyricConstraints

rows = LyricConstraints.from_dict({"syllables": 5, "lines": 2})
def texts(loaded):
    gen = Generator(loaded)
    out = []
    for prompt in prompts:
        for name, n, constraints in (("greedy", 1, None), ("combined", 2, None), ("combined", 1, rows)):
            settings = preset(name, max_length=24, seed=3, n=n)
            request = GenerationRequest(prompt, None, settings, constraints=constraints)
            out += [[c.full_text, c.token_ids] for c in gen.generate(request).candidates]
    return out
for name, n in (("greedy", 1), ("combined", 2)):  # unconstrained (the lyric constraints' processor needs transformers)
    Generator(loaded).generate(GenerationRequest(prompts[0], None, preset(name, max_length=24, seed=3, n=n)))
after_generate = sorted(m for m in sys.modules if m == "transformers" or m.startswith("transformers."))
direct = texts(loaded)
kind = type(loaded.tokenizer).__name__
upgraded = loaded.tokenizer._real is not None
folder = loaded.tokenizer.name_or_path
loaded.tokenizer = load_tokenizer(folder)
print(json.dumps({"tokenizer": kind, "upgraded": upgraded, "after_load": after_load, "modules": modules,
                  "after_generate": after_generate,
                  "direct": direct, "transformers": texts(loaded), "model": type(loaded.model).__name__}))
"""


def _child(model_dir: Path, precision: str, cache: Path) -> dict:
    return run_child(_CHILD, str(model_dir), precision, cache=cache)


@pytest.fixture(scope="module")
def graph_cache(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model's int8 graph, built once into a cache of this module's own."""
    from kolyric.engine.loading import load_model

    cache = tmp_path_factory.mktemp("fast-start-onnx")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KOLYRIC_ONNX_CACHE", str(cache))
        mp.delenv("KOLYRIC_INT8_BACKEND", raising=False)
        loaded = load_model(str(tiny_model_dir), device="cpu", precision="int8")
    assert getattr(type(loaded.model), "kolyric_graph", False), loaded.notices
    return cache


@needs_ort
def test_a_cached_graph_starts_without_transformers_and_generates_the_same_text(tiny_model_dir, graph_cache):
    got = _child(tiny_model_dir, "int8", graph_cache)
    assert got["model"] == "OnnxLM" and got["tokenizer"] == "FastTokenizer"
    assert not got["upgraded"]  # generating, constraints included, asked nothing of transformers' tokenizer
    assert got["after_load"] == []  # neither transformers' tokenizer nor any model module: nothing of it
    assert got["after_generate"] == []  # nor does an unconstrained generation's loop
    assert got["modules"] == []  # no torch.nn.Module: no PyTorch weights
    assert got["direct"] == got["transformers"]  # text and token ids, greedy and sampled, candidate by candidate
    assert len(got["direct"]) == 12 and all(text for text, _ in got["direct"])


_APP_CHILD = r"""
import json, sys
from kolyric.app.model_slot import ModelSlot

slot = ModelSlot()
phases = []
spec, notices, seconds = slot.load(sys.argv[1], precision=sys.argv[2], progress=phases.append)
print(json.dumps({"ready": slot.ready, "tokenizer": type(slot.loaded.tokenizer).__name__, "phases": phases,
                  "transformers": sorted(m for m in sys.modules if m.split(".")[0] == "transformers"),
                  "description": slot.description}))
"""


@needs_ort
def test_the_app_is_ready_on_a_cached_graph_without_transformers(tiny_model_dir, graph_cache):
    got = run_child(_APP_CHILD, str(tiny_model_dir), "int8", cache=graph_cache)
    assert got["ready"] and got["description"].endswith("cpu int8")
    assert got["tokenizer"] == "FastTokenizer" and got["transformers"] == []
    assert not any("transformers" in phase for phase in got["phases"]), got["phases"]


@needs_ort
def test_a_damaged_tokenizer_in_the_index_is_written_again(tiny_model_dir, graph_cache, tmp_path, monkeypatch):
    from kolyric.engine import onnx_graph, onnx_model
    from kolyric.engine.loading import load_model

    monkeypatch.setenv("KOLYRIC_ONNX_CACHE", str(graph_cache))
    monkeypatch.delenv("KOLYRIC_INT8_BACKEND", raising=False)
    model_dir = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, model_dir)
    first = load_model(str(model_dir), device="cpu", precision="int8")  # indexes the copy
    assert onnx_model.is_graph_model(first.model)
    entry = onnx_graph.onnx_cache_dir() / onnx_model.INDEX / onnx_model.weights_identity(str(model_dir), None)
    (entry / "tokenizer.json").write_text('{"version": "1.0", "model": ')  # torn
    assert onnx_model.load_indexed(str(model_dir), None, "int8", lambda p: None) is None
    again = load_model(str(model_dir), device="cpu", precision="int8")  # the slow path writes the entry anew
    assert onnx_model.is_graph_model(again.model) and not again.notices
    fast = onnx_model.load_indexed(str(model_dir), None, "int8", lambda p: None)
    assert fast is not None and type(fast.tokenizer).__name__ == "FastTokenizer"
    assert fast.tokenizer.encode("영화 정말") == again.tokenizer.encode("영화 정말")


_ONNX_CHILD = r"""
import json, sys
from kolyric.engine.loading import load_model

loaded = load_model(sys.argv[1], device="cpu", precision=sys.argv[2])
print(json.dumps({"onnx": "onnx" in sys.modules, "bytes": loaded.model.weight_bytes}))
"""


@needs_ort
def test_a_cached_graph_opens_without_onnx_once_its_weight_bytes_are_noted(tiny_model_dir, graph_cache, tmp_path):
    """Opening a cached graph reads its weight bytes from meta.json, not the graph's header
    (``onnx``'s import is ~0.7 s of a start). A graph whose meta lacks them (one the PyTorch int8
    path built) is measured once and noted, so the next start imports no ``onnx`` either."""
    import json
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(graph_cache, cache)
    first = run_child(_ONNX_CHILD, str(tiny_model_dir), "int8", cache=cache)
    assert not first["onnx"] and first["bytes"] > 0
    for meta_path in cache.glob("*/meta.json"):
        meta = json.loads(meta_path.read_text())
        meta.pop("weight_bytes", None)
        meta_path.write_text(json.dumps(meta))
    measured = run_child(_ONNX_CHILD, str(tiny_model_dir), "int8", cache=cache)
    again = run_child(_ONNX_CHILD, str(tiny_model_dir), "int8", cache=cache)
    assert measured["onnx"] and not again["onnx"]
    assert measured["bytes"] == again["bytes"] == first["bytes"]


@pytest.mark.parametrize("threads", [None, "1", "2", "64"])
def test_the_session_s_threads_are_known_before_torch_as_torch_finds_them(threads):
    """The graph opens before torch is imported, with the thread count torch will report (a
    wrong guess costs a second opening, not a wrong count)."""
    code = (
        "import sys\nfrom kolyric.engine import onnx_model\nguess = onnx_model._session_threads()\n"
        "assert 'torch' not in sys.modules\nimport torch\nprint(guess, torch.get_num_threads())"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads is not None:
        env["OMP_NUM_THREADS"] = threads
    done = subprocess.run(
        [sys.executable, "-c", code], env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    guess, torch_threads = done.stdout.split()
    assert guess == torch_threads


def test_tokens_the_config_lists_but_the_tokenizer_lacks_are_left_to_transformers(tiny_model_dir, tmp_path):
    folder = _entry_like(tiny_model_dir, tmp_path / "entry")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokenizer_files.read(folder) is not None
    extra = {**config, "extra_special_tokens": ["<새특수>"]}  # transformers would add it to the vocabulary
    (folder / "tokenizer_config.json").write_text(json.dumps(extra))
    assert tokenizer_files.read(folder) is None
    listed = {**config, "added_tokens_decoder": {"99999": {"content": "<없음>", "special": True}}}
    (folder / "tokenizer_config.json").write_text(json.dumps(listed))
    assert tokenizer_files.read(folder) is None
