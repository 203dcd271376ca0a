"""The playground's draft side: the layout, the draft and its autosave, undo and redo, the tree
of versions it carries, putting accepted lines into it, and export.

``DraftScreen`` owns the widgets and the components (``Autosave``, the ``StreamController`` the
candidates are shown through, the ``UndoJournal``, the ``VersionTree``); ``PlaygroundScreen``
(``playground.py``) adds generating, branching, comparing and stepping on top of it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Input, Label, Select, Static, TextArea

from kolyric.app.drafts import Draft
from kolyric.app.guard import Guarded
from kolyric.app.messages import DraftAnalysed, DraftSaved, DraftSaveFailed, PresetChosen, UndoRequested
from kolyric.app.screens.autosave import Autosave
from kolyric.app.screens.streaming import Finished, StreamController
from kolyric.app.session import HistoryEntry, state_from_node
from kolyric.app.tree import Node, VersionTree
from kolyric.app.undo import UndoJournal
from kolyric.app.widgets.candidates import CandidateStrip
from kolyric.app.widgets.controls import ControlsPanel
from kolyric.app.widgets.editor import LyricsEditor
from kolyric.app.widgets.fields import CalmFocus
from kolyric.app.widgets.inspector import TokenInspector
from kolyric.app.widgets.sections import SectionsPanel
from kolyric.app.widgets.status import FittingFooter, StatusBar
from kolyric.engine.lyric.spec import MAX_SYLLABLES

POLARITIES = [("polarity –", "none"), ("긍정 (+)", "긍정"), ("부정 (−)", "부정")]
PROMPT_HINT = "a line to continue (Ctrl+G)"


class DraftScreen(Guarded, CalmFocus, Screen):
    # classes for small terminals (app.tcss): a narrower right column, shorter panels
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]
    # Undo and redo of the draft wherever the focus is (a card, a button); the draft's own area
    # takes the keys first, and a one-line field keeps them (``check_action``).
    BINDINGS = [
        Binding("ctrl+z", "undo_draft", "Undo", show=False),
        Binding("ctrl+y", "redo_draft", "Redo", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.history: list[HistoryEntry] = []
        self.slot_nodes: dict[int, int] = {}  # card slot -> the tree node it shows
        self.export_folder: Path | None = None  # the folder of this session's last export

    def recorded(self, done: Finished) -> None:
        """A candidate finished streaming (``PlaygroundScreen`` puts it in the history and the tree)."""

    def compose(self) -> ComposeResult:
        draft, notices = self.app.drafts.load()
        tree, tree_notices = self.app.drafts.load_tree()
        restored = bool(draft and draft.text)
        if restored and not any(n.startswith("Restored") for n in notices):
            notices = [*notices, "Restored your last draft."]
        self._restore_notices = notices + tree_notices
        self._restored = restored
        draft = draft or Draft()
        self._place = (draft.cursor, draft.top)
        self.versions: VersionTree = tree
        self.journal = UndoJournal(draft.undo, draft.undo_at, draft.text)
        states, at = self.journal.snapshot()  # as written: a start with nothing changed writes nothing
        self.autosave = Autosave(
            self, self.app.drafts, self.current_draft, tree, dataclasses.replace(draft, undo=states, undo_at=at)
        )
        with Horizontal(id="main"):
            with Vertical(id="left"):
                self.editor = LyricsEditor(draft.text, rhyme_options=lambda: self.controls.rhyme_options, id="editor")
                yield self.editor
                with Horizontal(id="prompt-row"):
                    yield Label("prompt", classes="row-label")
                    self.prompt_input = Input(draft.prompt, placeholder=PROMPT_HINT, compact=True, id="prompt")
                    yield self.prompt_input
                    self.polarity_select = Select(
                        POLARITIES, value=draft.polarity or "none", allow_blank=False, compact=True, id="polarity"
                    )
                    yield self.polarity_select
                with Horizontal(id="candidates-bar"):
                    yield Static("Candidates", id="candidates-title")
                    yield Button("Generate", id="generate", variant="primary", compact=True)
                    stop = Button("Stop", id="stop", variant="error", compact=True, disabled=True)
                    yield stop
                strip = CandidateStrip(
                    Static("Generated lines appear here, token by token.", classes="placeholder"), id="candidates"
                )
                yield strip
            with Vertical(id="right"):
                self.controls = ControlsPanel(
                    self.app.preset_name,
                    constraints=dict(draft.constraints),
                    settings=dict(draft.settings),
                    id="controls",
                )
                yield self.controls
                self.sections = SectionsPanel(id="sections")
                yield self.sections
                inspector = TokenInspector(id="inspector")
                yield inspector
        yield StatusBar()
        yield FittingFooter()
        self.stream = StreamController(self, strip, inspector, stop, self.recorded)

    def on_mount(self) -> None:
        self.app.draft_screen = self  # saved first whenever an unexpected error is reported
        if self._restored:
            self.app.status_draft, self.app.status_draft_ok = "draft restored", True
        for notice in self._restore_notices:
            warn = "unreadable" in notice or "could not be read" in notice
            self.notify(notice, severity="warning" if warn else "information", timeout=12 if warn else 8, markup=False)
        self.app.settle_cursors(self)
        self.editor.area.focus()
        if self._restored:  # back where the writer left off
            self.editor.restore_place(*self._place)
        if self.versions.current:  # the candidates shown when the app closed, with every alternative
            self.show_nodes([self.versions.nodes[i] for i in self.versions.current])
        written = self.autosave.last_written
        if written is not None and not written.settings:
            # a new draft (or one saved before drafts kept the controls): the controls' first values are no edit
            current = self.current_draft()
            # (the place is compared as saved: the view scrolls back to it after the first frame)
            if dataclasses.replace(current, settings=(), cursor=written.cursor, top=written.top) == written:
                self.autosave.last_written = dataclasses.replace(current, cursor=written.cursor, top=written.top)
        # cursor_location is a property over the ``selection`` reactive: watch that
        self.watch(self.editor.area, "selection", self._cursor_moved, init=False)
        self.watch(self.editor.area, "scroll_y", lambda _: self.draft_changed(), init=False)

    def _cursor_moved(self, selection: object) -> None:
        self.sections.set_cursor(self.editor.cursor_line)
        self.draft_changed()  # the place is saved with the draft: a restart opens there

    def on_resize(self) -> None:
        # narrow screens hide the "prompt" label (app.tcss): the empty box says what it is for
        narrow = self.has_class("-narrow")
        self.prompt_input.placeholder = f"prompt: {PROMPT_HINT}" if narrow else PROMPT_HINT

    def on_unmount(self) -> None:
        self.stream.cancel()
        self.flush_draft()
        if self.app.draft_screen is self:
            self.app.draft_screen = None

    def current_draft(self) -> Draft:
        # Widget references, not queries: this also runs at unmount, when queries find nothing.
        polarity = self.polarity_select.value
        states, at = self.journal.snapshot()
        return Draft(
            self.editor.text,
            self.prompt_input.value,
            polarity if polarity in ("긍정", "부정") else None,
            tuple(self.controls.changed_constraints().items()),
            undo=states,
            undo_at=at,
            settings=tuple(self.controls.settings_values().items()),
            cursor=self.editor.area.cursor_location,
            top=self.editor.top_line,
        )

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

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("undo_draft", "redo_draft"):
            # in a one-line field Ctrl+Z means that field: the draft elsewhere is not undone unseen
            return not isinstance(self.focused, Input)
        return True

    def action_undo_draft(self) -> None:
        self.on_undo_requested(UndoRequested(redo=False))

    def action_redo_draft(self) -> None:
        self.on_undo_requested(UndoRequested(redo=True))

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
            self.notify(
                "Put the cursor on a lyric line first: its syllables and rhyme become the target.", severity="warning"
            )
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

    def show_nodes(self, nodes: list[Node]) -> None:
        """Make ``nodes`` the current candidates: cards with every token and alternative, as live."""
        states = [state_from_node(node, slot) for slot, node in enumerate(nodes)]
        self.stream.show(states, {})
        self.slot_nodes = {slot: node.id for slot, node in enumerate(nodes)}
        self.versions.set_current(node.id for node in nodes)
        self.draft_changed()

    def on_preset_chosen(self, message: PresetChosen) -> None:
        self.app.remember_preset(message.name)

    def on_candidate_strip_range_changed(self, message: CandidateStrip.RangeChanged) -> None:
        title = self.query_one("#candidates-title", Static)
        if message.total <= 1:
            title.update("Candidates")
        elif message.first == 1 and message.last == message.total:
            title.update(f"Candidates · {message.total}")
        else:
            shown = f"{message.first}" if message.first == message.last else f"{message.first}–{message.last}"
            title.update(f"Candidates · {shown} of {message.total} · Tab/scroll: more")

    def accept_text(self, text: str, prompt: str = "") -> None:
        """Put an accepted candidate (its prompt line, then what was generated) into the draft.
        The prompt line is not written twice when the draft has it at the cursor, or as the
        last line written above the cursor (blank lines between): new lines go below it, and
        a completed line replaces it."""
        editor, prompt = self.editor, prompt.strip()
        self.journal.boundary()  # an accept is one undo step of its own
        row = self._prompt_row(prompt) if prompt and text.startswith(prompt) else None
        if row is not None:
            rest = text[len(prompt) :]
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

    def action_export(self) -> None:
        from kolyric.app.screens.export import ExportScreen

        def exported(path: str | None) -> None:
            if path:  # the next export this session is offered the same folder
                self.export_folder = Path(path).parent

        screen = ExportScreen(self.editor.text, record=self.export_record(), folder=self.export_folder)
        self.app.push_screen(screen, exported)

    def export_record(self) -> dict:
        """How the draft was made, written beside an export: the model, the current controls,
        and every accepted line with the settings, seed and context that made it."""
        draft = self.current_draft()
        constraints = self.controls.constraints
        return {
            "format": "kolyric-export",
            "version": 1,
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "model": self.app.host.spec,
            "model_description": self.app.host.description,
            "prompt": draft.prompt,
            "polarity": draft.polarity,
            "settings": self.controls.settings.to_dict(),
            "constraints": constraints.to_dict() if constraints is not None else None,
            # accepted this session and still in the draft (an accept undone with Ctrl+Z is not)
            "accepted": [
                entry.to_dict()
                for entry in self.history
                if entry.accepted and all(line in draft.text for line in entry.text.split("\n"))
            ],
            "tree": self.versions.to_dict(),  # every version, in kolyric.app.tree's format
        }
