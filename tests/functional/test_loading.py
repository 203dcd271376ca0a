"""Model loading through every path a user can name, and every way it can fail."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kolyric.engine.loading import ModelLoadError, best_checkpoint, hub_unreachable_reason, load_model, read_checkpoint


def _ratsnlp_checkpoint(model_dir: Path, path: Path, extra: dict | None = None) -> Path:
    """A checkpoint laid out like the tutorial's (ratsnlp GenerationTask under Lightning):
    `state_dict` keys prefixed `model.`, plus Lightning's bookkeeping and a pickled object of
    a class that does not exist on this machine (ratsnlp's argument dataclass)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():  # make the weights differ from the base, so loading is observable
        model.transformer.wte.weight.mul_(2.0)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    # GPT-2's causal-mask buffers, as older transformers saved them
    state["model.transformer.h.0.attn.bias"] = torch.ones(1, 1, 8, 8)
    ckpt = {
        "epoch": 1,
        "global_step": 100,
        "pytorch-lightning_version": "1.3.4",
        "state_dict": state,
        "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(2.29)}},
        "optimizer_states": [],
        "lr_schedulers": [{"gamma": 0.9, "last_epoch": 1}],
    }
    ckpt.update(extra or {})
    torch.save(ckpt, path)
    return path


class GenerationTrainArguments:  # stands in for ratsnlp's class; removed before loading
    def __init__(self):
        self.max_seq_length = 32


def test_directory_in_save_pretrained_layout(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir), device="cpu")
    assert loaded.kind == "directory"
    assert loaded.tokenizer.eos_token == "</s>" and loaded.tokenizer.pad_token == "<pad>"
    assert "params" in loaded.description and "cpu" in loaded.description


def test_hub_layout_gets_kogpt2_special_tokens(tiny_hub_layout_dir):
    """skt/kogpt2-base-v2 ships a bare tokenizer.json: roles come from KoGPT2's convention."""
    loaded = load_model(str(tiny_hub_layout_dir), device="cpu")
    tok = loaded.tokenizer
    assert (tok.bos_token, tok.eos_token, tok.unk_token, tok.pad_token, tok.mask_token) == (
        "</s>",
        "</s>",
        "<unk>",
        "<pad>",
        "<mask>",
    )


def test_ratsnlp_checkpoint_over_its_base(tiny_model_dir, tmp_path):
    ckpt = _ratsnlp_checkpoint(
        tiny_model_dir,
        tmp_path / "epoch=1-val_loss=2.29.ckpt",
        {"hyper_parameters": {"args": GenerationTrainArguments()}},
    )
    base = load_model(str(tiny_model_dir), device="cpu")
    loaded = load_model(str(ckpt), base=str(tiny_model_dir), device="cpu")
    assert loaded.kind == "checkpoint"
    assert torch.allclose(loaded.model.transformer.wte.weight, base.model.transformer.wte.weight * 2)
    # the output head is tied to the embedding, as in the base model
    assert loaded.model.lm_head.weight.data_ptr() == loaded.model.transformer.wte.weight.data_ptr()


