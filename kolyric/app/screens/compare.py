"""The compare view (F7): one prompt, one seed, several presets, as cards side by side.

``CompareRunner`` runs the presets in turn (``kolyric.compare``: each exactly as a single run
with that preset and seed) in one thread worker, filling one card per preset, titled with the
preset (what it sets under it); a card streams ("streaming…") until its run ends. The cards are the
playground's own: the inspector, branching and accepting work on them as on any candidate, and
``k`` keeps one in the tree of versions (accepting or branching from one keeps it too).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from textual.screen import Screen

from kolyric.app.messages import CompareProgress
from kolyric.app.screens.streaming import StreamController
from kolyric.app.session import CandidateState, finish_state

if TYPE_CHECKING:
    from kolyric.compare import Compared
    from kolyric.engine.results import GenerationRequest
    from kolyric.engine.stream import Generator


class CompareRunner:
    """One compare run at a time, shown through ``stream``'s cards."""

    def __init__(self, screen: Screen, stream: StreamController) -> None:
        self.screen = screen
        self.stream = stream
        self.run_id = 0
        self.cancel_flag = threading.Event()
        self.compared: dict[int, Compared] = {}  # card slot -> its finished run, while those cards show
        self._states: dict[int, CandidateState] = {}

    def start(
        self, request: GenerationRequest, names: Sequence[str], overrides: Mapping[str, Any], generator: Generator
    ) -> None:
        from kolyric.compare import compare_settings, preset_title

        self.cancel()
        runs = compare_settings(names, overrides)
        self.run_id += 1
        self.cancel_flag = threading.Event()
        self._states = {}
        for i, (name, settings) in enumerate(runs):
            title = preset_title(name, settings)  # "top-p-0.92 · sample, top_p 0.92"
            self._states[i] = CandidateState(i, request.prompt, title=name, subtitle=title.partition(" · ")[2])
        self.compared = {}
        self.stream.show(list(self._states.values()), {})
        run_id, cancel = self.run_id, self.cancel_flag
        self.screen.app.status_activity = f"comparing {len(runs)} presets…"
        self.screen.run_worker(
            lambda: self._work(run_id, cancel, request, runs, generator),
            thread=True,
            group="compare",
            exit_on_error=False,
        )

    def _work(
        self,
        run_id: int,
        cancel: threading.Event,
        request: GenerationRequest,
        runs: list[tuple[str, Any]],
        generator: Generator,
    ) -> None:
        from kolyric.compare import Compared, preset_title
        from kolyric.engine.results import DoneEvent, TokenEvent

        for index, (name, settings) in enumerate(runs):
            if cancel.is_set():
                return
            one = replace(request, settings=settings)
            pieces: list[str] = []
            tokens: list[Any] = []
            try:
                for event in generator.stream(one, cancel=cancel):
                    if isinstance(event, TokenEvent):
                        pieces.append(event.text)
                        tokens.append(event.token)
                    elif isinstance(event, DoneEvent):
                        done = Compared(name, preset_title(name, settings), one, event.result)
                        self.screen.post_message(CompareProgress(run_id, index, done, pieces, tokens))
            except Exception as exc:  # noqa: BLE001 - shown on the card, never raised
                self.screen.post_message(CompareProgress(run_id, index, None, error=f"{type(exc).__name__}: {exc}"))

    def progress(self, message: CompareProgress) -> None:
        state = self._states.get(message.index)
        if message.run_id != self.run_id or state is None or self.stream.states.get(message.index) is not state:
            return  # another run, or other cards since
        done = message.compared
        if done is None:
            state.finish_reason = "failed"
            self.screen.notify(message.error or "failed", title="A compared preset failed", severity="error")
        else:
            state.tokens, state.pieces = list(message.tokens), list(message.pieces)
            finish_state(state, done.result.candidates[0], done.result, self.screen.app.model_window)
            self.compared[message.index] = done
            self.stream.slot_requests[message.index] = done.request
        card = self.stream.strip.card(message.index)
        if card is not None:
            card.refresh_state()
        if all(not s.streaming for s in self._states.values()):
            self.screen.app.status_activity = f"compared {len(self._states)} presets"

    def cancel(self) -> None:
        self.cancel_flag.set()
        self.run_id += 1
