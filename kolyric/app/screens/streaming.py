"""Streaming for the playground: a component that runs, shows, stops and records generations.

``StreamController.start`` runs ``Generator.stream`` in a thread worker that only pushes
engine events into the run's buffer and posts ``StreamProgress`` to the screen, which hands it
back to ``progress``. That drains the buffer into the candidates' states and repaints the
cards at most ``PAINT_INTERVAL`` apart, so a fast model never starves the editor of frames. A
stop takes effect on screen at once; the stopped run's late tokens are dropped. Controls
changed while a stream runs apply from its next token; each finished candidate is handed to
``on_recorded`` with the settings that made each stretch of its tokens (``kolyric.app.live``).

The controller owns the run, the candidate states, the request each slot came from and the
slots waiting for a repaint; the screen gives it the widgets it paints and the callbacks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button

from kolyric.app.messages import StreamFailed, StreamProgress
from kolyric.app.session import CandidateState, StreamRun, finish_state, settings_changes
from kolyric.app.widgets.candidates import CandidateStrip
from kolyric.app.widgets.inspector import TokenInspector

if TYPE_CHECKING:
    from kolyric.engine.results import GenerationRequest, GenerationResult
    from kolyric.engine.settings import DecodingSettings
    from kolyric.engine.stream import Generator

PAINT_INTERVAL = 1 / 30  # seconds between two repaints of streaming candidates
STATUS_INTERVAL = 0.25  # and of the tokens/s figure in the status bar


@dataclass(frozen=True)
class Finished:
    """A candidate at the end of its run, as ``on_recorded`` gets it."""

    slot: int
    candidate: int  # its index among the run's rows (row i samples with seed + i)
    state: CandidateState
    request: GenerationRequest
    began: DecodingSettings  # the settings that made its first tokens, with the seed used
    changes: tuple[dict, ...]  # later stretches: {"from_token": 12, "changed": {...}}
    run_id: int = 0  # the run that made it


class StreamController:
    """One stream at a time for ``screen``: its run, the candidates' states, and their requests."""

    def __init__(
        self,
        screen: Screen,
        strip: CandidateStrip,
        inspector: TokenInspector,
        stop: Button,
        on_recorded: Callable[[Finished], None],
    ) -> None:
        self.screen = screen
        self.strip = strip
        self.inspector = inspector
        self.stop_button = stop
        self.on_recorded = on_recorded
        self.run: StreamRun | None = None
        self.states: dict[int, CandidateState] = {}
        self.select_when_done: dict[int, int] = {}
        """Slot -> token index its card selects when its stream ends (a branch's chosen token)."""
        self.slot_requests: dict[int, GenerationRequest] = {}
        self.last_request: GenerationRequest | None = None
        self._dirty_slots: set[int] = set()
        self._paint_timer: Timer | None = None
        self._painted_at = 0.0
        self._status_at = 0.0

    @property
    def streaming(self) -> bool:
        return self.run is not None

    def start(self, request: GenerationRequest, generator: Generator, *, slot: int | None = None) -> None:
        """Stream ``request``: fresh into slots 0..n-1, or (``slot``) a branch rewriting one card."""
        from kolyric.app.live import RecordingControls

        self.stop(quiet=True)
        settings = request.settings
        rows = settings.n if settings.strategy != "greedy" else 1
        slots = [slot] if slot is not None else list(range(rows))
        run = StreamRun(request, RecordingControls(settings), slots)
        self.run = run
        constraints = request.constraints
        # constrained "next" lines start on a line of their own; otherwise the text continues the prompt
        joiner = "\n" if constraints is not None and constraints.mode == "next" else None
        if slot is None:
            self.last_request = request
            self.states = {s: CandidateState(s, request.prompt, joiner=joiner) for s in slots}
            self.strip.show(list(self.states.values()))
            self.inspector.clear()
        else:
            self.states[slot] = CandidateState(slot, request.prompt, joiner=joiner)
            if self.inspector.slot == slot:  # its tokens are about to be rewritten
                self.inspector.clear()
            card = self.strip.card(slot)
            if card is not None:
                card.state, card.selected = self.states[slot], None
                card.remove_class("-accepted")
                card.refresh_state()
        for s in slots:
            self.slot_requests[s] = request
        self._set_streaming(True)
        self.screen.app.status_activity = "generating…"
        self.screen.run_worker(lambda: self._work(run, generator), thread=True, group="stream", exit_on_error=False)

    def show(self, states: list[CandidateState], requests: dict[int, GenerationRequest]) -> None:
        """Show finished candidates (from the tree) as the current ones; a stream stops first."""
        self.stop(quiet=True)
        self.states = {state.slot: state for state in states}
        self.slot_requests = dict(requests)
        if requests:
            self.last_request = next(iter(requests.values()))
        self.strip.show(states)
        self.inspector.clear()

    def _work(self, run: StreamRun, generator: Generator) -> None:
        """The worker thread: engine events into the run's buffer, a message per event."""
        from kolyric.engine.results import TokenEvent

        run.controls.stream_thread = threading.get_ident()
        try:
            for event in generator.stream(run.request, cancel=run.cancel, controls=run.controls):
                if isinstance(event, TokenEvent):  # before the stream goes on to its next step
                    run.controls.steps_done = event.step + 1
                run.push(event)
                self.screen.post_message(StreamProgress(run.run_id))
                time.sleep(0)  # let the UI thread take the GIL between tokens: typing stays instant
        except Exception as exc:  # noqa: BLE001 - reported on screen, never raised
            self.screen.post_message(StreamFailed(run.run_id, f"{type(exc).__name__}: {exc}"))

    def progress(self, run_id: int) -> None:
        run = self.run
        if run is None or run.run_id != run_id:
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
                self._paint_timer = self.screen.set_timer(wait, self._paint)

    def _paint(self) -> None:
        """Repaint the cards that changed. At most ~30 times a second however fast tokens come."""
        if self._paint_timer is not None:
            self._paint_timer.stop()
            self._paint_timer = None
        self._painted_at = time.monotonic()
        for slot in self._dirty_slots:
            card = self.strip.card(slot)
            if card is not None:
                card.refresh_state()
        self._dirty_slots.clear()
        run = self.run
        if run is not None and self._painted_at - self._status_at > STATUS_INTERVAL:
            self._status_at = self._painted_at
            self.screen.app.status_activity = f"generating… {run.tokens} tokens · {run.tokens_per_s:.1f} tok/s"

    def _finish(self, run: StreamRun, result: GenerationResult) -> None:
        window = self.screen.app.model_window
        for i, candidate in enumerate(result.candidates):
            finish_state(self.states[run.slots[i]], candidate, result, window)
        for slot in run.slots:  # a branch: its card selects the token chosen (the inspector shows it)
            index = self.select_when_done.pop(slot, None)
            card = self.strip.card(slot) if index is not None else None
            if card is not None and index < len(self.states[slot].tokens):
                card.select_token(index)
        self._record(run, result.settings)
        self.run = None
        self._set_streaming(False)
        self.screen.app.status_activity = (
            f"done: {run.tokens} tokens in {result.elapsed_s:.2f} s ({result.tokens_per_s:.1f} tok/s)"
        )

    def _record(self, run: StreamRun, settings: DecodingSettings) -> None:
        """Hand each candidate with text to ``on_recorded``. ``settings`` are those in force at
        the end (with the seed used); when the controls changed mid-stream the record keeps the
        settings that began it and, token by token, the changes."""
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
            self.on_recorded(Finished(slot, i, state, run.request, began, changes, run_id=run.run_id))

    def failed(self, run_id: int, message: str) -> None:
        run = self.run
        if run is None or run.run_id != run_id:
            return
        for slot in run.slots:
            self.states[slot].finish_reason = "failed"
            card = self.strip.card(slot)
            if card is not None:
                card.refresh_state()
        self.run = None
        self._set_streaming(False)
        self.screen.app.status_activity = "generation failed"
        self.screen.notify(message, title="Generation failed", severity="error", timeout=10)

    def stop(self, quiet: bool = False) -> None:
        """Stop the running stream now: the cards freeze at once; late tokens are dropped."""
        run = self.run
        if run is None:
            return
        run.cancel.set()
        self.run = None
        for slot in run.slots:
            self.states[slot].finish_reason = "stopped"
            card = self.strip.card(slot)
            if card is not None:
                card.refresh_state()
        self._record(run, run.controls.current)
        self._set_streaming(False)
        if not quiet:
            self.screen.app.status_activity = f"stopped after {run.tokens} tokens"

    def cancel(self) -> None:
        """The screen goes away: the worker stops at its next token."""
        if self.run is not None:
            self.run.cancel.set()

    def _set_streaming(self, on: bool) -> None:
        self.stop_button.disabled = not on
        self.screen.refresh_bindings()
