"""Training progress for a person and for the app, cancellation, and atomic checkpoint writes.

Events are JSON objects, one a line, flushed per line::

  {"event": "phase", "phase": "corpus"|"tokenizer"|"tokenize"|"model"|"train"|"export", "message": …,
   "done"?: n, "total"?: n}
  {"event": "step", "step": n, "total_steps": n, "epoch": n, "loss": x, "lr": x,
   "tokens_per_s": x, "eta_s": x}
  {"event": "val", "step": n, "epoch": n, "val_loss": x}
  {"event": "checkpoint", "path": …, "step": n, "epoch": n, "kind": "best"|"last"|"interrupted"}
  {"event": "finished", "cancelled": bool, "best_ckpt": …, "last_ckpt": …, "export_dir": …,
   "val_loss": x|null, "step": n, "elapsed_s": x}
  {"event": "error", "message": …}

Every event also has ``"time"`` (Unix seconds). ``step`` is the optimiser step count
(Lightning's ``global_step``), ``epoch`` is 0-based. Only the global-zero process writes.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import BinaryIO, TextIO

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from kolyric.atomic_files import atomic_write

Event = dict[str, object]  # one JSON line: "event", "time" and the event's own fields


def _is_global_zero() -> bool:
    return all(os.environ.get(var, "0") in ("", "0") for var in ("RANK", "LOCAL_RANK", "NODE_RANK"))


class EventWriter:
    """Writes JSON-line events to ``stream`` (if any) and one-line summaries to ``human`` (if any)."""

    def __init__(self, stream: TextIO | None = None, human: TextIO | None = None) -> None:
        self.stream = stream
        self.human = human
        self.events: list[Event] = []  # kept for callers in the same process (tests, the app)
        self._lock = threading.Lock()

    @classmethod
    def open(cls, target: str | None, human: TextIO | None = None) -> EventWriter:
        """``target``: a path, ``-`` for stdout (people then read stderr), or None."""
        if target is None:
            return cls(None, human if human is not None else sys.stdout)
        if target == "-":
            return cls(sys.stdout, human if human is not None else sys.stderr)
        path = Path(target).expanduser()
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        return cls(path.open("a", encoding="utf-8"), human if human is not None else sys.stdout)

    def emit(self, event: str, *, say: str | None = None, **fields: object) -> Event:
        record: Event = {"event": event, "time": round(time.time(), 3)}
        record.update({k: _plain(v) for k, v in fields.items()})
        if not _is_global_zero():
            return record
        with self._lock:
            self.events.append(record)
            if self.stream is not None:
                self.stream.write(json.dumps(record, ensure_ascii=False) + "\n")
                self.stream.flush()
            if say and self.human is not None:
                self.human.write(say + "\n")
                self.human.flush()
        return record

    def close(self) -> None:
        if self.stream is not None and self.stream not in (sys.stdout, sys.stderr):
            self.stream.close()


def _plain(value: object) -> object:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    if isinstance(value, Path):
        return str(value)
    return value


class CancelToken:
    """Set from any thread (the app's cancel button) or a signal; training stops at the next step."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def cancel(self, reason: str = "cancel requested") -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


class ProgressCallback(pl.Callback):
    """Emits step/val events (tokens/s, ETA), logs ``tokens_per_s``, and stops on cancel.

    SIGINT and SIGTERM are taken over while training runs (Lightning's own SIGTERM handling
    would exit without a checkpoint): the first one asks for a stop at the end of the current
    step, where ``last.ckpt`` is saved; a second SIGINT interrupts at once.

    It also keeps ``last.ckpt`` current: written when training stops mid-epoch (cancel or
    ``max_steps``) and at the end of fitting, so ``--resume`` always continues from the last step.
    """

    MAX_NONFINITE_STREAK = 50
    """Non-finite losses in a row after which the run is stopped as diverged."""

    def __init__(
        self,
        events: EventWriter,
        cancel: CancelToken,
        *,
        last_path: Path,
        min_interval_s: float = 1.0,
        say_interval_s: float = 5.0,
    ) -> None:
        self.events = events
        self.cancel = cancel
        self.last_path = last_path
        self.min_interval_s = min_interval_s
        self.say_interval_s = say_interval_s
        self._old_handlers: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}
        self._t_batch = 0.0
        self._window: list[tuple[float, int]] = []  # (seconds, tokens) of recent steps
        self._last_emit = 0.0
        self._last_say = 0.0
        self._steps_timed = 0
        self.stopped_early = False
        self.last_saved_step: int | None = None  # set by the checkpoint writer
        self.diverged = False

    # -- signals ---------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old_handlers[sig] = signal.getsignal(sig)
                signal.signal(sig, self._on_signal)
        self._t_start = time.perf_counter()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.cancel.cancelled:
            raise KeyboardInterrupt
        self.cancel.cancel(f"received {signal.Signals(signum).name}")

    def _restore_signals(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._old_handlers = {}

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning tells only plain samplers the epoch; the length-grouped batch sampler needs it too.
        batch_sampler = getattr(trainer.train_dataloader, "batch_sampler", None)
        if callable(getattr(batch_sampler, "set_epoch", None)):
            batch_sampler.set_epoch(trainer.current_epoch)

    # -- steps --------------------------------------------------------------------------------------
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t_batch = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        tokens = int(batch["attention_mask"].sum()) * trainer.world_size
        self._window.append((now - self._t_batch, tokens))
        self._window = self._window[-50:]
        seconds = sum(s for s, _ in self._window)
        tokens_per_s = sum(t for _, t in self._window) / seconds if seconds > 0 else 0.0
        pl_module.log("tokens_per_s", tokens_per_s, on_step=True, on_epoch=False)
        step = trainer.global_step
        total = int(trainer.estimated_stepping_batches)
        step_time = seconds / len(self._window)
        eta = max(0, total - step) * step_time
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        loss = float(loss) if loss is not None else float("nan")  # None: a skipped (non-finite) step
        streak = getattr(pl_module, "nonfinite_streak", 0)
        if streak == 1:
            self.events.emit(
                "phase",
                phase="warning",
                step=step,
                message=f"non-finite loss at step {step}; the step was skipped",
                say=f"warning: non-finite loss at step {step} (batch {tuple(batch['input_ids'].shape)}); skipped",
            )
        if streak >= self.MAX_NONFINITE_STREAK and not self.cancel.cancelled:
            self.diverged = True
            self.cancel.cancel(
                f"the loss was NaN or infinite for {streak} steps in a row: training diverged "
                f"(try a lower --lr, or --precision 32)"
            )
        cancelled = self.cancel.cancelled
        if trainer.world_size > 1:  # every process must stop at the same step
            cancelled = trainer.strategy.reduce_boolean_decision(cancelled, all=False)
        if cancelled:
            self._stop(trainer)
        if now - self._last_emit >= self.min_interval_s or step <= 1 or step >= total or cancelled:
            self._last_emit = now
            lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
            say = None
            if now - self._last_say >= self.say_interval_s or step <= 1:
                self._last_say = now
                say = (
                    f"step {step}/{total} · epoch {trainer.current_epoch} · loss {loss:.3f} · "
                    f"{tokens_per_s:,.0f} tok/s · eta {_duration(eta)}"
                )
            self.events.emit(
                "step",
                say=say,
                step=step,
                total_steps=total,
                epoch=trainer.current_epoch,
                loss=loss,
                lr=lr,
                tokens_per_s=tokens_per_s,
                eta_s=eta,
                skipped_steps=getattr(pl_module, "skipped_steps", 0),
            )
        # Stopping mid-epoch (a cancel, or max_steps): save here, while the loop state still says
        # where in the epoch we are, so --resume carries on with the rest of it.
        reached_max = trainer.max_steps > 0 and step >= trainer.max_steps
        if (self.stopped_early or reached_max) and self.last_saved_step != step:
            trainer.save_checkpoint(self.last_path)

    def _stop(self, trainer: pl.Trainer) -> None:
        if not self.stopped_early:
            self.stopped_early = True
            self.events.emit(
                "phase",
                phase="stopping",
                message=self.cancel.reason,
                say=f"stopping: {self.cancel.reason}; saving a checkpoint",
            )
        trainer.should_stop = True
        # Lightning would run a full validation before stopping; a cancel should not wait for it.
        trainer.limit_val_batches = 0

    # -- validation and the end ----------------------------------------------------------------------
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        val_loss = trainer.callback_metrics.get("val_loss")
        if val_loss is not None:
            val_loss = float(val_loss)
            self.events.emit(
                "val",
                say=f"validation at step {trainer.global_step}: val_loss {val_loss:.4f}",
                step=trainer.global_step,
                epoch=trainer.current_epoch,
                val_loss=val_loss,
            )

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Whatever else happened, last.ckpt holds the step training ended at.
        if self.last_saved_step != trainer.global_step:
            trainer.save_checkpoint(self.last_path)
        self._restore_signals()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore_signals()


class LastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose end-of-training "save last" is left to ``ProgressCallback``.

    Lightning's version runs after the fit loop has closed the epoch, so a checkpoint it writes
    after a mid-epoch stop claims the epoch finished, and a resume would skip the rest of it.
    """

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        return None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file in the same folder, fsynced, then renamed over
    the old one: a crash or a full disk never leaves a half-written file where a good one was.

    (Lightning's own save goes through an fsspec transaction whose temporary file lives in the
    system temp folder; when that is another filesystem the final move is a plain copy.)
    ``on_saved(path)`` is called after each file is in place.
    """

    def __init__(self, on_saved: Callable[[Path], None] | None = None) -> None:
        super().__init__()
        self.on_saved = on_saved

    def save_checkpoint(self, checkpoint: dict, path: str | os.PathLike, storage_options: object = None) -> None:
        path = Path(path)

        def write(handle: BinaryIO) -> None:
            sink = _WriteErrorKeeper(handle)
            try:
                torch.save(checkpoint, sink)
            except RuntimeError:
                # torch reports a failed write (a full disk) as "unexpected pos …": raise the real error
                if sink.error is not None:
                    raise OSError(sink.error.errno, sink.error.strerror, str(path)) from None
                raise

        atomic_write(path, write)
        if self.on_saved is not None:
            self.on_saved(path)


class _WriteErrorKeeper:
    """A file's ``write`` that remembers the OSError it raised (torch.save swallows it)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
