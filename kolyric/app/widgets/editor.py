"""The lyrics editor: a TextArea holding the draft, with the lyric-aids gutter beside it.

Long lines soft-wrap (a lyric line is never cut off at the edge, and there is no sideways
scrolling to lose a line's first cells after a resize); the gutter shows a line's cells on the
first row it takes. Every edit re-analyses the draft (sections, syllables, rhyme groups; about 2 ms for 200
lines) under the current rhyme options, feeds the gutter's columns and posts
``DraftAnalysed`` for the sections panel.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.geometry import Offset
from textual.widgets import TextArea

from kolyric.app.guard import Guarded
from kolyric.app.messages import DraftAnalysed, UndoRequested
from kolyric.app.undo import difference, location
from kolyric.app.widgets.gutter import GutterColumn, LyricGutter, SyllableColumn
from kolyric.app.widgets.rhyme import RhymeColumn, rhyme_palette
from kolyric.korean import Analysis, RhymeOptions, analyse


class DraftArea(Guarded, TextArea):
    """The TextArea of the draft (its own type so CSS and tests can find it). Undo and redo go
    to the screen's journal (``kolyric.app.undo``), which outlives the app; TextArea's own is
    in memory only."""

    # TextArea binds Home/End to the line only; a draft is long, and editors go to its ends here.
    BINDINGS = [
        Binding("ctrl+home", "cursor_document_start", "Start of draft", show=False),
        Binding("ctrl+end", "cursor_document_end", "End of draft", show=False),
        Binding("ctrl+shift+home", "cursor_document_start(True)", "Select to start", show=False),
        Binding("ctrl+shift+end", "cursor_document_end(True)", "Select to end", show=False),
    ]

    def action_cursor_document_start(self, select: bool = False) -> None:
        self.move_cursor(self.document.start, select=select)

    def action_cursor_document_end(self, select: bool = False) -> None:
        self.move_cursor(self.document.end, select=select)

    def action_undo(self) -> None:
        self.post_message(UndoRequested(redo=False))

    def action_redo(self) -> None:
        self.post_message(UndoRequested(redo=True))

    def _recompute_cursor_offset(self) -> None:
        # Textual's undo re-measures the document before it moves the cursor back inside it; when
        # that shows or hides a scrollbar, it asks where the cursor is while the cursor still
        # points past the last line (an undo of two new lines at 80x24 raised ValueError). Ask
        # about the nearest place inside the document instead; the cursor moves there next.
        document = self.document
        row, column = self.cursor_location
        last = document.line_count - 1
        if row > last:
            row, column = last, len(document.get_line(last))
        self._cursor_offset = self.wrapped_document.location_to_offset((row, min(column, len(document.get_line(row)))))


class LyricsEditor(Guarded, Horizontal):
    """The draft and its gutter. ``text`` is the draft; editing posts ``TextArea.Changed``."""

    DEFAULT_CSS = """
    LyricsEditor {
        height: 1fr;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
    }
    LyricsEditor:focus-within { border: round $primary; border-title-color: $primary; }
    LyricsEditor DraftArea { border: none; padding: 0 1; height: 1fr; width: 1fr; }
    LyricsEditor DraftArea:focus { border: none; }
    """

    def __init__(
        self,
        text: str = "",
        columns: list[GutterColumn] | None = None,
        *,
        rhyme_options: Callable[[], RhymeOptions] | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.area = DraftArea(text, soft_wrap=True, show_line_numbers=True, id="draft", highlight_cursor_line=True)
        if columns is None:
            columns = [SyllableColumn(), RhymeColumn(lambda: rhyme_palette(self.app))]
        self.lyric_gutter = LyricGutter(self.area, columns, id="gutter")
        self.border_title = "Draft"
        self.border_subtitle = "syllables · rhyme ↑"
        # The rhyme options have one home, the controls panel's lyric fields; the editor asks for them.
        self.options_source: Callable[[], RhymeOptions] = rhyme_options or RhymeOptions
        self.analysis: Analysis | None = None
        self._place_top: int | None = None  # a restored view's first line, until the cursor moves

    def compose(self) -> ComposeResult:
        yield self.area
        yield self.lyric_gutter

    def on_mount(self) -> None:
        self.reanalyse()
        self.watch(self.area, "virtual_size", lambda _: self._scroll_to_place(), init=False)
        self.watch(self.area, "selection", self._left_place, init=False)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        self.reanalyse()  # the event bubbles on to the screen for autosave

    def reanalyse(self) -> None:
        """Analyse the draft now; the gutter repaints and the screen hears ``DraftAnalysed``."""
        self.analysis = analyse(self.area.text, self.options_source())
        self.lyric_gutter.set_analysis(self.analysis)
        self.post_message(DraftAnalysed(self.analysis))

    @property
    def rhyme_options(self) -> RhymeOptions:
        """The options the draft was last analysed under."""
        return self.analysis.options if self.analysis is not None else self.options_source()

    def rhyme_options_changed(self) -> None:
        """Analyse again when the source's options differ from those of the last analysis."""
        if self.options_source() != self.rhyme_options:
            self.reanalyse()

    @property
    def text(self) -> str:
        return self.area.text

    def load(self, text: str) -> None:
        """Replace the draft; like TextArea's own, the undo history starts again from it."""
        self.area.load_text(text)
        self.post_message(UndoRequested(reset=text))
        self.reanalyse()

    def apply_text(self, text: str) -> None:
        """Make the draft ``text`` by replacing only what differs (an undo or redo); the cursor
        goes to the end of the change, which is always inside the document."""
        area = self.area
        current = area.text
        if text == current:
            return
        start, end, middle = difference(current, text)
        edit = area.replace(middle, location(current, start), location(current, end))
        last = area.document.line_count - 1
        row, column = edit.end_location
        row = max(0, min(row, last))
        area.move_cursor((row, min(column, len(area.document.get_line(row)))))

    def lines(self) -> list[str]:
        doc = self.area.document
        return [doc.get_line(i) for i in range(doc.line_count)]

    @property
    def cursor_line(self) -> int:
        return self.area.cursor_location[0]

    @property
    def top_line(self) -> int:
        """The draft line shown at the top of the view (where a restart scrolls back to)."""
        area = self.area
        wrapped = area.wrapped_document
        row = int(area.scroll_y)
        if row >= wrapped.height:
            return 0
        return min(wrapped.offset_to_location(Offset(0, row))[0], area.document.line_count - 1)

    def restore_place(self, cursor: tuple[int, int], top: int) -> None:
        """Put the cursor at ``cursor`` and line ``top`` at the top of the view, both kept inside
        the draft (a saved place past its end is its end), then scroll on only as far as the
        cursor needs to be in view: the window may be smaller than when the place was saved.
        The view goes back there each time the editor is resized or its lines wrap anew (the
        first frames lay the screen out more than once), until the cursor moves."""
        area, document = self.area, self.area.document
        last = document.line_count - 1
        row = min(cursor[0], last)
        area.move_cursor((row, min(cursor[1], len(document.get_line(row)))))
        self._place_top = min(top, last)  # after the move: the selection watcher clears it
        self._scroll_to_place()

    def _scroll_to_place(self) -> None:
        if self._place_top is None:
            return
        area = self.area
        y = area.wrapped_document.location_to_offset((self._place_top, 0)).y
        area.scroll_to(y=y, animate=False, immediate=True)
        area.scroll_cursor_visible()

    def on_resize(self) -> None:
        if self._place_top is not None:  # a taller view scrolls differently; wrapping is watched above
            self.call_after_refresh(self._scroll_to_place)

    def _left_place(self, _selection: object) -> None:
        self._place_top = None

    def replace_line(self, row: int, text: str) -> None:
        """Put ``text`` in place of line ``row`` (one undo step), the cursor at its end."""
        area = self.area
        edit = area.replace(text, (row, 0), (row, len(area.document.get_line(row))))
        area.move_cursor(edit.end_location)

    def insert_line(self, text: str) -> None:
        """Put ``text`` on a new line after the cursor's line (on it, if that line is empty)."""
        area = self.area
        row = area.cursor_location[0]
        current = area.document.get_line(row)
        end = (row, len(current))
        if not area.text.strip() or not current.strip():
            edit = area.replace(text, (row, 0), end)
        else:
            edit = area.insert("\n" + text, end)
        area.move_cursor(edit.end_location)  # the end of the last inserted line
