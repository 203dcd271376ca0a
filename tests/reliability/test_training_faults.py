"""Training under faults: kill -9 at random steps (checkpoints load, --resume goes on) and a
disk that fills up while a checkpoint is written (an error event and a message that say so;
the checkpoints already written stay whole).

One kill trial runs by default; the 10-trial run is ``slow`` (or
``python -m tests.reliability.kill_train --trials 10``)."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import types

import pytest

from kolyric.engine.loading import load_model

from tests.reliability import kill_train
from tests.reliability._util import count, try_mount_tmpfs, umount


def check(report) -> None:
    count("kill -9 trials: kolyric train", report.trials)
    count("kill -9 trials: kolyric train, during a checkpoint write", report.kills_during_checkpoint_write)
    count("kill -9 trials: kolyric train, resumed", report.resumes)
    assert not report.failures, "\n".join(report.failures)


def test_kill_training_once_then_resume(tmp_path):
    report = kill_train.run_trials(1, tmp_path, seed=3, max_k=12, log=lambda *_: None)
    check(report)
    assert report.trials == 1


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_ten_kills_of_training(tmp_path):
    report = kill_train.run_trials(10, tmp_path, seed=11)
    print({k: v for k, v in vars(report).items() if k != "failures"})
    check(report)
    assert report.trials == 10 and report.resumes + report.killed_before_first_checkpoint == 10


# -- a full disk while a checkpoint is written ---------------------------------------------------------
@pytest.fixture(params=["tmpfs", "fsync"])
def full_disk(request, tmp_path, monkeypatch):
    """``tmpfs``: a real 1.4 MB filesystem — room for the first best+last checkpoints (~0.5 MB
    each), not for the next temp file. ``fsync``: where mounting is not allowed, the checkpoint
    writer's fsync fails with ENOSPC from the third save on."""
    out = tmp_path / "out"
    if request.param == "tmpfs":
        if not try_mount_tmpfs(out, "1400k"):
            pytest.skip("cannot mount a tmpfs here (needs root)")
        yield out
        umount(out)
        return
    import kolyric.atomic_files as files_module  # the atomic writer that checkpoints go through

    calls = {"n": 0}

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > 4:  # two checkpoints (file + folder fsync each), then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.fsync(fd)

    monkeypatch.setattr(files_module, "os", types.SimpleNamespace(**{**vars(os), "fsync": fsync}))
    monkeypatch.setattr(files_module, "fsync_dir", lambda d: None)
    yield out


def test_disk_full_while_saving_a_checkpoint(full_disk, tmp_path):
    from kolyric.cli import main

    events_path = tmp_path / "events.jsonl"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(
            [
                "train",
                *kill_train.TINY,
                "--limit-train",
                "320",
                "--epochs",
                "3",
                "--out",
                str(full_disk),
                "--events",
                str(events_path),
            ]
        )
    count("disk full while saving a checkpoint")
    events = [json.loads(line) for line in events_path.read_text(encoding="utf-8").splitlines()]
    assert code == 2 and "Traceback" not in err.getvalue(), err.getvalue()[-3000:]
    assert "No space left on device" in err.getvalue() and "--resume" in err.getvalue()
    assert events[-1]["event"] == "error" and "No space left on device" in events[-1]["message"]
    saved = [e for e in events if e["event"] == "checkpoint"]
    assert saved, "the disk filled before the first checkpoint: make the tmpfs larger"
    assert not list(full_disk.glob(".*.tmp"))  # the torn temp file was removed
    for path in full_disk.glob("*.ckpt"):  # what was written before stays whole
        assert load_model(path, device="cpu").kind == "checkpoint"
    last = [e for e in saved if e["kind"] == "last"][-1]
    import torch

    assert torch.load(full_disk / "last.ckpt", weights_only=True)["global_step"] == last["step"]
