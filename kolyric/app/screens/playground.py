"""The playground: the draft, a prompt line, streamed candidates, controls and the inspector.

This module holds the key bindings and what the user does with candidates (generate, accept,
branch from an alternative, edit and continue, compare presets, step, browse the tree and the
history); starting streams and recording their candidates are ``GeneratingScreen``'s
(``generating.py``), the layout, the draft and export ``DraftScreen``'s (``draft_screen.py``).
Streaming is a ``StreamController`` (``streaming.py``) and autosave an ``Autosave``
(``autosave.py``), components that own their state; both run their work in thread workers, so
typing in the draft stays instant while a stream runs. Every finished candidate becomes a
node of the draft's tree of versions (``kolyric.app.tree``), saved with the draft; undo and
redo go through a journal saved with it too (``kolyric.app.undo``).
"""

from __future__ import annotations

from collections.abc import Iterable

from textual import on
from textual.app import SystemCommand
from textual.binding import Binding
from textual.widgets import Button

from kolyric.app.messages import (
    AcceptCandidate,
    AlternativeChosen,
    CardFocused,
    CompareProgress,
    EditCandidate,
    KeepCandidate,
    ModelPick,
    SettingsChanged,
    StepReady,
    TokenSelected,
)
from kolyric.app.screens.generating import GeneratingScreen
from kolyric.app.tree import Node
from kolyric.app.widgets.candidates import CandidateCard, CandidateStrip
from kolyric.app.widgets.inspector import TokenInspector


