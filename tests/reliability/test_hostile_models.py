"""Lying and damaged models end in one line naming the file.

- a config asking for more parameters than memory holds is refused before anything is allocated;
- a tokenizer with more ids than the model's embedding has rows is refused at load;
- kolyric's own checkpoints carry a digest of their weights: a flipped bit (in the file's own
  bytes, as a bad disk or copy makes it) is refused by name, and a folder whose best checkpoint
  is damaged falls back to the next one with a notice;
- tokenizer errors name tokenizer.json, shape mismatches list the tensors, a symbolic link loop
  is called one, and ``--device meta`` is one line.

The hostile files are built in fixtures from the suite's tiny real models and a real tiny
training run."""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import zipfile
from pathlib import Path

import pytest
import torch

from kolyric.engine.integrity import (
    WEIGHTS_DIGEST_KEY,
    estimate_parameters,
    size_refusal,
    vocab_refusal,
    weights_digest,
)
from kolyric.engine.loading import CorruptCheckpoint, ModelLoadError, load_model

from tests.reliability._util import count


def refused(spec, **kwargs) -> str:
    count("hostile models: refusals")
    with pytest.raises(ModelLoadError) as info:
        load_model(str(spec), device=kwargs.pop("device", "cpu"), **kwargs)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message and len(message) < 700, message
    return message


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A real (tiny) `kolyric train` run: a best checkpoint and last.ckpt, both kolyric's own."""
    from kolyric.training.events import EventWriter
    from kolyric.training.run import TrainConfig, train

    from tests.tiny_runs import TINY_TRAIN

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run") / "out"
    config = TrainConfig(
        out=str(out), **{**TINY_TRAIN, "limit_train": 96, "limit_val": 32, "epochs": 2, "log_every_s": 0}
    )
    result = train(config, EventWriter(io.StringIO(), None), None)
    assert result.best_ckpt is not None and (out / "last.ckpt").is_file()
    return out, Path(result.best_ckpt)


