"""The playground: the draft, a prompt line, streamed candidates, controls and the inspector.

This module holds the layout, the key bindings and what the user does with candidates
(accept, branch from an alternative, edit and continue, browse the tree and the history,
export). Streaming is a ``StreamController`` (``streaming.py``) and autosave an ``Autosave``
(``autosave.py``), components that own their state; both run their work in thread workers,
so typing in the draft stays instant while a stream runs. Every finished candidate becomes a
node of the draft's tree of versions (``kolyric.app.tree``), saved with the draft; undo and
redo go through a journal saved with it too (``kolyric.app.undo``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from textual import on
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Input, Label, Select, Static, TextArea

from kolyric.app.drafts import Draft
from kolyric.app.guard import Guarded
from kolyric.app.messages import (
    AcceptCandidate,
    AlternativeChosen,
    CardFocused,
    CompareProgress,
    DraftAnalysed,
    DraftSaved,
    DraftSaveFailed,
    EditCandidate,
    KeepCandidate,
    ModelPick,
    PresetChosen,
    SettingsChanged,
    StepReady,
    StreamFailed,
    StreamProgress,
    TokenSelected,
    UndoRequested,
)
from kolyric.app.screens.autosave import Autosave
from kolyric.app.screens.compare import CompareRunner
from kolyric.app.screens.step import StepSession, StepState
from kolyric.app.screens.streaming import Finished, StreamController
from kolyric.app.session import (
    CandidateState,
    GenerationRequestLike,
    HistoryEntry,
    StreamRun,
    changes_summary,
    draft_context,
    node_from_state,
    settings_summary,
    state_from_node,
)
from kolyric.app.tree import Node, VersionTree
from kolyric.app.undo import UndoJournal
from kolyric.app.widgets.candidates import CandidateCard, CandidateStrip
from kolyric.app.widgets.controls import ControlsPanel
from kolyric.app.widgets.editor import LyricsEditor
from kolyric.app.widgets.fields import CalmFocus
from kolyric.app.widgets.inspector import TokenInspector
from kolyric.app.widgets.sections import SectionsPanel
from kolyric.app.widgets.status import FittingFooter, StatusBar
from kolyric.engine.lyric.spec import MAX_SYLLABLES

POLARITIES = [("polarity –", "none"), ("긍정 (+)", "긍정"), ("부정 (−)", "부정")]
PROMPT_HINT = "a line to continue (Ctrl+G)"


class PlaygroundScreen(Guarded, CalmFocus, Screen):
    # classes for small terminals (app.tcss): a narrower right column, shorter panels
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]
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
        Binding("ctrl+t", "target_line", "Target", tooltip="Target the cursor line's syllables and rhyme",
                priority=True),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.history: list[HistoryEntry] = []
        self.current_slot = 0
        self.slot_nodes: dict[int, int] = {}  # card slot -> the tree node it shows
        self._origins: dict[int, tuple[str, int | None, int | None]] = {}  # run id -> (kind, parent, at)

    def compose(self) -> ComposeResult:
        draft, notices = self.app.drafts.load()
        tree, tree_notices = self.app.drafts.load_tree()
        restored = bool(draft and draft.text)
        if restored and not any(n.startswith("Restored") for n in notices):
            notices = [*notices, "Restored your last draft."]
        self._restore_notices = notices + tree_notices
        self._restored = restored
        draft = draft or Draft()
        self.versions: VersionTree = tree
        self.journal = UndoJournal(draft.undo, draft.undo_at, draft.text)
        self.autosave = Autosave(self, self.app.drafts, self.current_draft, tree, draft)
        with Horizontal(id="main"):
            with Vertical(id="left"):
                self.editor = LyricsEditor(draft.text, id="editor")
                yield self.editor
                with Horizontal(id="prompt-row"):
                    yield Label("prompt", classes="row-label")
                    self.prompt_input = Input(draft.prompt, placeholder=PROMPT_HINT,
                                              compact=True, id="prompt")
                    yield self.prompt_input
                    self.polarity_select = Select(POLARITIES, value=draft.polarity or "none", allow_blank=False,
                                                  compact=True, id="polarity")
                    yield self.polarity_select
                with Horizontal(id="candidates-bar"):
                    yield Static("Candidates", id="candidates-title")
                    yield Button("Generate", id="generate", variant="primary", compact=True)
                    stop = Button("Stop", id="stop", variant="error", compact=True, disabled=True)
                    yield stop
                strip = CandidateStrip(Static("Generated lines appear here, token by token.",
                                              classes="placeholder"), id="candidates")
                yield strip
            with Vertical(id="right"):
                self.controls = ControlsPanel(self.app.preset_name, constraints=dict(draft.constraints),
                                              id="controls")
                yield self.controls
                self.sections = SectionsPanel(id="sections")
                yield self.sections
                inspector = TokenInspector(id="inspector")
                yield inspector
        yield StatusBar()
        yield FittingFooter()
        self.stream = StreamController(self, strip, inspector, stop, self._recorded)
        self.compare = CompareRunner(self, self.stream)
        self.steps = StepSession(self, self.stream, self._step_ended)

    def on_mount(self) -> None:
        self.app.draft_screen = self  # saved first whenever an unexpected error is reported
        if self._restored:
            self.app.status_draft, self.app.status_draft_ok = "draft restored", True
        for notice in self._restore_notices:
            warn = "unreadable" in notice or "could not be read" in notice
            self.notify(notice, severity="warning" if warn else "information", timeout=12 if warn else 8,
                        markup=False)
        self.app.settle_cursors(self)
        self.editor.area.focus()
        if self.versions.current:  # the candidates shown when the app closed, with every alternative
            self.show_nodes([self.versions.nodes[i] for i in self.versions.current])
        # cursor_location is a property over the ``selection`` reactive: watch that
        self.watch(self.editor.area, "selection", lambda selection: self.sections.set_cursor(selection.end[0]))

    def on_resize(self) -> None:
        # narrow screens hide the "prompt" label (app.tcss): the empty box says what it is for
        narrow = self.has_class("-narrow")
        self.prompt_input.placeholder = f"prompt: {PROMPT_HINT}" if narrow else PROMPT_HINT

    def on_unmount(self) -> None:
        self.stream.cancel()
        self.flush_draft()
        if self.app.draft_screen is self:
            self.app.draft_screen = None

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

    # -- the draft -----------------------------------------------------------------------------
    def current_draft(self) -> Draft:
        # Widget references, not queries: this also runs at unmount, when queries find nothing.
        polarity = self.polarity_select.value
        states, at = self.journal.snapshot()
        return Draft(self.editor.text, self.prompt_input.value, polarity if polarity in ("긍정", "부정") else None,
                     tuple(self.controls.changed_constraints().items()), undo=states, undo_at=at)

    def draft_changed(self) -> None:
        self.autosave.changed()

    def save_draft_now(self) -> None:
        self.autosave.save_now()

    def flush_draft(self) -> bool:
        return self.autosave.flush()

    def on_draft_saved(self, message: DraftSaved) -> None:
        self.autosave.saved(message)

    def on_draft_save_failed(self, message: DraftSaveFailed) -> None:
        self.autosave.failed(message)

    @on(TextArea.Changed)
    def _lyrics_edited(self) -> None:
        self.journal.record(self.editor.text)
        self.draft_changed()

    @on(Input.Changed, "#prompt")
    @on(Select.Changed, "#polarity")
    def _edited(self) -> None:
        self.draft_changed()

    def on_undo_requested(self, message: UndoRequested) -> None:
        if message.reset is not None:
            self.journal.reset(message.reset)
            return
        text = self.journal.redo() if message.redo else self.journal.undo()
        if text is None:
            self.notify("Nothing to redo." if message.redo else "Nothing to undo.", timeout=2)
            return
        self.editor.apply_text(text)
        self.draft_changed()

    def on_draft_analysed(self, message: DraftAnalysed) -> None:
        self.sections.show(message.analysis, self.editor.cursor_line)

    def action_target_line(self) -> None:
        """Use the cursor line's syllable count and ending as the constraints' target."""
        from kolyric.korean import count_syllables, is_header, last_syllables

        if not self.controls.ready:
            self.notify("The controls are still loading; press Ctrl+T again in a moment.", severity="warning")
            return
        line = self.editor.lines()[self.editor.cursor_line]
        if not line.strip() or is_header(line):
            self.notify("Put the cursor on a lyric line first: its syllables and rhyme become the target.",
                        severity="warning")
            return
        count = count_syllables(line)
        ending = last_syllables(line, self.controls.rhyme_options.syllables)
        if not 1 <= count <= MAX_SYLLABLES:
            self.notify(f"That line has {count} syllables; a target is 1 to {MAX_SYLLABLES}.", severity="warning")
            return
        rhymes = len(ending) == self.controls.rhyme_options.syllables
        had_pattern = bool(str(self.controls.raw_constraints().get("pattern") or "").strip())
        self.controls.set_values(syllables=count, pattern="", rhyme=ending if rhymes else "")
        rhyme = f", rhyming with {ending}" if rhymes else " (too few Hangul syllables to rhyme with)"
        cleared = " The syllable pattern was cleared: one count applies to every line." if had_pattern else ""
        self.notify(f"Target: {count} syllables{rhyme}.{cleared}", timeout=5)

    # -- generating ----------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return True if self.streaming or self.steps.active else None
        return True

    def _request_parts(self) -> tuple[str, str | None, tuple[str, ...]]:
        prompt = self.prompt_input.value
        polarity = self.polarity_select.value
        context = draft_context(self.editor.lines(), self.editor.cursor_line, prompt)
        return prompt, polarity if polarity in ("긍정", "부정") else None, context

    def _can_generate(self) -> bool:
        if not self.app.host.ready:
            self.notify("No model is loaded yet." + (" Press F4 to choose one." if not self.app.status_busy else
                                                     " It is still loading."), severity="warning")
            return False
        if not self.controls.valid:
            problem = self.controls.problems[0]
            self.notify(f"Generation waits until the controls are valid: {problem.field}: {problem.message}",
                        title="Fix the controls first", severity="error")
            self.query_one(f"#ctl-{problem.field}").focus()
            return False
        return True

    def start(self, prompt: str, polarity: str | None, context: tuple[str, ...], *,
              slot: int | None = None, forced: tuple[int, ...] = (),
              origin: tuple[str, int | None, int | None] = ("generate", None, None)) -> bool:
        """Start a stream (fresh, or rewriting ``slot``) under the controls; False when it cannot.
        ``origin`` is what its nodes record: (kind, parent node, token position)."""
        if not self._can_generate():
            return False
        host = self.app.host
        from kolyric.engine.stream import GenerationRequest

        settings = self.controls.settings
        if slot is not None:  # a branch rewrites one candidate: one row, greedy where beams were
            settings = settings.replace(n=1, strategy="greedy" if settings.strategy == "beam" else settings.strategy,
                                        max_length=min(1024, max(settings.max_length, len(forced) + 1)))
        request = GenerationRequest(prompt, polarity, settings, context=context, forced_ids=forced,
                                    constraints=self.controls.constraints)
        if slot is None:
            self.slot_nodes = {}
            self.compare.cancel()
        if origin[0] != "step" and self.steps.active:
            self.steps.end()
        self.stream.start(request, host.generator, slot=slot)
        if self.stream.run is not None:
            self._origins[self.stream.run.run_id] = origin
        return True

    def _recorded(self, done: Finished) -> None:
        """A candidate finished (or was stopped): into the history and the tree."""
        state, request = done.state, done.request
        kind, parent, at = self._origins.get(done.run_id, ("generate", None, None))
        summary = settings_summary(done.began, state.finish_reason, state.report)
        if done.changes:
            summary += f" · changed {changes_summary(done.changes)}"
        constraints = request.constraints.to_dict() if request.constraints is not None else None
        self.history.append(HistoryEntry(
            state.accepted_text(), state.prompt, request.polarity, summary, settings=done.began.to_dict(),
            candidate=done.candidate, context=tuple(request.context), constraints=constraints,
            forced_ids=tuple(request.forced_ids), model=self.app.host.spec, finish_reason=state.finish_reason,
            settings_changes=done.changes))
        node = self.versions.add(node_from_state(state, request, done.began.to_dict(), done.changes, kind=kind,
                                             model=self.app.host.spec, candidate=done.candidate, parent=parent,
                                             at=at))
        self.slot_nodes[done.slot] = node.id
        self.versions.set_current(self.slot_nodes[s] for s in sorted(self.slot_nodes))
        self.draft_changed()

    def show_nodes(self, nodes: list[Node]) -> None:
        """Make ``nodes`` the current candidates: cards with every token and alternative, as live."""
        states = [state_from_node(node, slot) for slot, node in enumerate(nodes)]
        self.stream.show(states, {})
        self.slot_nodes = {slot: node.id for slot, node in enumerate(nodes)}
        self.versions.set_current(node.id for node in nodes)
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
        return GenerationRequest(node.prompt, node.polarity, self.controls.settings, context=node.context,
                                 forced_ids=node.forced_ids, constraints=constraints)

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
        request = GenerationRequest(prompt, polarity, settings, context=context,
                                    constraints=self.controls.constraints)
        self.slot_nodes = {}
        self.compare.start(request, TUTORIAL_PRESETS, {"seed": seed, "max_length": settings.max_length,
                                                       "alternatives": settings.alternatives}, self.app.host.generator)

    def action_step(self) -> None:
        """F8: step mode on the prompt; F8 during it continues from the chosen tokens to the end."""
        if self.steps.active:
            step = self.steps.step
            if self.steps.busy or step is None:
                return
            self.steps.step = None  # the stream below makes the node, with every chosen token
            request = step.request
            self.start(request.prompt, request.polarity, request.context, slot=0,
                       forced=tuple(t.token_id for t in step.chosen), origin=("step", None, None))
            return
        if not self._can_generate():
            return
        from kolyric.engine.results import GenerationRequest

        prompt, polarity, context = self._request_parts()
        self.compare.cancel()
        self.slot_nodes = {}
        self.steps.start(GenerationRequest(prompt, polarity, self.controls.settings, context=context,
                                           constraints=self.controls.constraints), self.app.host.generator)
        self.notify("Step mode: 1-9/0 take an alternative, Space the model's pick, F8 to the end, Esc stops.",
                    timeout=6)

    def on_step_ready(self, message: StepReady) -> None:
        self.steps.ready(message)

    def on_model_pick(self, message: ModelPick) -> None:
        if self.steps.active and message.slot == 0:
            refusal = self.steps.pick(None)
            if refusal:
                self.notify(f"Not now: {refusal}.", timeout=3)

    def _step_ended(self, step: StepState) -> None:
        """Esc in step mode: the tokens chosen so far are a node of their own."""
        state = self.states.get(0)
        if not step.chosen or state is None:
            return
        state.full_text = ""
        node = self.versions.add(node_from_state(state, step.request, step.request.settings.to_dict(), (),
                                                 kind="step", model=self.app.host.spec))
        self.slot_nodes = {0: node.id}
        self.versions.set_current([node.id])
        self.draft_changed()

    def on_compare_progress(self, message: CompareProgress) -> None:
        self.compare.progress(message)

    def on_keep_candidate(self, message: KeepCandidate) -> None:
        if message.slot in self.slot_nodes:
            self.notify("That version is in the tree already (F6).", timeout=3)
        elif self._keep(message.slot) is not None:
            self.notify(f"Kept in the tree: {self.states[message.slot].title}", timeout=3, markup=False)

    def _keep(self, slot: int) -> int | None:
        """A compared card as a tree node (once); its node id, or None when it is not one."""
        if slot in self.slot_nodes:
            return self.slot_nodes[slot]
        done, state = self.compare.compared.get(slot), self.states.get(slot)
        if done is None or state is None:
            return None
        node = self.versions.add(node_from_state(state, done.request, done.result.settings.to_dict(), (),
                                                 kind="compare", model=self.app.host.spec))
        self.slot_nodes[slot] = node.id
        self.versions.set_current(self.slot_nodes[s] for s in sorted(self.slot_nodes))
        self.draft_changed()
        return node.id

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
        self.editor.set_rhyme_options(self.controls.rhyme_options)  # valid even when other fields are not
        if message.problems:
            return
        if self.run is not None:
            self.run.controls.update(message.settings)  # applies from the next token

    def on_preset_chosen(self, message: PresetChosen) -> None:
        self.app.remember_preset(message.name)

    def on_token_selected(self, message: TokenSelected) -> None:
        self.current_slot = message.slot
        state = self.states.get(message.slot)
        if state is not None and message.index < len(state.tokens):
            self.query_one(TokenInspector).show(message.slot, message.index, state.tokens[message.index])

    def on_card_focused(self, message: CardFocused) -> None:
        inspector = self.query_one(TokenInspector)
        if inspector.slot != message.slot:
            inspector.clear(f"#{message.slot + 1}: ←/→ selects a token")

    def on_candidate_strip_range_changed(self, message: CandidateStrip.RangeChanged) -> None:
        title = self.query_one("#candidates-title", Static)
        if message.total <= 1:
            title.update("Candidates")
        elif message.first == 1 and message.last == message.total:
            title.update(f"Candidates · {message.total}")
        else:
            shown = f"{message.first}" if message.first == message.last else f"{message.first}–{message.last}"
            title.update(f"Candidates · {shown} of {message.total} · Tab/scroll: more")

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
        if self.start(request.prompt, request.polarity, request.context, slot=message.slot, forced=forced,
                      origin=origin):
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
            edit = self.versions.add(Node(0, "edit", state.prompt, text.strip(), parent=parent,
                                      polarity=request.polarity, context=tuple(request.context),
                                      model=base.model if base is not None else self.app.host.spec,
                                      settings=dict(base.settings) if base is not None else {}))
            self.start(text.strip(), request.polarity, request.context, slot=message.slot,
                       origin=("continue", edit.id, None))

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

    def accept_text(self, text: str, prompt: str = "") -> None:
        """Put an accepted candidate (its prompt line, then what was generated) into the draft.
        The prompt line is not written twice when the draft has it at the cursor, or as the
        last line written above the cursor (blank lines between): new lines go below it, and
        a completed line replaces it."""
        editor, prompt = self.editor, prompt.strip()
        self.journal.boundary()  # an accept is one undo step of its own
        row = self._prompt_row(prompt) if prompt and text.startswith(prompt) else None
        if row is not None:
            rest = text[len(prompt):]
            if rest.startswith("\n"):
                editor.area.move_cursor((row, len(editor.lines()[row])))
                editor.insert_line(rest[1:])
            else:
                editor.replace_line(row, text)
        else:
            editor.insert_line(text)
        self.journal.record(editor.text, boundary=True)
        self.notify(f"Added to the draft: {text[:40]}", timeout=3, markup=False)

    def _prompt_row(self, prompt: str) -> int | None:
        """The draft line holding ``prompt``: the cursor's line, or the nearest written line
        above a blank cursor line."""
        lines, row = self.editor.lines(), self.editor.cursor_line
        while row > 0 and not lines[row].strip():
            row -= 1
        return row if lines[row].strip() == prompt else None

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

    def action_export(self) -> None:
        from kolyric.app.screens.export import ExportScreen

        self.app.push_screen(ExportScreen(self.editor.text, record=self.export_record()))

    def export_record(self) -> dict:
        """How the draft was made, written beside an export: the model, the current controls,
        and every accepted line with the settings, seed and context that made it."""
        draft = self.current_draft()
        constraints = self.controls.constraints
        return {
            "format": "kolyric-export", "version": 1,
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "model": self.app.host.spec, "model_description": self.app.host.description,
            "prompt": draft.prompt, "polarity": draft.polarity,
            "settings": self.controls.settings.to_dict(),
            "constraints": constraints.to_dict() if constraints is not None else None,
            # accepted this session and still in the draft (an accept undone with Ctrl+Z is not)
            "accepted": [entry.to_dict() for entry in self.history
                         if entry.accepted and all(line in draft.text for line in entry.text.split("\n"))],
            "tree": self.versions.to_dict(),  # every version, in kolyric.app.tree's format
        }

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Generate", "Continue the prompt line (Ctrl+G)", self.action_generate)
        yield SystemCommand("Stop", "Stop the running stream (Esc)", self.action_stop)
        yield SystemCommand("Export draft", "Write the draft to a .txt file (Ctrl+S)", self.action_export)
        yield SystemCommand("History", "Browse this session's candidates (F5)", self.action_history)
        yield SystemCommand("Compare presets", "The prompt under the tutorial's presets, one seed (F7)",
                            self.action_compare)
        yield SystemCommand("Step mode", "Generate one token at a time and choose each (F8)", self.action_step)
        yield SystemCommand("Tree of versions", "Every candidate of this draft, as a tree (F6)", self.action_tree)
        yield SystemCommand("Target this line", "Generate to the cursor line's syllables and rhyme (Ctrl+T)",
                            self.action_target_line)
        from kolyric.engine.settings import PRESETS

        for name in PRESETS:
            yield SystemCommand(f"Preset: {name}", "Set every decoding control from this preset",
                                lambda name=name: self.controls.apply_preset(name))
