"""kill -9 against `kolyric train`: the checkpoints on disk always load and `--resume` goes on.

Each trial trains a tiny GPT-2 from scratch on a slice of NSMC, validating (and so writing
the best and last checkpoints) every 2 steps, with events to a file. The run is killed with
SIGKILL once an event reports step >= k (k random), after a random extra delay — or, every
other trial, the moment a checkpoint temp file appears (a kill in the middle of a save).
Then:

- every ``*.ckpt`` in the folder loads with ``load_model`` (weights_only), and so does the
  folder itself (the best checkpoint);
- ``last.ckpt`` is at least as new as the last "last" checkpoint event written before the kill;
- ``kolyric train --resume --max-steps LAST+2`` continues from the step ``last.ckpt`` holds
  (its first step event is LAST+1, it finishes at LAST+2) and exports a model that loads.

    python -m tests.reliability.kill_train --trials 10
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.reliability._util import ROOT, print_report, quiet_env
from tests.tiny_runs import TINY_TRAIN, flags

TINY = flags({**TINY_TRAIN, "limit_train": 640, "val_check_interval": 2})


def read_events(path: Path) -> list[dict]:
    """Complete JSON lines only (a kill may cut the last one short)."""
    events = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return events
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            pass
    return events


def _tmp_files(out: Path) -> list[Path]:
    return list(out.glob(".*.tmp")) if out.is_dir() else []


@dataclass
class TrainReport:
    trials: int = 0
    killed_at_steps: list[int] = field(default_factory=list)
    kills_during_checkpoint_write: int = 0
    temp_files_left: int = 0
    killed_before_first_checkpoint: int = 0
    checkpoints_loaded: int = 0
    resumes: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_trials(trials: int, workdir: Path, *, seed: int = 0, max_k: int = 30, log=print) -> TrainReport:
    import torch
    from transformers.utils import logging as hf_logging

    from kolyric.engine.loading import ModelLoadError, load_model

    hf_logging.disable_progress_bar()

    rng = random.Random(seed)
    report = TrainReport()
    started = time.monotonic()
    env = quiet_env()
    for trial in range(trials):
        out, events_path = workdir / f"t{trial}" / "out", workdir / f"t{trial}" / "events.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        k = rng.randint(1, max_k)
        mid_write = trial % 2 == 1
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kolyric",
                "train",
                *TINY,
                "--epochs",
                "50",
                "--out",
                str(out),
                "--events",
                str(events_path),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 240
        reached = False
        in_write = False
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                if any(e.get("step", -1) >= k for e in read_events(events_path)):
                    reached = True
                    break
                time.sleep(0.02)
            if mid_write and reached:
                until = time.monotonic() + 10
                while time.monotonic() < until and not _tmp_files(out) and proc.poll() is None:
                    time.sleep(0.0005)
            elif reached:
                time.sleep(rng.uniform(0, 0.3))
            in_write = bool(_tmp_files(out))
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
        if not reached:
            report.failures.append(f"trial {trial}: step {k} never reached (exit {proc.returncode}): {err[-800:]}")
            continue
        report.trials += 1
        events = read_events(events_path)
        step_at_kill = max(e.get("step", 0) for e in events)
        report.killed_at_steps.append(step_at_kill)
        report.kills_during_checkpoint_write += int(in_write)
        left = _tmp_files(out)
        report.temp_files_left += len(left)
        # 1. every checkpoint on disk loads
        ckpts = sorted(out.glob("*.ckpt"))
        for path in ckpts:
            try:
                load_model(path, device="cpu")
                report.checkpoints_loaded += 1
            except ModelLoadError as exc:
                report.failures.append(f"trial {trial}: {path.name} does not load after kill -9: {exc}")
        last_events = [e for e in events if e["event"] == "checkpoint" and e.get("kind") == "last"]
        if not ckpts:
            report.killed_before_first_checkpoint += 1
            if last_events:
                report.failures.append(f"trial {trial}: a checkpoint was reported but none is on disk")
            done = subprocess.run(
                [sys.executable, "-m", "kolyric", "train", *TINY, "--out", str(out), "--resume"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=240,
            )
            if done.returncode != 2 or "--resume: no checkpoint at" not in done.stderr:
                report.failures.append(f"trial {trial}: --resume with no checkpoint: {done.stderr[-500:]}")
            log(f"train trial {trial + 1}/{trials}: killed at step {step_at_kill}, before any checkpoint")
            continue
        try:
            load_model(out, device="cpu")
        except ModelLoadError as exc:
            report.failures.append(f"trial {trial}: the folder's best checkpoint does not load: {exc}")
        last_step = (
            int(torch.load(out / "last.ckpt", map_location="cpu", weights_only=True)["global_step"])
            if (out / "last.ckpt").is_file()
            else None
        )
        if last_step is None:
            report.failures.append(f"trial {trial}: no last.ckpt although {len(ckpts)} checkpoint(s) exist")
            continue
        if last_events and last_step < last_events[-1]["step"]:
            report.failures.append(
                f"trial {trial}: last.ckpt holds step {last_step}, older than the reported {last_events[-1]['step']}"
            )
        # 2. --resume continues from it
        resumed_events = out.parent / "resumed.jsonl"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "kolyric",
                "train",
                *TINY,
                "--out",
                str(out),
                "--resume",
                "--max-steps",
                str(last_step + 2),
                "--epochs",
                "50",
                "--events",
                str(resumed_events),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        resumed = read_events(resumed_events)
        steps = [e["step"] for e in resumed if e["event"] == "step"]
        finished = [e for e in resumed if e["event"] == "finished"]
        if done.returncode != 0 or not steps or not finished:
            report.failures.append(f"trial {trial}: --resume failed (exit {done.returncode}): {done.stderr[-800:]}")
            continue
        if steps[0] != last_step + 1 or finished[-1]["step"] != last_step + 2:
            report.failures.append(
                f"trial {trial}: resumed at step {steps[0]} and ended at {finished[-1]['step']}, "
                f"expected {last_step + 1} and {last_step + 2}"
            )
        try:
            load_model(out / "model", device="cpu")
        except ModelLoadError as exc:
            report.failures.append(f"trial {trial}: the exported model does not load: {exc}")
        report.resumes += 1
        log(
            f"train trial {trial + 1}/{trials}: killed at step {step_at_kill}"
            f"{' during a checkpoint write' if in_write else ''}; {len(ckpts)} checkpoint(s) load; "
            f"resumed {last_step} -> {finished[-1]['step']}"
        )
    report.seconds = round(time.monotonic() - started, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-k", type=int, default=30, help="kill after a random step in 1..MAX_K (default 30)")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kolyric-kill-train-") as tmp:
        report = run_trials(args.trials, Path(args.workdir or tmp), seed=args.seed, max_k=args.max_k)
    print_report("kill_train", vars(report))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
