"""The training screen: a form, then a live view of a `kolyric train` child process.

The run is a separate process started from a thread worker (``TrainingProcess``); its JSON
events land in a buffer and a replaceable ``TrainingProgress`` message tells the screen to
drain it. A crash is reported with the process's own message; the app never goes down
with it. When the run finishes, Ctrl+O opens its result in the playground.

The events drive the widgets (progress, plot, checkpoints); the log shows the trainer's own
readable lines, never the machine events. The checkpoints list shows the files that exist:
a run keeps its best checkpoint only, so an earlier best is dropped when it is replaced. A
folder holding an earlier run's checkpoints is offered to resume, or a new folder.
"""

from __future__ import annotations

import shlex
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Input, Log, OptionList, ProgressBar, Select, Static

from kolyric.app.guard import Guarded
from kolyric.app.messages import TrainingEnded, TrainingProgress
from kolyric.app.training_form import (
    CORPORA,
    DEFAULTS,
    TRAIN_FIELDS,
    FormValue,
    TrainingRequest,
    default_out,
    parse_form,
)
from kolyric.app.training_worker import Event, TrainingProcess
from kolyric.app.widgets.fields import CalmFocus, FieldRow, ProblemsBox
from kolyric.app.widgets.plot import LossPlot, Series
from kolyric.app.widgets.status import FittingFooter, StatusBar
from kolyric.engine.loading import DEFAULT_MODEL
from kolyric.engine.settings import Problem
from kolyric.training.config import SCRATCH_LR

