"""Untrusted model files: nothing in a checkpoint or a model folder is ever executed, and a
checkpoint that does not fit is refused with the names that differ.

Each payload, if it ran, would create a marker file; the marker must never exist, whether
kolyric refuses the file (ModelLoadError) or loads the weights around the payload."""

from __future__ import annotations

import builtins
import json
import os
import pickle
import shutil
import time
from pathlib import Path

import pytest
import torch

from kolyric.engine.loading import CHECKPOINT_META_KEY, ModelLoadError, load_model, read_checkpoint

from tests.reliability._util import count


class Payload:
    """Pickles as a call that creates ``marker`` (os.system or exec, as real exploits do)."""

    def __init__(self, marker: Path, how: str = "system"):
        self.marker, self.how = marker, how

    def __reduce__(self):
        if self.how == "system":
            return (os.system, (f"touch {self.marker}",))
        if self.how == "exec":
            return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))
        return (eval, (f"__import__('pathlib').Path({str(self.marker)!r}).touch()",))


def attempt(spec: Path, marker: Path, **kwargs) -> str:
    """Load ``spec``; 'refused' or 'loaded' — and the payload never ran."""
    count("untrusted files: load attempts")
    started = time.monotonic()
    try:
        load_model(str(spec), device="cpu", **kwargs)
        outcome = "loaded"
    except ModelLoadError as exc:
        assert str(spec) in str(exc) or spec.name in str(exc), str(exc)
        outcome = "refused"
    assert not marker.exists(), f"{spec}: the payload ran"
    assert time.monotonic() - started < 60
    return outcome


def copy_model(src: Path, dst: Path, *, weights: bool = True) -> Path:
    shutil.copytree(src, dst)
    if not weights:
        (dst / "model.safetensors").unlink()
    return dst


@pytest.mark.parametrize("how", ["system", "exec", "eval"])
def test_malicious_pickle_as_pytorch_model_bin(tiny_model_dir, tmp_path, how):
    marker = tmp_path / "pwned"
    model = copy_model(tiny_model_dir, tmp_path / "model", weights=False)
    # 1: the whole file is a plain (legacy, non-zip) pickle of the payload
    (model / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker, how)))
    assert attempt(model, marker) == "refused"
    # 2: a real torch.save file: genuine weights, and the payload beside them
    from transformers import AutoModelForCausalLM

    state = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    torch.save({**state, "extra": Payload(marker, how)}, model / "pytorch_model.bin")
    assert attempt(model, marker) == "refused"


@pytest.mark.parametrize("how", ["system", "exec", "eval"])
def test_ckpt_with_reduce_payloads(tiny_model_dir, tmp_path, how):
    marker = tmp_path / "pwned"
    from transformers import AutoModelForCausalLM

    state = {f"model.{k}": v for k, v in AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict().items()}
    cases = {
        "top-level.ckpt": Payload(marker, how),  # the checkpoint itself is the payload
        "in-state-dict.ckpt": {"state_dict": {**state, "model.evil": Payload(marker, how)}},
        "in-callbacks.ckpt": {"state_dict": state, "callbacks": {"x": [Payload(marker, how)]}},
        "in-meta.ckpt": {"state_dict": state, CHECKPOINT_META_KEY: {"config": Payload(marker, how)}},
    }
    for name, obj in cases.items():
        path = tmp_path / name
        torch.save(obj, path)
        attempt(path, marker, base=str(tiny_model_dir))
        try:
            read_checkpoint(path)
        except ModelLoadError:
            pass
        assert not marker.exists(), name
    # a raw pickle (not torch's zip format) named .ckpt
    raw = tmp_path / "raw.ckpt"
    raw.write_bytes(pickle.dumps({"state_dict": Payload(marker, how)}))
    assert attempt(raw, marker, base=str(tiny_model_dir)) == "refused"


def _write_remote_code(folder: Path, marker: Path) -> None:
    code = f"open({str(marker)!r}, 'w').close()\n"
    for name in ("configuration_evil.py", "modeling_evil.py", "tokenization_evil.py"):
        (folder / name).write_text(code + "class EvilConfig: pass\nclass EvilModel: pass\nclass EvilTokenizer: pass\n")