def test_unknown_pickled_classes_are_never_imported_or_run(tiny_model_dir, tmp_path):
    """A class that is gone (or hostile) inside the checkpoint becomes an inert stub."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    ckpt = _ratsnlp_checkpoint(
        tiny_model_dir, tmp_path / "epoch=0-val_loss=3.00.ckpt", {"hyper_parameters": {"evil": Evil()}}
    )
    try:
        load_model(str(ckpt), base=str(tiny_model_dir), device="cpu")
    except ModelLoadError:
        pass  # refusing is fine too; running the payload is not
    assert not marker.exists()


def test_directory_of_checkpoints_picks_lowest_val_loss(tiny_model_dir, tmp_path):
    for name in ("epoch=0-val_loss=3.10.ckpt", "epoch=2-val_loss=2.29.ckpt", "epoch=1-val_loss=2.51.ckpt"):
        _ratsnlp_checkpoint(tiny_model_dir, tmp_path / name)
    (tmp_path / "last.ckpt").write_bytes((tmp_path / "epoch=0-val_loss=3.10.ckpt").read_bytes())
    assert best_checkpoint(tmp_path).name == "epoch=2-val_loss=2.29.ckpt"
    loaded = load_model(str(tmp_path), base=str(tiny_model_dir), device="cpu")
    assert any("epoch=2-val_loss=2.29.ckpt" in n for n in loaded.notices)


def test_checkpoint_that_does_not_fit_names_the_differences(tiny_model_dir, tiny_bytelevel_dir, tmp_path):
    ckpt = _ratsnlp_checkpoint(tiny_model_dir, tmp_path / "epoch=0-val_loss=1.00.ckpt")
    with pytest.raises(ModelLoadError) as info:
        load_model(str(ckpt), base=str(tiny_bytelevel_dir), device="cpu")
    message = str(info.value)
    assert str(ckpt) in message and "transformer.wte.weight" in message and "shape" in message


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken zip"])
def test_corrupt_checkpoint(tmp_path, content):
    path = tmp_path / "epoch=0-val_loss=1.00.ckpt"
    path.write_bytes(content)
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        load_model(str(path), device="cpu")
    assert str(path) in str(info.value)
    assert time.monotonic() - started < 5


def test_truncated_checkpoint(tiny_model_dir, tmp_path):
    good = _ratsnlp_checkpoint(tiny_model_dir, tmp_path / "good.ckpt")
    bad = tmp_path / "epoch=0-val_loss=1.00.ckpt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match=re.escape("epoch=0-val_loss=1.00.ckpt")):
        read_checkpoint(bad)


def test_missing_path_and_empty_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model(str(tmp_path / "nope"), device="cpu")
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load_model(str(tmp_path), device="cpu")


def test_wrong_model_type(tmp_path):
    from transformers import T5Config, T5Model

    T5Model(T5Config(vocab_size=50, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)).save_pretrained(
        tmp_path / "t5"
    )
    with pytest.raises(ModelLoadError) as info:
        load_model(str(tmp_path / "t5"), device="cpu")
    assert "t5" in str(info.value) and "not a causal language model" in str(info.value)


def test_encoder_weights_are_not_silently_made_a_generator(tmp_path):
    """BERT has a causal-LM class in transformers, but its encoder checkpoint lacks that head."""
    from transformers import BertConfig, BertModel

    BertModel(
        BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    ).save_pretrained(tmp_path / "bert")
    with pytest.raises(ModelLoadError) as info:
        load_model(str(tmp_path / "bert"), device="cpu")
    assert "bert" in str(info.value) and "missing" in str(info.value)


def test_hub_id_offline_fails_fast_with_the_id(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        load_model("someone/not-cached-model", device="cpu")
    assert "someone/not-cached-model" in str(info.value)
    assert time.monotonic() - started < 5


def test_unreachable_probe_is_bounded(monkeypatch):
    """A network that never answers (name resolution or connect hanging) costs the timeout, no more."""
    import socket

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def hang(*args, **kwargs):
        time.sleep(30)

    monkeypatch.setattr(socket, "create_connection", hang)
    started = time.monotonic()
    reason = hub_unreachable_reason(timeout=1.0)
    assert reason is not None and "did not answer" in reason
    assert time.monotonic() - started < 3


def test_cli_without_network_says_what_is_missing(tmp_path):
    """`unshare -n`: no network at all, and no HF_HUB_OFFLINE hint either."""
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -n is not available here")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty cache
    started = time.monotonic()
    proc = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "kolyric", "generate", "사랑", "--model", "skt/kogpt2-base-v2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "skt/kogpt2-base-v2" in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - started < 30


def test_safetensors_preferred_and_no_remote_code(tiny_model_dir):
    names = {p.name for p in Path(tiny_model_dir).iterdir()}
    assert "model.safetensors" in names and "pytorch_model.bin" not in names
    source = (Path(__file__).parents[2] / "kolyric/engine/loading.py").read_text()
    assert "trust_remote_code=True" not in source and "weights_only=False" not in source