if TYPE_CHECKING:
    from kolyric.training.plan import FormPlan


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA –"
    seconds = max(0, int(seconds))
    return f"ETA {seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class TrainingScreen(Guarded, CalmFocus, Screen):
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]  # app.tcss: a narrower form at 80 columns
    BINDINGS = [
        Binding("ctrl+g", "start", "Start", priority=True),
        Binding("escape", "cancel", "Cancel run"),
        Binding("ctrl+o", "open_result", "Open in playground", priority=True),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.process: TrainingProcess | None = None
        self.result_path: str | None = None
        self._events: list[Event] = []
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._started_at = 0.0
        self.events_seen = 0
        self.checkpoints: dict[str, tuple[str, object]] = {}  # path -> (kind, step), as the run reported them
        self._last_step: tuple[int, int | None] = (0, None)  # (step, total) of the latest step event
        self._form_defaults: dict[str, FormValue] = dict(DEFAULTS)  # what the form itself last put in each field

    def compose(self) -> ComposeResult:
        config = self.app.config
        base = config.model or DEFAULT_MODEL
        corpus = config.train_corpus if config.train_corpus in CORPORA else CORPORA[0]  # the last run's
        with Horizontal(id="train-main"):
            with VerticalScroll(id="train-form"):
                yield FieldRow(
                    "corpus",
                    "corpus",
                    corpus,
                    choices=CORPORA,
                    prefix="train",
                    help="NSMC movie reviews (긍정/부정 prefixed), or a text file of your own",
                )
                yield FieldRow(
                    "corpus_file",
                    "corpus file",
                    config.train_corpus_file,
                    prefix="train",
                    placeholder=".txt (blank line between songs), .tsv, .jsonl",
                )
                yield Static("", id="train-plan")
                yield FieldRow("corpus_dir", "corpus dir", "", prefix="train", placeholder="default: the data folder")
                yield FieldRow("model", "base model", base, prefix="train", placeholder="hub id, directory, .ckpt")
                yield Checkbox("train from scratch (no base model)", id="train-from_scratch", compact=True)
                for name, spec in TRAIN_FIELDS.items():
                    yield FieldRow(
                        name,
                        name,
                        DEFAULTS[name],
                        help=spec.help,
                        prefix="train",
                        placeholder="all" if spec.optional else spec.describe_range(),
                    )
                yield FieldRow("out", "output dir", "", prefix="train", placeholder="auto: new, in data")
                yield Checkbox("resume the run in the output dir", id="train-resume", compact=True)
                yield FieldRow(
                    "extra",
                    "extra flags",
                    "",
                    prefix="train",
                    placeholder="e.g. --n-layer 2",
                    help="more `kolyric train` flags, as on the command line",
                )
                yield ProblemsBox(id="train-problems")
                with Horizontal(id="train-buttons"):
                    yield Button("Start", id="train-start", variant="primary", compact=True)
                    yield Button("New folder", id="train-new-folder", compact=True)
                    yield Button("Cancel", id="train-cancel", variant="error", compact=True, disabled=True)
                    yield Button("Open result", id="train-open", variant="success", compact=True, disabled=True)
            with Vertical(id="train-right"):
                with Vertical(id="train-progress"):
                    yield Static("Not started. Fill in the form and press Start (Ctrl+G).", id="train-phase")
                    with Horizontal(id="train-bar-row"):
                        yield ProgressBar(total=100, show_eta=False, id="train-bar")
                        yield Static(fmt_eta(None), id="train-eta")
                    yield Static("", id="train-metrics")
                yield LossPlot([Series("loss", "$primary"), Series("val_loss", "$accent")], id="train-plot")
                yield OptionList(id="train-checkpoints")
                yield Log(max_lines=300, id="train-log")
        yield StatusBar()
        yield FittingFooter()

    def on_mount(self) -> None:
        self.query_one("#train-progress").border_title = "Progress"
        self.query_one("#train-plot").border_title = "[$primary]━ loss[/] [$accent]━ val_loss[/]"
        self.query_one("#train-checkpoints").border_title = "Checkpoints"
        self.query_one("#train-log").border_title = "Log"
        self.query_one("#train-form").border_title = "Training run"
        self._sync_form()
        self.app.settle_cursors(self)

    # -- the form ------------------------------------------------------------------------------
    def raw_form(self) -> dict[str, object]:
        raw: dict[str, object] = {row.field_name: row.raw_value for row in self.query(FieldRow)}
        raw["from_scratch"] = self.query_one("#train-from_scratch", Checkbox).value
        raw["resume"] = self.query_one("#train-resume", Checkbox).value
        return raw

    def validate_form(self) -> tuple[TrainingRequest | None, list[Problem]]:
        request, problems = parse_form(self.raw_form(), data_dir=self.app.data_dir)
        bad = {p.field: p.message for p in reversed(problems)}
        rows = list(self.query(FieldRow))
        for row in rows:
            row.set_error(bad.get(row.field_name))
        self.query_one("#train-problems", ProblemsBox).show_rows(rows)
        return request, problems

    def _sync_form(self) -> None:
        is_file = self.query_one("#train-corpus", Select).value == "file"
        self.query_one("#train-row-corpus_file").display = is_file
        self.query_one("#train-row-corpus_dir").display = not is_file  # where NSMC is read from
        self.query_one("#train-model", Input).disabled = self.query_one("#train-from_scratch", Checkbox).value

    @on(Checkbox.Changed, "#train-from_scratch")
    def _scratch_toggled(self, event: Checkbox.Changed) -> None:
        lr = self.query_one("#train-lr", Input)
        old, new = (DEFAULTS["lr"], SCRATCH_LR) if event.value else (SCRATCH_LR, DEFAULTS["lr"])
        if lr.value.strip() in (str(old), repr(old)):  # still the default: follow the mode
            lr.value = str(new)
            self._form_defaults["lr"] = new

    # -- lyrics defaults ---------------------------------------------------------------------
    @on(Select.Changed, "#train-corpus")
    @on(Input.Changed, "#train-corpus_file")
    @on(Input.Changed, "#train-model")
    @on(Checkbox.Changed, "#train-from_scratch")
    def _replan(self) -> None:
        """A file corpus gets defaults for a small file and a line saying what an epoch covers;
        NSMC gets the tutorial's back. Only fields the user has not edited follow."""
        plan = self.query_one("#train-plan", Static)
        path = self.query_one("#train-corpus_file", Input).value.strip()
        scratch = self.query_one("#train-from_scratch", Checkbox).value
        if self.query_one("#train-corpus", Select).value != "file":
            plan.display = False
            self._offer_defaults({**DEFAULTS, "lr": SCRATCH_LR if scratch else DEFAULTS["lr"]})
            return
        plan.display = True
        if not path or not Path(path).expanduser().is_file():
            plan.update("Name a .txt (blank line between songs), .tsv or .jsonl file to see what an epoch covers.")
            return
        plan.update("measuring the file …")
        self._plan_worker(
            str(Path(path).expanduser()), None if scratch else self.query_one("#train-model", Input).value.strip()
        )

    @work(thread=True, group="plan", exclusive=True, exit_on_error=False)
    def _plan_worker(self, path: str, model: str | None) -> None:
        from textual.worker import get_current_worker

        from kolyric.training.corpora import CorpusError
        from kolyric.training.plan import plan_for_form

        try:
            found = plan_for_form(path, model)
        except (CorpusError, OSError, ValueError) as exc:
            text = f"cannot plan on this file: {exc}"
            if not get_current_worker().is_cancelled:
                self.app.call_from_thread(self.query_one("#train-plan", Static).update, text)
            return
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show_plan, found)

    def _show_plan(self, found: FormPlan) -> None:
        self.query_one("#train-plan", Static).update("Lyrics defaults: " + found.describe())
        self._offer_defaults(found.defaults)

    def _offer_defaults(self, defaults: dict[str, FormValue]) -> None:
        for name, value in defaults.items():
            field = self.query_one(f"#train-{name}", Input)
            current = self._form_defaults.get(name)
            if field.value.strip() in ("" if current is None else str(current), repr(current)):
                field.value = "" if value is None else str(value)
                self._form_defaults[name] = value

    @on(Button.Pressed, "#train-new-folder")
    def _new_folder(self) -> None:
        """A fresh output folder in the data folder: the way out of one that holds a run."""
        self.query_one("#train-out", Input).value = default_out(self.app.data_dir)
        self.query_one("#train-resume", Checkbox).value = False
        self.validate_form()

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def _form_changed(self) -> None:
        self._sync_form()
        if any(row.invalid for row in self.query(FieldRow)):
            self.validate_form()  # clear marks as soon as a value is fixed

    # -- running -------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        running = self.process is not None
        if action == "cancel":
            return True if running else None
        if action == "start":
            return None if running else True
        if action == "open_result":
            return True if self.result_path and not running else None
        return True

    def action_start(self) -> None:
        if self.process is not None:
            return
        request, problems = self.validate_form()
        if request is None:
            first = problems[0]
            self.notify(f"{first.field}: {first.message}", title="Fix the form first", severity="error", markup=False)
            return
        self._remember_corpus(request)
        argv = [*self.app.train_command, *request.argv()]
        self._reset_view(request.out)
        self.query_one("#train-log", Log).write_line("$ kolyric train " + shlex.join(request.argv()))
        self.process = TrainingProcess(argv, self._on_event, self._on_line)
        self._started_at = time.monotonic()
        self.app.status_activity = "training…"
        self._set_running(True)
        self._train_worker(self.process)

    def _remember_corpus(self, request: TrainingRequest) -> None:
        """The form offers this run's corpus again at the next start."""
        config = self.app.config
        corpus = "nsmc" if request.corpus == "nsmc" else "file"
        corpus_file = config.train_corpus_file if corpus == "nsmc" else request.corpus
        if (config.train_corpus, config.train_corpus_file) != (corpus, corpus_file):
            config.train_corpus, config.train_corpus_file = corpus, corpus_file
            self.app.save_config()

    def _reset_view(self, out: str) -> None:
        self.result_path = None
        self.events_seen = 0
        self.checkpoints = {}
        self._last_step = (0, None)
        self.query_one("#train-plot", LossPlot).clear()
        self.query_one("#train-checkpoints", OptionList).clear_options()
        self.query_one("#train-log", Log).clear()
        self.query_one("#train-bar", ProgressBar).update(total=100, progress=0)
        self.query_one("#train-phase", Static).update(f"starting… (output: {out})")
        self.query_one("#train-metrics", Static).update("")

    @work(thread=True, group="training", exit_on_error=False)
    def _train_worker(self, process: TrainingProcess) -> None:
        outcome = process.run()
        self.post_message(
            TrainingEnded(outcome.ok, outcome.returncode, outcome.message, outcome.cancelled, outcome.result_path)
        )

    def _on_event(self, event: Event) -> None:  # worker thread
        with self._lock:
            self._events.append(event)
        self.post_message(TrainingProgress())

    def _on_line(self, line: str) -> None:  # worker threads
        with self._lock:
            self._lines.append(line)
        self.post_message(TrainingProgress())

    def on_training_progress(self, message: TrainingProgress) -> None:
        with self._lock:
            events, self._events = self._events, []
            lines, self._lines = self._lines, []
        log = self.query_one("#train-log", Log)
        if lines:
            log.write_lines(lines)
        for event in events:
            self.events_seen += 1
            self._show_event(event)

    def _show_event(self, event: Event) -> None:
        """Drive the widgets from one event. The log is left to the trainer's readable lines
        (its stderr): the events are for this screen, not for people."""
        kind = event.get("event")
        step = event.get("step")
        if kind == "phase":
            self.query_one("#train-phase", Static).update(str(event.get("message") or event.get("phase") or ""))
        elif kind == "step":
            self._progress(event)
            if isinstance(event.get("loss"), (int, float)) and step is not None:
                self.query_one("#train-plot", LossPlot).add("loss", step, event["loss"])
        elif kind == "val":
            if isinstance(event.get("val_loss"), (int, float)):
                self.query_one("#train-plot", LossPlot).add("val_loss", step or 0, event["val_loss"])
        elif kind == "checkpoint" and isinstance(event.get("path"), str) and event["path"]:
            self.checkpoints[event["path"]] = (str(event.get("kind") or "checkpoint"), step)
            self._show_checkpoints()
        elif kind == "finished":
            self._show_checkpoints()
            if not event.get("cancelled"):  # a cancelled run's bar stays where it stopped
                bar = self.query_one("#train-bar", ProgressBar)
                bar.update(progress=bar.total)
        elif kind == "error":
            self.query_one("#train-phase", Static).update(f"error: {event.get('message')}")

    def _show_checkpoints(self) -> None:
        """The checkpoints the run wrote that are still there, newest first (the run replaces its
        best checkpoint when a better one comes, and writes last.ckpt again and again)."""
        options = self.query_one("#train-checkpoints", OptionList)
        options.clear_options()
        for path, (kind, step) in reversed(list(self.checkpoints.items())):
            if Path(path).exists():
                at = f" · step {step}" if isinstance(step, int) else ""
                options.add_option(f"{kind}{at} · {Path(path).name}  ({Path(path).parent})")

    def _progress(self, event: Event) -> None:
        bar = self.query_one("#train-bar", ProgressBar)
        total = next((event[k] for k in ("total_steps", "max_steps", "total") if isinstance(event.get(k), int)), None)
        eta = event.get("eta_s") if isinstance(event.get("eta_s"), (int, float)) else None
        step = event.get("step") or 0
        self._last_step = (step, total if isinstance(total, int) else None)
        if total:
            bar.update(total=total, progress=min(step, total))
        elif eta is not None:
            elapsed = time.monotonic() - self._started_at
            bar.update(total=100, progress=100 * elapsed / max(1e-9, elapsed + eta))
        self.query_one("#train-eta", Static).update(fmt_eta(eta))
        parts = [f"epoch {event.get('epoch', '–')}", f"step {step}" + (f"/{total}" if total else "")]
        for key, label in (("loss", "loss"), ("val_loss", "val_loss"), ("tokens_per_s", "tok/s")):
            if isinstance(event.get(key), (int, float)):
                parts.append(f"{label} {event[key]:.4g}")
        self.query_one("#train-metrics", Static).update(" · ".join(parts))

    def on_training_ended(self, message: TrainingEnded) -> None:
        self.on_training_progress(TrainingProgress())  # whatever is still buffered
        self.process = None
        self._set_running(False)
        self.result_path = message.result_path if message.ok else None
        self.query_one("#train-open", Button).disabled = self.result_path is None
        if message.ok:
            summary = f"training finished: {self.result_path or 'no model path reported'}"
            self.notify(
                "Training finished. Ctrl+O opens the result in the playground (and makes it the model "
                "kolyric starts with).",
                title="Training",
            )
        elif message.cancelled:
            step, total = self._last_step
            at = f" at step {step}" + (f" of {total}" if total else "") if step else ""
            summary = f"training cancelled{at}; tick 'resume' and Start to go on"
            self.notify(f"Training cancelled{at}.", severity="warning")
        else:
            summary = f"training failed (exit status {message.returncode}): {message.message}"
            self.notify(message.message, title="Training failed", severity="error", timeout=15, markup=False)
        self.query_one("#train-phase", Static).update(summary)
        self.app.status_activity = summary
        self.refresh_bindings()

    def action_cancel(self) -> None:
        if self.process is not None:
            self.query_one("#train-phase", Static).update("cancelling (SIGINT)…")
            self.process.cancel()

    def action_open_result(self) -> None:
        if self.result_path and self.process is None:
            # it becomes the model kolyric starts with: the app says so once it has loaded
            self.app.open_in_playground(self.result_path)

    def _set_running(self, running: bool) -> None:
        self.query_one("#train-start", Button).disabled = running
        self.query_one("#train-cancel", Button).disabled = not running
        if running:
            self.query_one("#train-open", Button).disabled = True
        self.refresh_bindings()

    @on(Button.Pressed, "#train-start")
    def _start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#train-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    @on(Button.Pressed, "#train-open")
    def _open_pressed(self) -> None:
        self.action_open_result()

    def on_unmount(self) -> None:
        if self.process is not None:
            self.process.cancel()
