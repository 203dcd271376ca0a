"""The sections panel: each section of the draft with its rhyme scheme and syllable pattern.

One row per section (``[Verse 1]``, ``[후렴]`` …, or the lines before the first header): its
name, the scheme (``AABB``, letters in their rhyme group's colour) and the pattern
(``8-8-7-9``). The section holding the editor's cursor is marked; the subtitle describes the
cursor's line. It reads ``kolyric.korean.analyse``'s result, given by the playground.
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.text import Text
from textual.widgets import Static

from kolyric.app.guard import Guarded
from kolyric.app.widgets.rhyme import group_colours, rhyme_palette

NAME_WIDTH = 12


class SectionsPanel(Guarded, Static):
    DEFAULT_CSS = """
    SectionsPanel {
        height: auto;
        max-height: 10;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
        border-subtitle-color: $text-muted;
        padding: 0 1;
        overflow-y: auto;
        scrollbar-size-vertical: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.border_title = "Sections · scheme · pattern"
        self.analysis: Any = None
        self.cursor_line = 0  # 0-based draft line
        self._shown: Text | None = None

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._repaint_all())

    def _repaint_all(self) -> None:
        """The rhyme colours come from the theme: paint again, even when the text is the same."""
        self._shown = None
        if self.analysis is not None:
            self._paint_sections()

    def show(self, analysis: Any, cursor_line: int | None = None) -> None:
        self.analysis = analysis
        if cursor_line is not None:
            self.cursor_line = cursor_line
        self._paint_sections()

    def set_cursor(self, line: int) -> None:
        if line != self.cursor_line:
            self.cursor_line = line
            if self.analysis is not None:
                self._paint_sections()

    def current_section(self) -> Any:
        """The section the cursor is in (the last one starting at or above it), or None."""
        current = None
        for section in self.analysis.sections if self.analysis else ():
            if current is None or section.start_line - 1 <= self.cursor_line:
                current = section
        return current

    def _paint_sections(self) -> None:
        analysis = self.analysis
        if analysis is None or not analysis.sections:
            self._show(Text("Sections show here: [Verse 1], [후렴] …", style="dim"))
            self.border_subtitle = ""
            return
        palette = rhyme_palette(self.app)
        colours = group_colours(analysis)
        current = self.current_section()
        text = Text()
        for n, section in enumerate(analysis.sections):
            if n:
                text.append("\n")
            here = section is current
            name = section.name if section.name is not None else "(top)"
            if cell_len(name) > NAME_WIDTH:  # cells, not characters: Hangul takes two
                name = set_cell_size(name, NAME_WIDTH - 1) + "…"
            text.append("▸ " if here else "  ", style="bold" if here else "")
            text.append(set_cell_size(name, NAME_WIDTH) + " ", style="bold" if here else "")
            if not section.lines:
                text.append("—", style="dim")
                continue
            for line in section.lines:
                colour = colours.get(line.group) if line.group is not None else None
                text.append(
                    line.letter, style=f"bold {palette[colour % len(palette)]}" if colour is not None else "dim"
                )
            text.append(f"  {section.pattern}", style="" if here else "dim")
        self._show(text)
        self.border_subtitle = self._line_summary()

    def _show(self, text: Text) -> None:
        """Repaint only when the text changed, and lay out only when its row count did (the
        panel's CSS does not wrap, so rows are lines): this runs on every keypress in the draft,
        and a layout pass costs more than the analysis."""
        if text == self._shown:
            return
        rows = text.plain.count("\n")
        self.update(text, layout=self._shown is None or rows != self._shown.plain.count("\n"))
        self._shown = text

    def _line_summary(self) -> str:
        for line in self.analysis.lines:
            if line.number - 1 == self.cursor_line:
                key = f" · rhyme {line.rhyme_label} ({line.letter})" if line.rhyme_label else ""
                return f"line {line.number}: {line.syllables} syl{key}"
        return ""
