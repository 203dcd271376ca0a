"""The lyric-aids gutter: a line's cells beside the first row the line takes in the editor.

A column is any object with a ``width``, a ``name``, ``cell(line, index) -> str`` and
``style(line, index)``; the gutter paints the columns side by side for the visible lines and
follows the editor's scrolling. A column that needs the whole draft (rhyme groups span lines)
also has ``prepare(analysis)``, called with ``kolyric.korean.analyse``'s result whenever the
draft or the rhyme options change. Widths are terminal cells: jamo such as ㅏ take two.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Protocol

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Offset
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import TextArea

from kolyric.app.guard import Guarded
from kolyric.korean.hangul import count_syllables
from kolyric.korean.sections import is_header


class GutterColumn(Protocol):
    name: str
    width: int

    def cell(self, line: str, index: int) -> str: ...

    def style(self, line: str, index: int) -> str | None:
        """A Rich style for this cell, e.g. a rhyme colour ("bold #e5546b"); None: the default."""


class SyllableColumn:
    """The syllable count of each lyric line: ``LineAnalysis.syllables`` from the draft's
    analysis (``prepare``), so the gutter, the sections panel and ``lyrics check`` share one
    count. A line the analysis has not seen yet (the frame between an edit and its analysis) is
    counted directly."""

    name = "syllables"
    width = 3

    def __init__(self) -> None:
        self._lines: dict[int, Any] = {}  # line index -> its LineAnalysis

    def prepare(self, analysis: Any) -> None:
        self._lines = {line.number - 1: line for line in analysis.lines}

    def cell(self, line: str, index: int) -> str:
        known = self._lines.get(index)
        if known is not None and known.text == line:
            n = known.syllables
        elif line.strip() and not is_header(line):
            n = count_syllables(line)
        else:  # a blank line or a section header
            return ""
        return str(n) if n < 1000 else "1k+"  # a pasted wall of text: never a cropped, wrong number

    def style(self, line: str, index: int) -> str | None:
        return None


class LyricGutter(Guarded, Widget):
    """Paints its columns for the lines the editor shows, beside each line's first row (a long
    line wraps onto more rows; those stay blank here)."""

    COMPONENT_CLASSES = {"lyric-gutter--cell", "lyric-gutter--cursor"}
    DEFAULT_CSS = """
    LyricGutter {
        width: auto;
        height: 1fr;
        padding: 0 1 0 0;
        background: $surface;
        color: $text-muted;
    }
    LyricGutter > .lyric-gutter--cell { color: $accent; }
    LyricGutter > .lyric-gutter--cursor { color: $accent; text-style: bold; background: $boost; }
    """

    def __init__(
        self, text_area: TextArea, columns: list[GutterColumn] | None = None, *, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.text_area = text_area
        self.columns: list[GutterColumn] = list(columns) if columns else [SyllableColumn()]

    def on_mount(self) -> None:
        self.watch(self.text_area, "scroll_y", lambda _: self.refresh(), init=False)
        self.watch(self.text_area, "selection", lambda _: self.refresh(), init=False)  # the cursor's row
        self.watch(self.text_area, "virtual_size", lambda _: self.refresh(), init=False)  # wrapped again

    def get_content_width(self, container, viewport) -> int:  # Textual's signature
        return sum(c.width for c in self.columns) + len(self.columns) - 1

    def set_analysis(self, analysis: object) -> None:
        """Give the columns that want it the draft's analysis, then repaint (and re-measure:
        a column's width may depend on the rhyme options)."""
        widths = [c.width for c in self.columns]
        for column in self.columns:
            prepare = getattr(column, "prepare", None)
            if prepare is not None:
                prepare(analysis)
        # a layout pass only when a width changed: typing must not re-lay out the screen
        self.refresh(layout=widths != [c.width for c in self.columns])

    def cells(self, index: int) -> list[str]:
        """The column texts for draft line ``index`` (for tests and other widgets)."""
        line = self.text_area.document.get_line(index)
        return [c.cell(line, index) for c in self.columns]

    def line_at_row(self, y: int) -> int | None:
        """The draft line whose first row is row ``y`` of the editor's view, or None (a wrapped
        line's later rows, or below the last line)."""
        area = self.text_area
        row = int(area.scroll_y) + y
        wrapped = area.wrapped_document
        if row >= wrapped.height:
            return None
        index, column = wrapped.offset_to_location(Offset(0, row))
        if column or index >= area.document.line_count:
            return None
        return index

    def render_line(self, y: int) -> Strip:
        document = self.text_area.document
        index = self.line_at_row(y)
        width = self.size.width
        base = self.rich_style
        if index is None:
            return Strip([Segment(" " * width, base)], width)
        line = document.get_line(index)
        on_cursor = index == self.text_area.cursor_location[0]
        default = self.get_component_rich_style("lyric-gutter--cursor" if on_cursor else "lyric-gutter--cell")
        segments: list[Segment] = []
        for n, column in enumerate(self.columns):
            if n:
                segments.append(Segment(" ", base))
            text = _fit(column.cell(line, index), column.width, getattr(column, "align", "right"))
            own = column.style(line, index)
            style = default + _parse(own) if own else default
            segments.append(Segment(text, base + style))
        return Strip(segments).adjust_cell_length(width, base)


def _fit(text: str, width: int, align: str) -> str:
    """``text`` cropped or padded to ``width`` terminal cells (Hangul and jamo take two)."""
    if cell_len(text) > width:
        return set_cell_size(text, width)
    pad = " " * (width - cell_len(text))
    return pad + text if align == "right" else text + pad


@lru_cache(maxsize=256)
def _parse(style: str) -> Style:
    return Style.parse(style)
