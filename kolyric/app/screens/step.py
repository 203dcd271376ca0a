"""Step mode (F8): generate one token at a time and choose each.

Each step runs the request with the tokens chosen so far forced (the engine's branch-from-an-
alternative path) and one new token allowed, so the step's choice is the model's under every
control and constraint in force. The card shows the tokens so far and the model's pick; the
inspector shows the pick's alternatives, those the constraints exclude marked ✗ (read from the
constraint state's mask for the chosen prefix). 1-9/0 (or Enter in the inspector) take an
alternative, Space takes the model's pick, F8 again continues to the end as a normal stream,
Esc stops; the tokens chosen become a ``step`` node of the tree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from textual.screen import Screen

from kolyric.app.messages import StepReady
from kolyric.app.screens.streaming import StreamController
from kolyric.app.session import CandidateState

if TYPE_CHECKING:
    from kolyric.engine.results import GenerationRequest, TokenInfo
    from kolyric.engine.stream import Generator


@dataclass
class StepState:
    request: GenerationRequest
    chosen: list[Any] = field(default_factory=list)  # engine TokenInfo of each chosen token
    pieces: list[str] = field(default_factory=list)
    pending: TokenInfo | None = None  # the model's pick for the next token
    pending_piece: str = ""
    excluded: frozenset[int] = frozenset()  # alternatives of the pick the constraints exclude
    finished: str | None = None  # why no further token can come (eos, constraint, length)
    result: Any = None


class StepSession:
    """One step-mode candidate in card slot 0 of ``stream``'s strip."""

    def __init__(self, screen: Screen, stream: StreamController, on_ended: Callable[[StepState], None]) -> None:
        self.screen = screen
        self.stream = stream
        self.on_ended = on_ended
        self.step: StepState | None = None
        self.card_state: CandidateState | None = None
        self.busy = False
        self._generator: Generator | None = None

    @property
    def active(self) -> bool:
        return self.step is not None

    def start(self, request: GenerationRequest, generator: Generator) -> None:
        self._generator = generator
        settings = request.settings
        settings = settings.replace(n=1, strategy="greedy" if settings.strategy == "beam" else settings.strategy)
        self.step = StepState(replace(request, settings=settings))
        self.card_state = CandidateState(0, request.prompt, title="step")
        self.stream.show([self.card_state], {})
        self._next()

    def _next(self) -> None:
        step, generator = self.step, self._generator
        if step is None or generator is None:
            return
        self.busy = True
        forced = tuple(t.token_id for t in step.chosen)
        request = replace(
            step.request,
            forced_ids=forced,
            settings=step.request.settings.replace(max_length=min(1024, len(forced) + 1)),
        )
        self.screen.run_worker(lambda: self._work(request, generator), thread=True, group="step", exit_on_error=False)

    def _work(self, request: GenerationRequest, generator: Generator) -> None:
        from kolyric.engine.results import DoneEvent, TokenEvent

        pieces, result = [], None
        try:
            for event in generator.stream(request):
                if isinstance(event, TokenEvent):
                    pieces.append(event.text)
                elif isinstance(event, DoneEvent):
                    result = event.result
            excluded = excluded_alternatives(generator, request, result)
        except Exception as exc:  # noqa: BLE001 - said on screen, never raised
            self.screen.post_message(StepReady(None, [], frozenset(), f"{type(exc).__name__}: {exc}"))
            return
        self.screen.post_message(StepReady(result, pieces, excluded))

    def ready(self, message: StepReady) -> None:
        step, state = self.step, self.card_state
        self.busy = False
        if step is None or state is None or self.stream.states.get(0) is not state:
            return
        if message.result is None:
            self.screen.notify(message.error or "the step failed", title="Step failed", severity="error")
            self.end()
            return
        candidate = message.result.candidates[0]
        n = len(step.chosen)
        step.result = message.result
        if len(candidate.tokens) > n and candidate.tokens[n].token_id != generator_eos(self._generator):
            step.pending, step.excluded = candidate.tokens[n], message.excluded
            step.pending_piece = message.pieces[n] if len(message.pieces) > n else candidate.tokens[n].text
            step.finished = candidate.finish_reason if candidate.finish_reason in ("constraint",) else None
        else:
            step.pending, step.finished = None, candidate.finish_reason or "eos"
        self._paint()
        card = self.stream.strip.card(0)
        if n == 0 and card is not None:  # the keys step mode names (1-9, 0, Space) are the card's
            card.focus()

    def _paint(self) -> None:
        step, state = self.step, self.card_state
        if step is None or state is None:
            return
        state.tokens = [*step.chosen, *([step.pending] if step.pending is not None else [])]
        state.pieces = [*step.pieces, *([step.pending_piece] if step.pending is not None else [])]
        state.finish_reason = "your pick" if step.pending is not None else f"step · {step.finished}"
        state.title = f"step · {len(step.chosen)} chosen"
        state.full_text = ""
        card = self.stream.strip.card(0)
        if card is not None:
            card.refresh_state()
            if step.pending is not None:
                card.selected = len(step.chosen)
                card.refresh()
                self.stream.inspector.show(0, len(step.chosen), step.pending, excluded=step.excluded)

    def excluded_at(self, slot: int, index: int) -> frozenset[int]:
        """The alternatives marked ✗ where card ``slot``'s token ``index`` is shown: the pick's,
        while step mode waits on it; none elsewhere."""
        step = self.step
        if step is None or slot != 0 or step.pending is None or index != len(step.chosen):
            return frozenset()
        return step.excluded

    def pick(self, token_id: int | None) -> str | None:
        """Take ``token_id`` (an alternative of the pick) or, None, the model's pick; a refusal, or None."""
        step = self.step
        if step is None or self.busy or step.pending is None:
            return "the next choice is still being computed" if self.busy else "nothing to choose now"
        if token_id is not None and token_id in step.excluded:
            return "the constraints exclude that token here"
        pending = step.pending
        if token_id is not None and token_id != pending.token_id:
            alt = next((a for a in pending.alternatives if a.token_id == token_id), None)
            if alt is None:
                return "not one of the choices"
            text = self._generator.token_text(token_id) if self._generator is not None else alt.text
            pending = replace(pending, token_id=token_id, text=text, prob=alt.prob)
            piece = text
        else:
            piece = step.pending_piece
        step.chosen.append(pending)
        step.pieces.append(piece)
        step.pending = None
        if step.finished:  # the pick ended the constrained lines: nothing can follow
            self._paint()
            return None
        self._paint()
        self._next()
        return None

    def end(self) -> StepState | None:
        step, self.step = self.step, None
        if step is not None:
            if self.card_state is not None:
                self.card_state.finish_reason = "stopped"
                self.card_state.tokens, self.card_state.pieces = list(step.chosen), list(step.pieces)
                card = self.stream.strip.card(0)
                if card is not None:
                    card.refresh_state()
            self.on_ended(step)
        return step


def generator_eos(generator: Generator | None) -> int | None:
    return generator.eos_id if generator is not None else None


def excluded_alternatives(generator: Generator, request: GenerationRequest, result: Any) -> frozenset[int]:
    """The alternatives of the step's new token that the request's constraints do not allow
    after the chosen prefix (the constraint state's mask for it)."""
    if request.constraints is None or result is None or not result.candidates:
        return frozenset()
    candidate = result.candidates[0]
    n = len(request.forced_ids)
    if len(candidate.tokens) <= n:
        return frozenset()
    max_new = generator.max_new_tokens(request, request.settings)
    prompt, _ = generator.prompt_ids(request, max_new)
    state = generator.constraints_for(request, len(prompt), max_new)
    if state is None:
        return frozenset()
    mask = state.mask_of(state.state_for(tuple(request.forced_ids)))
    return frozenset(a.token_id for a in candidate.tokens[n].alternatives if not bool(mask[a.token_id]))
