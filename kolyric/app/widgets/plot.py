"""A small line plot for training curves, drawn with braille dots (2×4 per cell).

Each series is a list of (x, y) points with a colour; the y range covers all series, and
the left margin shows its top and bottom values. Repainting is cheap enough to redraw on
every event.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from kolyric.app.guard import Guarded

MARGIN = 7  # columns for the y labels
# braille dot bits, indexed [row][column] within a cell
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))


@dataclass
class Series:
    name: str
    color: str  # a Rich colour, or a theme variable such as "$accent"
    points: list[tuple[float, float]] = field(default_factory=list)


def _line(x0: int, y0: int, x1: int, y1: int) -> list[tuple[int, int]]:
    """Pixels of a straight line (Bresenham)."""
    points = []
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
    err = dx + dy
    while True:
        points.append((x0, y0))
        if x0 == x1 and y0 == y1:
            return points
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x0 += sx
        if e2 <= dx:
            err += dx
            y0 += sy


class LossPlot(Guarded, Widget):
    """Plots ``series``; call ``add(name, x, y)`` then it repaints itself."""

    DEFAULT_CSS = """
    LossPlot { height: 1fr; min-height: 4; color: $text-muted; }
    """

    def __init__(self, series: list[Series], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.series = {s.name: s for s in series}
        self._cells: dict[tuple[int, int], tuple[int, str]] = {}
        self._range: tuple[float, float] | None = None

    def add(self, name: str, x: float, y: float) -> None:
        self.series[name].points.append((float(x), float(y)))
        self._cells.clear()
        self.refresh()

    def clear(self) -> None:
        for s in self.series.values():
            s.points.clear()
        self._cells.clear()
        self._range = None
        self.refresh()

    def _layout(self) -> None:
        """Rasterise every series into braille cells for the current size."""
        width, height = max(1, self.size.width - MARGIN), max(1, self.size.height)
        points = [p for s in self.series.values() for p in s.points]
        self._cells = {}
        if not points:
            self._range = None
            return
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x_lo, x_hi, y_lo, y_hi = min(xs), max(xs), min(ys), max(ys)
        if y_hi - y_lo < 1e-9:
            y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
        self._range = (y_lo, y_hi)
        px_w, px_h = width * 2, height * 4

        def pixel(x: float, y: float) -> tuple[int, int]:
            fx = 0.0 if x_hi == x_lo else (x - x_lo) / (x_hi - x_lo)
            return round(fx * (px_w - 1)), round((1 - (y - y_lo) / (y_hi - y_lo)) * (px_h - 1))

        for s in self.series.values():
            pixels = [pixel(x, y) for x, y in s.points]
            path = pixels[:1] + [p for a, b in itertools.pairwise(pixels) for p in _line(*a, *b)[1:]]
            for px, py in path:
                cell = (px // 2, py // 4)
                bits, _ = self._cells.get(cell, (0, s.color))
                self._cells[cell] = (bits | _DOTS[py % 4][px % 2], s.color)

    def on_resize(self) -> None:
        self._cells.clear()

    def render_line(self, y: int) -> Strip:
        if not self._cells:
            self._layout()
        base = self.rich_style
        width = self.size.width
        if self._range is None:
            text = "no points yet" if y == 0 else ""
            return Strip([Segment(text.ljust(width)[:width], base)], width)
        y_lo, y_hi = self._range
        label = f"{y_hi:>6.3g} " if y == 0 else f"{y_lo:>6.3g} " if y == self.size.height - 1 else " " * MARGIN
        segments = [Segment(label[:MARGIN].ljust(MARGIN), base)]
        for x in range(width - MARGIN):
            cell = self._cells.get((x, y))
            if cell is None:
                segments.append(Segment(" ", base))
            else:
                bits, color = cell
                segments.append(Segment(chr(0x2800 + bits), base + self._style(color)))
        return Strip(segments, width)

    def _style(self, color: str) -> Style:
        """A colour, or a theme variable such as ``$accent`` resolved in the current theme."""
        if color.startswith("$"):
            color = self.app.theme_variables.get(color[1:], "white")
        return Style.parse(color.split()[0])