class PlaygroundScreen(GeneratingScreen):
    BINDINGS = [
        # short words: the footer holds them all at 80 columns
        Binding("ctrl+g", "generate", "Generate", priority=True),
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+r", "regenerate", "Again", tooltip="Regenerate with the last request", priority=True),
        Binding("ctrl+o", "accept", "Accept", priority=True),
        Binding("f5", "history", "History"),
        Binding("f7", "compare", "Compare", tooltip="The prompt under several presets, one seed", priority=True),
        Binding("f8", "step", "Step", tooltip="One token at a time; F8 again: to the end", priority=True),
        Binding("f6", "tree", "Tree", tooltip="Every version of this draft's candidates", priority=True),
        Binding("ctrl+s", "export", "Export", tooltip="Export the draft as .txt", priority=True),
        Binding(
            "ctrl+t", "target_line", "Target", tooltip="Target the cursor line's syllables and rhyme", priority=True
        ),
    ]

    # -- generating ----------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return True if self.streaming or self.steps.active else None
        return super().check_action(action, parameters)

    def action_compare(self) -> None:
        """F7: the prompt under the tutorial's presets, one seed (the controls' or a fresh one),
        the controls' length, alternatives and constraints."""
        if not self._can_generate():
            return
        import secrets

        from kolyric.compare import TUTORIAL_PRESETS
        from kolyric.engine.results import GenerationRequest

        prompt, polarity, context = self._request_parts()
        settings = self.controls.settings
        seed = settings.seed if settings.seed is not None else secrets.randbelow(2**32)
        request = GenerationRequest(prompt, polarity, settings, context=context, constraints=self.controls.constraints)
        self.slot_nodes = {}
        self.compare.start(
            request,
            TUTORIAL_PRESETS,
            {"seed": seed, "max_length": settings.max_length, "alternatives": settings.alternatives},
            self.app.host.generator,
        )

    def action_step(self) -> None:
        """F8: step mode on the prompt; F8 during it continues from the chosen tokens to the end."""
        if self.steps.active:
            step = self.steps.step
            if self.steps.busy or step is None:
                return
            self.steps.step = None  # the stream below makes the node, with every chosen token
            request = step.request
            self.start(
                request.prompt,
                request.polarity,
                request.context,
                slot=0,
                forced=tuple(t.token_id for t in step.chosen),
                origin=("step", None, None),
            )
            return
        if not self._can_generate():
            return
        from kolyric.engine.results import GenerationRequest

        prompt, polarity, context = self._request_parts()
        self.compare.cancel()
        self.slot_nodes = {}
        self.steps.start(
            GenerationRequest(
                prompt, polarity, self.controls.settings, context=context, constraints=self.controls.constraints
            ),
            self.app.host.generator,
        )
        self.notify(
            "Step mode: 1-9/0 take an alternative, Space the model's pick, F8 to the end, Esc stops.", timeout=6
        )

    def on_step_ready(self, message: StepReady) -> None:
        self.steps.ready(message)

    def on_model_pick(self, message: ModelPick) -> None:
        if self.steps.active and message.slot == 0:
            refusal = self.steps.pick(None)
            if refusal:
                self.notify(f"Not now: {refusal}.", timeout=3)

    def on_compare_progress(self, message: CompareProgress) -> None:
        self.compare.progress(message)

    def on_keep_candidate(self, message: KeepCandidate) -> None:
        if message.slot in self.slot_nodes:
            self.notify("That version is in the tree already (F6).", timeout=3)
        elif self._keep(message.slot) is not None:
            self.notify(f"Kept in the tree: {self.states[message.slot].title}", timeout=3, markup=False)

    def action_generate(self) -> None:
        prompt, polarity, context = self._request_parts()
        self.start(prompt, polarity, context)

    def action_regenerate(self) -> None:
        last = self.stream.last_request
        if last is None:
            self.action_generate()
        else:
            self.start(last.prompt, last.polarity, last.context)

    @on(Button.Pressed, "#generate")
    def _generate_pressed(self) -> None:
        self.action_generate()

    @on(Button.Pressed, "#stop")
    def _stop_pressed(self) -> None:
        self.action_stop()

    # -- controls, tokens, accepting -------------------------------------------------------------
    def on_settings_changed(self, message: SettingsChanged) -> None:
        self.query_one("#generate", Button).disabled = bool(message.problems)
        self.draft_changed()  # the constraint fields are saved with the draft
        self.editor.rhyme_options_changed()  # the controls' options are valid even when other fields are not
        if message.problems:
            return
        if self.run is not None:
            self.run.controls.update(message.settings)  # applies from the next token

    def on_token_selected(self, message: TokenSelected) -> None:
        self.current_slot = message.slot
        state = self.states.get(message.slot)
        if state is not None and message.index < len(state.tokens):
            excluded = self.steps.excluded_at(message.slot, message.index)  # step mode's ✗ marks stay
            self.query_one(TokenInspector).show(message.slot, message.index, state.tokens[message.index], excluded)

    def on_card_focused(self, message: CardFocused) -> None:
        inspector = self.query_one(TokenInspector)
        if inspector.slot != message.slot:
            inspector.clear(f"#{message.slot + 1}: ←/→ selects a token")

    def on_descendant_focus(self, event: object) -> None:
        widget = getattr(event, "widget", None)
        if isinstance(widget, CandidateCard):
            self.current_slot = widget.slot

    def on_alternative_chosen(self, message: AlternativeChosen) -> None:
        if self.steps.active and message.slot == 0:
            refusal = self.steps.pick(message.token_id)
            if refusal:
                self.notify(f"Not taken: {refusal}.", severity="warning", timeout=4)
            return
        state, request = self.states.get(message.slot), self._request_of(message.slot)
        if state is None or request is None or state.streaming:
            return
        forced = tuple(t.token_id for t in state.tokens[: message.index]) + (message.token_id,)
        origin = ("branch", self._keep(message.slot), message.index)
        if self.start(
            request.prompt, request.polarity, request.context, slot=message.slot, forced=forced, origin=origin
        ):
            self.stream.select_when_done[message.slot] = message.index
            card = self.query_one(CandidateStrip).card(message.slot)
            if card is not None:
                card.focus()

    def on_edit_candidate(self, message: EditCandidate) -> None:
        """E on a card: edit its text, then continue from the edited text (two nodes)."""
        from kolyric.app.screens.tree import EditScreen

        state = self.states.get(message.slot)
        if state is None or state.streaming:
            return

        def edited(text: str | None) -> None:
            if text is None or not text.strip() or state is None:
                return
            request = self._request_of(message.slot)
            if request is None:
                return
            parent = self.slot_nodes.get(message.slot)
            base = self.versions.nodes.get(parent) if parent is not None else None
            edit = self.versions.add(
                Node(
                    0,
                    "edit",
                    state.prompt,
                    text.strip(),
                    parent=parent,
                    polarity=request.polarity,
                    context=tuple(request.context),
                    model=base.model if base is not None else self.app.host.spec,
                    settings=dict(base.settings) if base is not None else {},
                )
            )
            self.start(
                text.strip(), request.polarity, request.context, slot=message.slot, origin=("continue", edit.id, None)
            )

        self.app.push_screen(EditScreen(state.accepted_text()), edited)

    def action_accept(self) -> None:
        self.accept(self.current_slot)

    def on_accept_candidate(self, message: AcceptCandidate) -> None:
        self.accept(message.slot)

    def accept(self, slot: int) -> None:
        state = self.states.get(slot)
        if state is None:
            self.notify("Nothing to accept yet: generate first (Ctrl+G).", severity="warning")
            return
        if state.streaming:
            self.stop_stream()
        text = state.accepted_text()
        if not text:
            self.notify("That candidate is empty.", severity="warning")
            return
        self._keep(slot)
        self.accept_text(text, state.prompt)
        for entry in reversed(self.history):
            if entry.text == text:
                entry.accepted = True
                break
        node = self.slot_nodes.get(slot)
        if node is not None:
            self.versions.mark_accepted(node)
        card = self.query_one(CandidateStrip).card(slot)
        if card is not None:
            card.add_class("-accepted")

    # -- dialogs ---------------------------------------------------------------------------------
    def action_history(self) -> None:
        from kolyric.app.screens.history import HistoryScreen

        def chosen(index: int | None) -> None:
            if index is not None:
                self.history[index].accepted = True
                self.accept_text(self.history[index].text, self.history[index].prompt)

        self.app.push_screen(HistoryScreen(self.history), chosen)

    def action_tree(self) -> None:
        from kolyric.app.screens.tree import TreeScreen

        def chosen(choice: tuple[str, int] | None) -> None:
            if choice is None or choice[1] not in self.versions.nodes:
                return
            what, node = choice[0], self.versions.nodes[choice[1]]
            if what == "accept":
                self.versions.mark_accepted(node.id)
                self.accept_text(node.text, node.prompt)
                self.draft_changed()
            else:
                self.show_nodes([node])

        prompt = self.stream.last_request.prompt if self.stream.last_request is not None else self.prompt_input.value
        self.app.push_screen(TreeScreen(self.versions, prompt, self.versions.current), chosen)

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Generate", "Continue the prompt line (Ctrl+G)", self.action_generate)
        yield SystemCommand("Stop", "Stop the running stream (Esc)", self.action_stop)
        yield SystemCommand("Export draft", "Write the draft to a .txt file (Ctrl+S)", self.action_export)
        yield SystemCommand("History", "Browse this session's candidates (F5)", self.action_history)
        yield SystemCommand(
            "Compare presets", "The prompt under the tutorial's presets, one seed (F7)", self.action_compare
        )
        yield SystemCommand("Step mode", "Generate one token at a time and choose each (F8)", self.action_step)
        yield SystemCommand("Tree of versions", "Every candidate of this draft, as a tree (F6)", self.action_tree)
        yield SystemCommand(
            "Target this line", "Generate to the cursor line's syllables and rhyme (Ctrl+T)", self.action_target_line
        )
        from kolyric.engine.settings import PRESETS

        for name in PRESETS:
            yield SystemCommand(
                f"Preset: {name}",
                "Set every decoding control from this preset",
                lambda name=name: self.controls.apply_preset(name),
            )
