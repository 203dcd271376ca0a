"""Streaming for the playground: starting, showing, stopping and recording generations.

``start`` builds a ``GenerationRequest`` from the controls and runs ``Generator.stream`` in a
thread worker that only pushes engine events into the run's buffer and posts
``StreamProgress``. The handler drains the buffer into the candidates' states and repaints
the cards at most ``PAINT_INTERVAL`` apart, so a fast model never starves the editor of
frames. A stop takes effect on screen at once; the stopped run's late tokens are dropped.
Controls changed while a stream runs apply from its next token; the history records from
which token on (``kolyric.app.live``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from textual import work
from textual.timer import Timer
from textual.widgets import Button

from kolyric.app.messages import StreamFailed, StreamProgress
from kolyric.app.session import (CandidateState, HistoryEntry, StreamRun, changes_summary, settings_changes,
                                 settings_summary)
from kolyric.app.widgets.candidates import CandidateStrip
from kolyric.app.widgets.inspector import TokenInspector

PAINT_INTERVAL = 1 / 30  # seconds between two repaints of streaming candidates
STATUS_INTERVAL = 0.25  # and of the tokens/s figure in the status bar


class StreamingMixin:
    """For the playground screen: needs ``controls``, ``states``, ``slot_requests``,
    ``history`` and ``last_request``, and a ``CandidateStrip``, a ``TokenInspector`` and a
    ``#stop`` button among its widgets."""

    run: StreamRun | None = None
    _dirty_slots: set[int]
    _paint_timer: Timer | None = None
    _painted_at = 0.0
    _status_at = 0.0

    @property
    def streaming(self) -> bool:
        return self.run is not None

    def start(self, prompt: str, polarity: str | None, context: tuple[str, ...], *,
              slot: int | None = None, forced: tuple[int, ...] = ()) -> bool:
        """Start a stream (a fresh one, or a branch rewriting ``slot``); False when it cannot."""
        host = self.app.host
        if not host.ready:
            self.notify("No model is loaded yet." + (" Press F4 to choose one." if not self.app.status_busy else
                                                     " It is still loading."), severity="warning")
            return False
        if not self.controls.valid:
            problem = self.controls.problems[0]
            self.notify(f"Generation waits until the controls are valid: {problem.field}: {problem.message}",
                        title="Fix the controls first", severity="error")
            self.query_one(f"#ctl-{problem.field}").focus()
            return False
        self.stop_stream(quiet=True)
        from kolyric.app.live import RecordingControls
        from kolyric.engine.results import GenerationRequest

        settings = self.controls.settings
        if slot is not None:  # a branch rewrites one candidate: one row, greedy where beams were
            settings = settings.replace(n=1, strategy="greedy" if settings.strategy == "beam" else settings.strategy,
                                        max_length=min(1024, max(settings.max_length, len(forced) + 1)))
        constraints = self.controls.constraints
        request = GenerationRequest(prompt, polarity, settings, context=context, forced_ids=forced,
                                    constraints=constraints)
        rows = settings.n if settings.strategy != "greedy" else 1
        slots = [slot] if slot is not None else list(range(rows))
        run = StreamRun(request, RecordingControls(settings), slots)
        self.run = run
        strip = self.query_one(CandidateStrip)
        # constrained "next" lines start on a line of their own; otherwise the text continues the prompt
        joiner = "\n" if constraints is not None and constraints.mode == "next" else None
        if slot is None:
            self.last_request = request
            self.states = {s: CandidateState(s, prompt, joiner=joiner) for s in slots}
            strip.show(list(self.states.values()))
            self.query_one(TokenInspector).clear()
        else:
            self.states[slot] = CandidateState(slot, prompt, joiner=joiner)
            inspector = self.query_one(TokenInspector)
            if inspector.slot == slot:  # its tokens are about to be rewritten
                inspector.clear()
            card = strip.card(slot)
            if card is not None:
                card.state, card.selected = self.states[slot], None
                card.remove_class("-accepted")
                card.refresh_state()
        for s in slots:
            self.slot_requests[s] = request
        self._set_streaming(True)
        self.app.status_activity = "generating…"
        self._stream_worker(run, host.generator)
        return True

    @work(thread=True, group="stream", exit_on_error=False)
    def _stream_worker(self, run: StreamRun, generator: Any) -> None:
        from kolyric.engine.results import TokenEvent

        run.controls.stream_thread = threading.get_ident()
        try:
            for event in generator.stream(run.request, cancel=run.cancel, controls=run.controls):
                if isinstance(event, TokenEvent):  # before the stream goes on to its next step
                    run.controls.steps_done = event.step + 1
                run.push(event)
                self.post_message(StreamProgress(run.run_id))
                time.sleep(0)  # let the UI thread take the GIL between tokens: typing stays instant
        except Exception as exc:  # noqa: BLE001 - reported on screen, never raised
            self.post_message(StreamFailed(run.run_id, f"{type(exc).__name__}: {exc}"))

    def on_stream_progress(self, message: StreamProgress) -> None:
        run = self.run
        if run is None or run.run_id != message.run_id:
            return  # a stopped or replaced run: its late tokens are dropped
        from kolyric.engine.results import DoneEvent, TokenEvent

        touched: set[int] = set()
        for event in run.drain():
            if isinstance(event, TokenEvent):
                slot = run.slots[event.candidate]
                state = self.states[slot]
                state.tokens.append(event.token)
                state.pieces.append(event.text)
                run.tokens += 1
                touched.add(slot)
            elif isinstance(event, DoneEvent):
                self._finish(run, event.result)
                touched.update(run.slots)
        self._dirty_slots |= touched
        if self.run is not run:  # finished: show the final state now
            self._paint()
        elif self._paint_timer is None:
            wait = PAINT_INTERVAL - (time.monotonic() - self._painted_at)
            if wait <= 0:
                self._paint()
            else:
                self._paint_timer = self.set_timer(wait, self._paint)

    def _paint(self) -> None:
        """Repaint the cards that changed. At most ~30 times a second however fast tokens come,
        so a fast model never starves the editor of frames."""
        if self._paint_timer is not None:
            self._paint_timer.stop()
            self._paint_timer = None
        self._painted_at = time.monotonic()
        strip = self.query_one(CandidateStrip)
        for slot in self._dirty_slots:
            card = strip.card(slot)
            if card is not None:
                card.refresh_state()
        self._dirty_slots.clear()
        run = self.run
        if run is not None and self._painted_at - self._status_at > STATUS_INTERVAL:
            self._status_at = self._painted_at
            self.app.status_activity = f"generating… {run.tokens} tokens · {run.tokens_per_s:.1f} tok/s"

    def _finish(self, run: StreamRun, result: Any) -> None:
        window = getattr(self.app.host.generator, "context_window", None)
        for i, candidate in enumerate(result.candidates):
            state = self.states[run.slots[i]]
            state.full_text = candidate.full_text
            state.finish_reason = candidate.finish_reason
            state.seed = result.settings.seed
            state.report = candidate.constraint_report
            if not state.tokens and candidate.tokens:  # beam search: tokens come with the result
                state.tokens = [t for t in candidate.tokens if t.token_id in candidate.token_ids]
                state.pieces = [t.text for t in state.tokens]
            # the prompt and the new tokens filled the model's window: that, not max_length, ended it
            if (candidate.finish_reason == "length" and window
                    and result.prompt_tokens + len(candidate.tokens) >= window):
                state.window_limit = int(window)
        self._record(run, result.settings)
        self.run = None
        self._set_streaming(False)
        self.app.status_activity = (f"done: {run.tokens} tokens in {result.elapsed_s:.2f} s "
                                    f"({result.tokens_per_s:.1f} tok/s)")

    def _record(self, run: StreamRun, settings: Any) -> None:
        """Add the run's candidates to the history. ``settings`` are those in force at the end
        (with the seed used); when the controls changed mid-stream the entry keeps the settings
        that began it and, token by token, the changes."""
        request = run.request
        constraints = request.constraints.to_dict() if request.constraints is not None else None
        timeline = run.controls.marks()
        for i, slot in enumerate(run.slots):
            state = self.states[slot]
            if not state.accepted_text():
                continue
            changes = settings_changes(timeline, len(state.tokens))
            began = settings
            if changes:
                began = timeline[0][1]
                began = began.replace(seed=settings.seed) if began.seed is None else began
            summary = settings_summary(began, state.finish_reason, state.report)
            if changes:
                summary += f" · changed {changes_summary(changes)}"
            self.history.append(HistoryEntry(
                state.accepted_text(), state.prompt, request.polarity, summary,
                settings=began.to_dict(), candidate=i, context=tuple(request.context),
                constraints=constraints, forced_ids=tuple(request.forced_ids), model=self.app.host.spec,
                finish_reason=state.finish_reason, settings_changes=changes))

    def on_stream_failed(self, message: StreamFailed) -> None:
        if self.run is None or self.run.run_id != message.run_id:
            return
        for slot in self.run.slots:
            self.states[slot].finish_reason = "failed"
            card = self.query_one(CandidateStrip).card(slot)
            if card is not None:
                card.refresh_state()
        self.run = None
        self._set_streaming(False)
        self.app.status_activity = "generation failed"
        self.notify(message.message, title="Generation failed", severity="error", timeout=10)

    def action_stop(self) -> None:
        self.stop_stream()

    def stop_stream(self, quiet: bool = False) -> None:
        """Stop the running stream now: the cards freeze at once; late tokens are dropped."""
        run = self.run
        if run is None:
            return
        run.cancel.set()
        self.run = None
        strip = self.query_one(CandidateStrip)
        for slot in run.slots:
            self.states[slot].finish_reason = "stopped"
            card = strip.card(slot)
            if card is not None:
                card.refresh_state()
        self._record(run, run.controls.current)
        self._set_streaming(False)
        if not quiet:
            self.app.status_activity = f"stopped after {run.tokens} tokens"

    def _set_streaming(self, on: bool) -> None:
        self.query_one("#stop", Button).disabled = not on
        self.refresh_bindings()