def flip_a_bit(ckpt: Path, *, smallest: bool = False) -> str:
    """Flip one exponent bit of a model weight, in place, in the checkpoint's zip bytes (torch
    stores tensors uncompressed), as a bad disk or copy would: the zip directory is untouched.
    Returns the weight's name."""
    weights = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    by_bytes = {
        t.contiguous().view(torch.uint8).numpy().tobytes(): name for name, t in weights.items() if t.numel() >= 16
    }
    with zipfile.ZipFile(ckpt) as archive:
        found = [
            (info.file_size, by_bytes[data], info)
            for info in archive.infolist()
            if "/data/" in info.filename and (data := archive.read(info)) in by_bytes
        ]
    _size, name, info = min(found) if smallest else max(found)
    with open(ckpt, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
        at = info.header_offset + 30 + name_len + extra_len + 3  # the high byte of the first float32
        f.seek(at)
        byte = f.read(1)[0]
        f.seek(at)
        f.write(bytes([byte ^ 0x40]))
    return name


# -- item 6: sizes --------------------------------------------------------------------------------------
def test_the_estimate_matches_real_models(tiny_model_dir):
    from transformers import AutoConfig, GPT2Config

    loaded = load_model(str(tiny_model_dir), device="cpu")
    estimate = estimate_parameters(AutoConfig.from_pretrained(tiny_model_dir))
    assert abs(estimate - loaded.n_params) / loaded.n_params < 0.05
    assert abs(estimate_parameters(GPT2Config()) - 124_439_808) / 124_439_808 < 0.01  # GPT-2 small
    assert size_refusal(GPT2Config(), "x", available=600 * 10**6) is None
    assert "more than the 0.4 GB" in size_refusal(GPT2Config(), "x", available=400 * 10**6)


def test_a_config_too_big_for_memory_is_refused_before_allocating(tiny_model_dir, tmp_path):
    import psutil

    folder = tmp_path / "liar"
    shutil.copytree(tiny_model_dir, folder)
    edit_config(folder, n_embd=65536, n_layer=4096, n_head=64)  # ~5e13 parameters
    rss = psutil.Process().memory_info().rss
    started = time.monotonic()
    message = refused(folder)
    assert message.startswith(f"{folder}: its config.json describes a model of about ")
    assert "parameters" in message and "memory available" in message and "refusing" in message
    assert time.monotonic() - started < 10
    assert psutil.Process().memory_info().rss - rss < 300 * 2**20


def test_a_checkpoint_whose_own_config_is_too_big_is_refused(run_folder, tmp_path):
    _, best = run_folder
    data = torch.load(best, map_location="cpu", weights_only=True)
    data["kolyric"]["config"].update(n_embd=65536, n_layer=4096, n_head=64)
    liar = tmp_path / "liar.ckpt"
    torch.save(data, liar)
    message = refused(liar)
    assert message.startswith(f"{liar}: its config describes a model of about ") and "memory" in message


def test_a_tokenizer_bigger_than_the_vocabulary_is_refused_at_load(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "small-vocab"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.resize_token_embeddings(500)  # weights and config agree, the tokenizer (1,200+ ids) does not
    model.save_pretrained(folder)
    shutil.copy(tiny_model_dir / "tokenizer.json", folder / "tokenizer.json")
    message = refused(folder)
    assert "tokenizer.json" in message and "500 rows" in message and "would crash generation" in message
    loaded = load_model(str(tiny_model_dir), device="cpu")
    assert vocab_refusal(loaded.model, loaded.tokenizer) is None

    from tests.reliability.test_fuzz_cli import run_main

    code, out, err = run_main(["generate", "사랑", "--model", str(folder), "--max-length", "3"])
    assert code == 2 and out == "" and "Traceback" not in err and len(err.strip().splitlines()) == 1


# -- item 6: the digest, a flipped bit, a damaged best checkpoint ------------------------------------------
def test_kolyric_checkpoints_carry_a_digest_of_their_weights(run_folder):
    out, best = run_folder
    for ckpt in (best, out / "last.ckpt"):
        data = torch.load(ckpt, map_location="cpu", weights_only=True)
        stored = data[WEIGHTS_DIGEST_KEY]
        assert stored == weights_digest(data["state_dict"]) and stored["tensors"] == len(data["state_dict"])
    load_model(str(best), device="cpu")


def test_checkpoints_written_before_digests_still_load(run_folder, tmp_path):
    """A kolyric checkpoint from before the digest (no ``kolyric_weights`` key) loads, unchanged."""
    _, best = run_folder
    data = torch.load(best, map_location="cpu", weights_only=True)
    del data[WEIGHTS_DIGEST_KEY]
    older = tmp_path / best.name
    torch.save(data, older)
    loaded = load_model(str(older), device="cpu")
    own = loaded.model.state_dict()
    for name, tensor in data["state_dict"].items():
        assert torch.equal(own[name.removeprefix("model.")], tensor), name


def test_a_flipped_bit_is_refused_naming_the_file(run_folder, tmp_path):
    _, best = run_folder
    for smallest in (False, True):  # the biggest weight and a small one
        damaged = tmp_path / f"flipped-{smallest}.ckpt"
        shutil.copy(best, damaged)
        name = flip_a_bit(damaged, smallest=smallest)
        flipped = torch.load(damaged, map_location="cpu", weights_only=True)["state_dict"][name]
        assert flipped.abs().max() > 1e30  # what loaded silently before: a weight of ~5e36
        with pytest.raises(CorruptCheckpoint):
            load_model(str(damaged), device="cpu")
        message = refused(damaged)
        assert message.startswith(f"{damaged}: ") and "digest" in message and "damaged" in message


def test_a_folder_whose_best_checkpoint_is_damaged_falls_back_with_a_notice(run_folder, tmp_path):
    out, best = run_folder
    folder = tmp_path / "run"
    shutil.copytree(out, folder, ignore=shutil.ignore_patterns("model"))
    flip_a_bit(folder / best.name)
    loaded = load_model(str(folder), device="cpu")
    assert loaded.source == str(folder / "last.ckpt")
    skipped = [n for n in loaded.notices if n.startswith("skipped a damaged checkpoint")]
    assert len(skipped) == 1 and best.name in skipped[0] and "digest" in skipped[0]
    assert loaded.notices[-1] == f"chose last.ckpt (the best one left in {folder})"
    # torn too: a copy cut short
    (folder / "last.ckpt").write_bytes((folder / "last.ckpt").read_bytes()[:5000])
    message = refused(folder)
    assert "all 2 checkpoints are damaged" in message and best.name in message


def test_a_torn_best_checkpoint_falls_back_too(run_folder, tmp_path):
    out, best = run_folder
    folder = tmp_path / "torn"
    shutil.copytree(out, folder, ignore=shutil.ignore_patterns("model"))
    (folder / best.name).write_bytes((folder / best.name).read_bytes()[:3000])
    loaded = load_model(str(folder), device="cpu")
    assert loaded.source.endswith("last.ckpt") and any(best.name in n for n in loaded.notices)


# -- item 8: words that say what is wrong -------------------------------------------------------------------
@pytest.mark.parametrize(
    "damage, expected",
    [
        ("missing", "no tokenizer.json"),
        ("garbage", "tokenizer.json: not a usable tokenizer"),
        ("empty-object", "tokenizer.json: not a usable tokenizer"),
        ("binary", "tokenizer.json: not a usable tokenizer"),
        ("truncated", "tokenizer.json: not a usable tokenizer"),
        ("folder", "tokenizer.json: a folder"),
    ],
)
def test_tokenizer_errors_name_tokenizer_json(tiny_model_dir, tmp_path, damage, expected):
    folder = tmp_path / damage
    shutil.copytree(tiny_model_dir, folder)
    target = folder / "tokenizer.json"
    original = target.read_bytes()
    if damage == "missing":
        for name in os.listdir(folder):
            if name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
                (folder / name).unlink()
    elif damage == "folder":
        target.unlink()
        target.mkdir()
    else:
        target.write_bytes(
            {"garbage": b"{garbage", "empty-object": b"{}", "binary": b"\xff\xfe\x00\x01", "truncated": original[:400]}[
                damage
            ]
        )
    assert expected in refused(folder)


def test_shape_mismatches_list_the_tensors(tiny_model_dir, tmp_path):
    folder = tmp_path / "wrong-shape"
    shutil.copytree(tiny_model_dir, folder)
    edit_config(folder, vocab_size=1000)
    message = refused(folder)
    assert "above report" not in message
    assert "transformer.wte.weight" in message and "vs (1000, 64)" in message and "config.json" in message


def test_a_symlink_loop_is_called_one(tmp_path, monkeypatch):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    monkeypatch.chdir(tmp_path)
    for spec in (str(tmp_path / "a"), "a", "b", "a/model"):
        assert "loop of symbolic links" in refused(spec), spec
    assert "symbolic link to" in refused("dangling") and "does not exist" in refused("dangling")


@pytest.mark.parametrize("device", ["meta", "bogus", "cuda:x", ""])
def test_devices_that_cannot_run_a_model_are_one_line(tiny_model_dir, device):
    message = refused(tiny_model_dir, device=device)
    assert message.startswith(f"{tiny_model_dir}: cannot use device {device!r}: ") and "use cpu, cuda" in message
