"""Real tiny trainings on slices of the NSMC sample: checkpoints, export, resume, cancel, events, CLI.

Shapes are tiny (2 layers × 64) and slices short, so each run takes a few seconds on 2 cores.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kolyric.engine.loading import CHECKPOINT_META_KEY, load_model
from kolyric.training.events import CancelToken, EventWriter, ProgressCallback
from kolyric.training.run import TrainConfig, train

from tests.conftest import ROOT
from tests.tiny_runs import TINY_RUN, TINY_TRAIN, flags

TINY = {
    **TINY_TRAIN,
    "limit_train": 640,
    "limit_val": 128,
    "vocab_size": 600,
    "n_layer": 2,
    "n_embd": 64,
    "epochs": 3,
    "log_every_s": 0,
}


def steps_per_epoch(events) -> int:
    """Batches of 32 in an epoch: rows, not reviews, since a review longer than a row is windowed."""
    rows = [e for e in events if e.get("phase") == "tokenize" and "rows" in e][-1]["rows"]
    assert rows >= 640
    return -(-rows // 32)


CLI_TINY = flags(TINY_RUN)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(out: Path, cancel: CancelToken | None = None, writer: EventWriter | None = None, **overrides):
    """Train in this process; returns the result and the events as parsed from the JSON lines."""
    stream = io.StringIO()
    writer = writer or EventWriter(stream, None)
    writer.stream = stream
    result = train(TrainConfig(out=str(out), **{**TINY, **overrides}), writer, cancel)
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    return result, events


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("scratch") / "out"
    result, events = run(out)
    return out, result, events


def of(events, kind):
    return [e for e in events if e["event"] == kind]


# -- one run from scratch, looked at from every side -------------------------------------------------
def test_best_checkpoint_is_named_by_val_loss_and_loads(scratch):
    out, result, _ = scratch
    best = list(out.glob("epoch=*-val_loss=*.ckpt"))
    assert best == [result.best_ckpt]  # save_top_k=1
    assert best[0].name.startswith("epoch=2-val_loss=")
    assert (out / "last.ckpt").is_file() and result.last_ckpt == out / "last.ckpt"
    assert not list(out.glob(".*.tmp"))  # no temp files left by the atomic writer
    loaded = load_model(result.best_ckpt, device="cpu")  # no base needed: the checkpoint carries it
    assert loaded.kind == "checkpoint"
    assert load_model(out, device="cpu").notices[-1].startswith(f"chose {best[0].name}")


def test_checkpoint_layout_matches_the_tutorial(scratch):
    _, result, events = scratch
    data = torch.load(result.best_ckpt, map_location="cpu", weights_only=True)
    assert data["state_dict"] and all(k.startswith("model.") for k in data["state_dict"])
    meta = data[CHECKPOINT_META_KEY]
    assert meta["base"] is None and meta["config"]["model_type"] == "gpt2"
    assert data["global_step"] == 3 * steps_per_epoch(events)


def test_val_loss_falls_epoch_by_epoch(scratch):
    _, _, events = scratch
    losses = [e["val_loss"] for e in of(events, "val")]
    assert len(losses) == 3
    assert losses[0] > losses[1] > losses[2], losses


def test_export_loads_with_plain_transformers_and_matches_the_best_checkpoint(scratch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, result, _ = scratch
    export = out / "model"
    assert result.export_dir == export
    assert (export / "model.safetensors").is_file() and (export / "tokenizer.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(export).eval()
    tokenizer = AutoTokenizer.from_pretrained(export)
    assert tokenizer.eos_token == "</s>" and tokenizer.pad_token == "<pad>"
    ids = tokenizer("긍정 이 영화", return_tensors="pt", add_special_tokens=False)["input_ids"]
    best = load_model(result.best_ckpt, device="cpu").model
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, best(ids).logits, atol=1e-5)
    assert load_model(export, device="cpu").kind == "directory"


def test_events_are_json_lines_with_the_documented_fields(scratch):
    out, result, events = scratch
    phases = [e["phase"] for e in of(events, "phase")]
    for phase in ("corpus", "tokenizer", "model", "tokenize", "train", "export"):
        assert phase in phases
    assert all(isinstance(e["time"], float) for e in events)
    steps = of(events, "step")
    STEPS_PER_EPOCH = steps_per_epoch(events)
    assert steps[0]["step"] == 1 and steps[-1]["step"] == 3 * STEPS_PER_EPOCH
    for key in ("step", "total_steps", "epoch", "loss", "lr", "tokens_per_s", "eta_s"):
        assert key in steps[-1]
    assert steps[-1]["total_steps"] == 3 * STEPS_PER_EPOCH and steps[-1]["eta_s"] == 0
    assert steps[-1]["tokens_per_s"] > 0
    assert [e["epoch"] for e in of(events, "val")] == [0, 1, 2]
    kinds = {e["kind"] for e in of(events, "checkpoint")}
    assert kinds == {"best", "last", "export"}
    finished = events[-1]
    assert finished["event"] == "finished" and finished["cancelled"] is False
    assert finished["best_ckpt"] == str(result.best_ckpt) and finished["export_dir"] == str(out / "model")
    assert finished["val_loss"] == pytest.approx(of(events, "val")[-1]["val_loss"], abs=1e-4)
    assert not of(events, "error")


# -- resume, cancel, fine-tune ---------------------------------------------------------------------------
def test_resume_continues_the_step_count(scratch, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(scratch[0], out)
    torn = out / ".last.ckpt.x7q2.tmp"  # what a run killed mid-save leaves: swept, with a warning
    torn.write_bytes(b"PK\x03\x04 torn")
    os.utime(torn, (time.time() - 3600,) * 2)
    result, events = run(out, resume="last", epochs=4)
    STEPS_PER_EPOCH = steps_per_epoch(scratch[2])
    assert not torn.exists()
    assert any(".last.ckpt.x7q2.tmp" in e.get("message", "") for e in of(events, "phase"))
    steps = [e["step"] for e in of(events, "step")]
    assert steps[0] == 3 * STEPS_PER_EPOCH + 1 and steps[-1] == 4 * STEPS_PER_EPOCH
    assert torch.load(result.last_ckpt, weights_only=True)["global_step"] == 4 * STEPS_PER_EPOCH
    assert [e["epoch"] for e in of(events, "val")] == [3]


def test_a_cancel_request_stops_at_the_next_step_and_leaves_a_loadable_checkpoint(tmp_path):
    cancel = CancelToken()

    class CancelAfterTwoSteps(EventWriter):
        def emit(self, event, **fields):
            record = super().emit(event, **fields)
            if event == "step" and fields["step"] == 2:
                cancel.cancel("test")
            return record

    out = tmp_path / "out"
    result, events = run(out, cancel, CancelAfterTwoSteps())
    assert result.cancelled and result.best_ckpt is None
    data = torch.load(out / "last.ckpt", weights_only=True)
    assert data["global_step"] == 3 and data["epoch"] == 0  # mid-epoch: a resume finishes the epoch
    assert [e["kind"] for e in of(events, "checkpoint")] == ["interrupted", "export"]
    assert events[-1]["event"] == "finished" and events[-1]["cancelled"] is True
    load_model(out / "last.ckpt", device="cpu")
    result, events = run(out, resume="last", epochs=1)
    assert of(events, "step")[0]["step"] == 4 and of(events, "step")[-1]["step"] == steps_per_epoch(events)


def test_fine_tuning_a_model_directory(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    result, events = run(
        out, from_scratch=False, model=str(tiny_model_dir), epochs=1, limit_train=128, lr=1e-3, group_by_length=False
    )
    assert result.best_ckpt is not None
    meta = torch.load(result.best_ckpt, weights_only=True)[CHECKPOINT_META_KEY]
    assert meta["base"] == str(tiny_model_dir)
    assert "tokenizer" not in [e.get("phase") for e in events]
    load_model(result.best_ckpt, device="cpu")


def test_a_diverging_run_skips_bad_steps_then_stops_with_an_error(tmp_path, monkeypatch):
    import kolyric.training.scratch as scratch_module

    real_new_model = scratch_module.new_model

    def nan_model(*args, **kwargs):
        model = real_new_model(*args, **kwargs)
        forward = model.forward

        def poisoned(*a, **k):
            output = forward(*a, **k)
            if model.training and output.loss is not None:
                output.loss = output.loss * float("nan")
            return output

        model.forward = poisoned
        return model

    monkeypatch.setattr(scratch_module, "new_model", nan_model)
    monkeypatch.setattr(ProgressCallback, "MAX_NONFINITE_STREAK", 4)
    result, events = run(tmp_path / "out", epochs=1)
    assert result.diverged and result.cancelled
    assert result.metrics["skipped_steps"] == 4
    assert "training diverged" in of(events, "error")[0]["message"]
    warnings = [e for e in of(events, "phase") if e["phase"] == "warning" and "non-finite" in e["message"]]
    assert len(warnings) == 1 and warnings[0]["step"] >= 0  # once per streak, not per step


def test_user_file_corpus_with_skipped_rows(tmp_path):
    from tests.conftest import nsmc_rows

    rows = [
        json.dumps({"text": t, "polarity": "긍정" if y else "부정"}, ensure_ascii=False)
        for t, y in nsmc_rows("train", 300)
    ]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(rows[:100] + ["not json", '{"text": ""}'] + rows[100:]) + "\n", encoding="utf-8")
    result, events = run(
        tmp_path / "out",
        corpus=str(path),
        limit_train=None,
        limit_val=None,
        epochs=1,
        skip_bad_rows=True,
        val_share=0.1,
    )
    corpus = next(e for e in of(events, "phase") if e["phase"] == "corpus" and "train" in e)
    assert (corpus["train"], corpus["val"], corpus["skipped"]) == (270, 30, 2)
    assert "skipped 2 malformed row(s)" in corpus["message"]
    assert result.best_ckpt is not None


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    from kolyric.training.events import AtomicCheckpointIO

    saved = []
    io_ = AtomicCheckpointIO(saved.append)
    path = tmp_path / "last.ckpt"
    io_.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    good = path.read_bytes()

    def crash(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="No space left"):
        io_.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    assert path.read_bytes() == good  # the good file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # and no temp file is left
    assert saved == [path]


# -- the command line --------------------------------------------------------------------------------------
def test_cli_reports_every_invalid_setting_with_its_flag(tmp_path, capsys):
    from kolyric.cli import main

    code = main(
        [
            "train",
            "--from-scratch",
            "--batch-size",
            "0",
            "--lr",
            "-1",
            "--val-share",
            "1.5",
            "--n-embd",
            "65",
            "--n-head",
            "4",
            "--max-seq-length",
            "300",
            "--precision",
            "8",
            "--warmup-ratio",
            "2",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    for text in (
        "--batch-size: must be an integer in [1, 4096], got 0",
        "--lr: must be > 0 and ≤ 1, got -1.0",
        "--val-share: must be between 0 and 1",
        "--n-embd: must be divisible by --n-head (4), got 65",
        "--max-seq-length: must be ≤ --n-positions (128), got 300",
        "--precision: must be one of",
        "--warmup-ratio: must be ≥ 0 and < 1, got 2.0",
    ):
        assert text in err
    assert not (tmp_path / "o").exists()


def test_cli_refuses_to_mix_runs_in_one_folder_and_reports_corpus_errors(scratch, tmp_path, capsys):
    from kolyric.cli import main

    assert main(["train", *CLI_TINY, "--out", str(scratch[0])]) == 2
    assert "already holds checkpoints; continue them with --resume" in capsys.readouterr().err
    assert main(["train", *CLI_TINY, "--out", str(tmp_path / "a"), "--resume"]) == 2
    assert "--resume: no checkpoint at" in capsys.readouterr().err
    events = tmp_path / "events.jsonl"
    code = main(
        [
            "train",
            *CLI_TINY,
            "--corpus",
            str(tmp_path / "missing.txt"),
            "--out",
            str(tmp_path / "b"),
            "--events",
            str(events),
        ]
    )
    assert code == 2 and "missing.txt: no such file" in capsys.readouterr().err
    last = json.loads(events.read_text(encoding="utf-8").splitlines()[-1])
    assert last["event"] == "error" and "missing.txt: no such file" in last["message"]


def test_cli_module_imports_no_torch():
    code = (
        "import sys, kolyric.cli.train, argparse; p = argparse.ArgumentParser(); "
        "kolyric.cli.train.add_arguments(p); p.parse_args([]); "
        "assert not {'torch', 'transformers', 'pytorch_lightning'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


def test_sigint_stops_a_cli_run_and_leaves_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kolyric",
            "train",
            *CLI_TINY,
            "--limit-train",
            "2000",
            "--epochs",
            "50",
            "--out",
            str(out),
            "--events",
            "-",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    events = []
    try:
        for line in proc.stdout:
            events.append(json.loads(line))
            if events[-1]["event"] == "step":
                proc.send_signal(signal.SIGINT)
                break
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    events += [json.loads(line) for line in rest.splitlines()]
    assert proc.returncode == 130, err[-2000:]
    assert "stopping" in [e.get("phase") for e in events]
    assert next(e for e in events if e["event"] == "checkpoint")["kind"] == "interrupted"
    assert events[-1]["event"] == "finished" and events[-1]["cancelled"] is True
    step = events[-1]["step"]
    assert 1 <= step < 50 * 63
    assert torch.load(out / "last.ckpt", weights_only=True)["global_step"] == step
    load_model(out / "last.ckpt", device="cpu")
    assert "resume with --resume" in err


def test_a_cli_run_logs_only_what_a_user_can_act_on(tmp_path):
    """The log the app shows is the trainer's stderr: no transformers notice about a loss it
    picks by itself, no progress bar drawn with carriage returns."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kolyric",
            "train",
            *CLI_TINY,
            "--limit-train",
            "200",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=240,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-2000:]
    assert "exported" in log
    assert "loss_type" not in log and "\r" not in log and "it/s]" not in log, log[-2000:]
