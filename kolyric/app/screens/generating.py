"""Generating on the playground: starting streams under the controls and recording what they make.

``GeneratingScreen`` adds to ``DraftScreen`` (``draft_screen.py``) the checks before a stream
(a model is loaded, the controls are valid), starting a stream fresh or rewriting one card, and
turning each finished candidate, kept compare card or ended step run into a node of the draft's
tree of versions and an entry of the history. ``PlaygroundScreen`` (``playground.py``) binds the
keys and the user's actions on top of it.
"""

from __future__ import annotations

from textual.app import ComposeResult

from kolyric.app.messages import StreamFailed, StreamProgress
from kolyric.app.screens.compare import CompareRunner
from kolyric.app.screens.draft_screen import DraftScreen
from kolyric.app.screens.step import StepSession, StepState
from kolyric.app.screens.streaming import Finished
from kolyric.app.session import (
    CandidateState,
    GenerationRequestLike,
    HistoryEntry,
    StreamRun,
    changes_summary,
    draft_context,
    node_from_state,
    settings_summary,
)


class GeneratingScreen(DraftScreen):
    def __init__(self) -> None:
        super().__init__()
        self.current_slot = 0
        self._origins: dict[int, tuple[str, int | None, int | None]] = {}  # run id -> (kind, parent, at)

    def compose(self) -> ComposeResult:
        yield from super().compose()
        self.compare = CompareRunner(self, self.stream)
        self.steps = StepSession(self, self.stream, self._step_ended)

    # -- the components' state, as tests and other screens read it ---------------------------------
    @property
    def run(self) -> StreamRun | None:
        return self.stream.run

    @property
    def streaming(self) -> bool:
        return self.stream.streaming

    @property
    def states(self) -> dict[int, CandidateState]:
        return self.stream.states

    def on_stream_progress(self, message: StreamProgress) -> None:
        self.stream.progress(message.run_id)

    def on_stream_failed(self, message: StreamFailed) -> None:
        self.stream.failed(message.run_id, message.message)

    def action_stop(self) -> None:
        if self.steps.active:
            self.steps.end()
        self.stream.stop()

    def stop_stream(self, quiet: bool = False) -> None:
        self.stream.stop(quiet)

    def _request_parts(self) -> tuple[str, str | None, tuple[str, ...]]:
        prompt = self.prompt_input.value
        polarity = self.polarity_select.value
        context = draft_context(self.editor.lines(), self.editor.cursor_line, prompt)
        return prompt, polarity if polarity in ("긍정", "부정") else None, context

    def _can_generate(self) -> bool:
        if not self.app.host.ready:
            self.notify(
                "No model is loaded yet."
                + (" Press F4 to choose one." if not self.app.status_busy else " It is still loading."),
                severity="warning",
            )
            return False
        if not self.controls.valid:
            problem = self.controls.problems[0]
            self.notify(
                f"Generation waits until the controls are valid: {problem.field}: {problem.message}",
                title="Fix the controls first",
                severity="error",
            )
            self.query_one(f"#ctl-{problem.field}").focus()
            return False
        return True

    def start(
        self,
        prompt: str,
        polarity: str | None,
        context: tuple[str, ...],
        *,
        slot: int | None = None,
        forced: tuple[int, ...] = (),
        origin: tuple[str, int | None, int | None] = ("generate", None, None),
    ) -> bool:
        """Start a stream (fresh, or rewriting ``slot``) under the controls; False when it cannot.
        ``origin`` is what its nodes record: (kind, parent node, token position)."""
        if not self._can_generate():
            return False
        host = self.app.host
        from kolyric.engine.stream import GenerationRequest

        settings = self.controls.settings
        if slot is not None:  # a branch rewrites one candidate: one row, greedy where beams were
            settings = settings.replace(
                n=1,
                strategy="greedy" if settings.strategy == "beam" else settings.strategy,
                max_length=min(1024, max(settings.max_length, len(forced) + 1)),
            )
        request = GenerationRequest(
            prompt, polarity, settings, context=context, forced_ids=forced, constraints=self.controls.constraints
        )
        if slot is None:
            self.slot_nodes = {}
            self.compare.cancel()
        if origin[0] != "step" and self.steps.active:
            self.steps.end()
        self.stream.start(request, host.generator, slot=slot)
        if self.stream.run is not None:
            self._origins[self.stream.run.run_id] = origin
        return True

    def recorded(self, done: Finished) -> None:
        """A candidate finished (or was stopped): into the history and the tree."""
        state, request = done.state, done.request
        kind, parent, at = self._origins.get(done.run_id, ("generate", None, None))
        summary = settings_summary(done.began, state.finish_reason, state.report)
        if done.changes:
            summary += f" · changed {changes_summary(done.changes)}"
        constraints = request.constraints.to_dict() if request.constraints is not None else None
        self.history.append(
            HistoryEntry(
                state.accepted_text(),
                state.prompt,
                request.polarity,
                summary,
                settings=done.began.to_dict(),
                candidate=done.candidate,
                context=tuple(request.context),
                constraints=constraints,
                forced_ids=tuple(request.forced_ids),
                model=self.app.host.spec,
                finish_reason=state.finish_reason,
                settings_changes=done.changes,
            )
        )
        node = self.versions.add(
            node_from_state(
                state,
                request,
                done.began.to_dict(),
                done.changes,
                kind=kind,
                model=self.app.host.spec,
                candidate=done.candidate,
                parent=parent,
                at=at,
            )
        )
        self.slot_nodes[done.slot] = node.id
        self.versions.set_current(self.slot_nodes[s] for s in sorted(self.slot_nodes))
        self.draft_changed()

    def _request_of(self, slot: int) -> GenerationRequestLike | None:
        """The request that made the card in ``slot``: the live one, or rebuilt from its node."""
        request = self.stream.slot_requests.get(slot)
        if request is not None:
            return request
        node = self.versions.nodes.get(self.slot_nodes.get(slot, -1))
        if node is None:
            return None
        from kolyric.engine.lyric.spec import from_dict as constraints_from_dict
        from kolyric.engine.stream import GenerationRequest

        constraints = constraints_from_dict(node.constraints) if node.constraints else None
        return GenerationRequest(
            node.prompt,
            node.polarity,
            self.controls.settings,
            context=node.context,
            forced_ids=node.forced_ids,
            constraints=constraints,
        )

    def _step_ended(self, step: StepState) -> None:
        """Esc in step mode: the tokens chosen so far are a node of their own."""
        state = self.states.get(0)
        if not step.chosen or state is None:
            return
        state.full_text = ""
        node = self.versions.add(
            node_from_state(
                state, step.request, step.request.settings.to_dict(), (), kind="step", model=self.app.host.spec
            )
        )
        self.slot_nodes = {0: node.id}
        self.versions.set_current([node.id])
        self.draft_changed()

    def _keep(self, slot: int) -> int | None:
        """A compared card as a tree node (once); its node id, or None when it is not one."""
        if slot in self.slot_nodes:
            return self.slot_nodes[slot]
        done, state = self.compare.compared.get(slot), self.states.get(slot)
        if done is None or state is None:
            return None
        node = self.versions.add(
            node_from_state(
                state, done.request, done.result.settings.to_dict(), (), kind="compare", model=self.app.host.spec
            )
        )
        self.slot_nodes[slot] = node.id
        self.versions.set_current(self.slot_nodes[s] for s in sorted(self.slot_nodes))
        self.draft_changed()
        return node.id