def test_config_auto_map_and_remote_code_are_never_run(tiny_model_dir, tmp_path):
    marker = tmp_path / "pwned"
    auto_map = {"AutoConfig": "configuration_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.EvilModel"}
    # a known model type with an auto_map: the built-in GPT-2 class is used, the files ignored
    known = copy_model(tiny_model_dir, tmp_path / "known")
    _write_remote_code(known, marker)
    config = json.loads((known / "config.json").read_text())
    (known / "config.json").write_text(json.dumps({**config, "auto_map": auto_map}))
    tok_config = json.loads((known / "tokenizer_config.json").read_text())
    (known / "tokenizer_config.json").write_text(
        json.dumps({**tok_config, "auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}})
    )
    assert attempt(known, marker) == "loaded"
    # a model type transformers does not know: only remote code could build it -> refused
    unknown = copy_model(tiny_model_dir, tmp_path / "unknown")
    _write_remote_code(unknown, marker)
    (unknown / "config.json").write_text(
        json.dumps({**config, "model_type": "evil", "auto_map": auto_map, "architectures": ["EvilModel"]})
    )
    assert attempt(unknown, marker) == "refused"
    # a tokenizer that names a custom class only remote code provides
    tok = copy_model(tiny_model_dir, tmp_path / "tok")
    _write_remote_code(tok, marker)
    (tok / "tokenizer_config.json").write_text(
        json.dumps(
            {
                **tok_config,
                "tokenizer_class": "EvilTokenizer",
                "auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]},
            }
        )
    )
    attempt(tok, marker)
    # a kolyric checkpoint whose embedded config asks for remote code
    loaded = load_model(str(tiny_model_dir), device="cpu")
    state = {f"model.{k}": v for k, v in loaded.model.state_dict().items()}
    for model_type in ("gpt2", "evil"):
        meta = {
            "config": {**loaded.model.config.to_dict(), "model_type": model_type, "auto_map": auto_map},
            "tokenizer_json": loaded.tokenizer.backend_tokenizer.to_str(),
            "special_tokens": {},
            "base": None,
        }
        path = tmp_path / f"meta-{model_type}.ckpt"
        torch.save({"state_dict": state, CHECKPOINT_META_KEY: meta}, path)
        assert attempt(path, marker) == ("loaded" if model_type == "gpt2" else "refused")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\xff" * 16,
        (2**63).to_bytes(8, "little") + b"{}",
        (100).to_bytes(8, "little") + b'{"a": {"dtype": "F32", "shape": [99999999999],'
        b' "data_offsets": [0, 4]}}' + b" " * 40,
    ],
)
def test_corrupt_safetensors_is_refused_fast(tiny_model_dir, tmp_path, content):
    model = copy_model(tiny_model_dir, tmp_path / "model")
    (model / "model.safetensors").write_bytes(content)
    assert attempt(model, tmp_path / "never") == "refused"


def test_checkpoint_that_does_not_fit_names_missing_unexpected_and_shapes(tiny_model_dir, tmp_path):
    loaded = load_model(str(tiny_model_dir), device="cpu")
    state = {f"model.{k}": v.clone() for k, v in loaded.model.state_dict().items()}
    state["model.transformer.h.0.mlp.c_fc.renamed"] = state.pop("model.transformer.h.0.mlp.c_fc.weight")
    state["model.transformer.h.9.attn.c_attn.weight"] = torch.zeros(2, 2)
    state["model.transformer.ln_f.weight"] = torch.ones(7)
    path = tmp_path / "epoch=0-val_loss=1.00.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ModelLoadError) as info:
        load_model(str(path), base=str(tiny_model_dir), device="cpu")
    message = str(info.value)
    count("untrusted files: load attempts")
    assert str(path) in message and "does not fit" in message
    assert "missing: transformer.h.0.mlp.c_fc.weight" in message
    assert "transformer.h.0.mlp.c_fc.renamed" in message and "transformer.h.9.attn.c_attn.weight" in message
    assert "transformer.ln_f.weight (7,) vs (64,)" in message
    # tutorial naming (model. prefix) and bare names are both understood: a bare, fitting one loads
    bare = tmp_path / "bare.ckpt"
    torch.save(dict(loaded.model.state_dict()), bare)
    assert load_model(str(bare), base=str(tiny_model_dir), device="cpu").kind == "checkpoint"
