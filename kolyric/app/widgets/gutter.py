"""The lyric-aids gutter: one row per draft line, beside the editor, made of columns.

A column is any object with a ``width``, a ``name`` and ``cell(line, index) -> str``; the
gutter paints the columns side by side for the visible lines and follows the editor's
scrolling. The syllable count is the first column; more (rhyme keys, colours) plug in by
appending to ``LyricGutter.columns`` or passing them to the constructor, nothing else.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Protocol

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import TextArea

from kolyric.korean.hangul import count_syllables


class GutterColumn(Protocol):
    name: str
    width: int

    def cell(self, line: str, index: int) -> str: ...

    def style(self, line: str, index: int) -> str | None:
        """A Rich style for this cell, e.g. a rhyme colour ("bold #e5546b"); None: the default."""


class SyllableColumn:
    """The syllable count of each non-empty line (``kolyric.korean.hangul.count_syllables``)."""

    name = "syllables"
    width = 3

    def __init__(self) -> None:
        self._cache: dict[str, int] = {}

    def count(self, line: str) -> int:
        n = self._cache.get(line)
        if n is None:
            if len(self._cache) > 4096:  # a long session of edits: forget old lines
                self._cache.clear()
            n = self._cache[line] = count_syllables(line)
        return n

    def cell(self, line: str, index: int) -> str:
        return f"{self.count(line):>{self.width}}" if line.strip() else ""

    def style(self, line: str, index: int) -> str | None:
        return None


class LyricGutter(Widget):
    """Paints its columns for the lines the editor shows, row for row."""

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

    def __init__(self, text_area: TextArea, columns: list[GutterColumn] | None = None,
                 *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.text_area = text_area
        self.columns: list[GutterColumn] = list(columns) if columns else [SyllableColumn()]

    def on_mount(self) -> None:
        self.watch(self.text_area, "scroll_y", lambda _: self.refresh(), init=False)
        self.watch(self.text_area, "cursor_location", lambda _: self.refresh(), init=False)

    def get_content_width(self, container, viewport) -> int:  # noqa: ANN001 - Textual's signature
        return sum(c.width for c in self.columns) + len(self.columns) - 1

    def cells(self, index: int) -> list[str]:
        """The column texts for draft line ``index`` (for tests and other widgets)."""
        line = self.text_area.document.get_line(index)
        return [c.cell(line, index) for c in self.columns]

    def render_line(self, y: int) -> Strip:
        document = self.text_area.document
        index = int(self.text_area.scroll_y) + y
        width = self.size.width
        base = self.rich_style
        if index >= document.line_count:
            return Strip([Segment(" " * width, base)], width)
        line = document.get_line(index)
        on_cursor = index == self.text_area.cursor_location[0]
        default = self.get_component_rich_style(
            "lyric-gutter--cursor" if on_cursor else "lyric-gutter--cell")
        segments: list[Segment] = []
        for n, column in enumerate(self.columns):
            if n:
                segments.append(Segment(" ", base))
            text = column.cell(line, index)[: column.width].rjust(column.width)
            own = column.style(line, index)
            style = _parse(own) if own else default
            segments.append(Segment(text, base + style))
        return Strip(segments).adjust_cell_length(width, base)


@lru_cache(maxsize=256)
def _parse(style: str) -> Style:
    return Style.parse(style)
