"""Rhyme in the playground: the gutter's rhyme-key column and the colour of each rhyme group.

Lines whose endings share a rhyme key (``kolyric.korean.rhyme``) form a group; every group of
two or more lines gets a colour, in the order the groups first appear in the draft, so the
gutter, the sections panel and the scheme letters agree. A line that rhymes with no other
line shows its key dimmed. Colours come from the theme's ``rhyme-1`` …
``rhyme-6`` variables, or from its accent, secondary, success, primary, warning and error
colours when it has none (Textual's own themes, users' themes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

RHYME_VARIABLES = tuple(f"rhyme-{n}" for n in range(1, 7))
# not $error: red is what an unmet constraint is shown in
FALLBACK_VARIABLES = ("accent", "secondary", "success", "primary", "warning")


def group_colours(analysis: Any) -> dict[int, int]:
    """Colour number (0, 1, 2 …) of each rhyme group with two or more lines, by first appearance."""
    sizes = Counter(line.group for line in analysis.lines if line.group is not None)
    numbers: dict[int, int] = {}
    for line in analysis.lines:
        if line.group is not None and sizes[line.group] > 1 and line.group not in numbers:
            numbers[line.group] = len(numbers)
    return numbers


_palettes: dict[int, tuple[Any, list[str]]] = {}


def rhyme_palette(app: Any) -> list[str]:
    """The current theme's rhyme colours as Rich colour strings, distinct, at least one.
    Cached per theme object (a theme registered again under the same name is a new object)."""
    theme = app.current_theme
    cached = _palettes.get(id(theme))
    if cached is not None and cached[0] is theme:
        return cached[1]
    variables = app.get_css_variables()
    names = [v for v in RHYME_VARIABLES if v in variables] or [v for v in FALLBACK_VARIABLES if v in variables]
    palette = list(dict.fromkeys(_rich_colour(variables[v]) for v in names)) or ["yellow"]
    _palettes[id(theme)] = (theme, palette)
    return palette


def _rich_colour(css: str) -> str:
    """A CSS colour (``#RRGGBB``, ``#RRGGBBAA``, ``rgb(…)``, names) as Rich understands it."""
    from textual.color import Color

    try:
        return Color.parse(css).hex6
    except Exception:  # noqa: BLE001 - Textual raises several types for bad colours
        return "yellow"


class RhymeColumn:
    """The ending of each lyric line ("ㅏ", "ㅏ-ㅗ", "ㅏㄴ" when strict), in its group's colour
    when another line shares its rhyme key. It shows the line's own vowels (``rhyme_label``:
    네 shows ㅔ, in the colour of the lines ending on 내). Its width follows the rhyme options."""

    name = "rhyme"
    align = "left"

    def __init__(self, palette: Callable[[], list[str]]) -> None:
        self.palette = palette
        self.width = 2
        self._lines: dict[int, Any] = {}  # line index -> its LineAnalysis
        self._colours: dict[int, int] = {}  # rhyme group -> colour number (``group_colours``)

    def prepare(self, analysis: Any) -> None:
        options = analysis.options
        # a vowel jamo is two cells wide, a final adds two, keys join syllables with "-"
        self.width = options.syllables * (4 if options.strict else 2) + options.syllables - 1
        self._lines = {line.number - 1: line for line in analysis.lines}
        self._colours = group_colours(analysis)

    def _analysed(self, line: str, index: int) -> Any:
        """Line ``index``'s analysis, or None; also None in the frame between an edit and its
        analysis, so another line's key or colour is never shown."""
        known = self._lines.get(index)
        return known if known is not None and known.text == line else None

    def cell(self, line: str, index: int) -> str:
        known = self._analysed(line, index)
        return (known.rhyme_label or "") if known is not None else ""

    def colour(self, index: int) -> int | None:
        """The colour number of draft line ``index``; None when it rhymes with no other line."""
        known = self._lines.get(index)
        return self._colours.get(known.group) if known is not None and known.group is not None else None

    def style(self, line: str, index: int) -> str | None:
        known = self._analysed(line, index)
        if known is None:
            return None
        number = self._colours.get(known.group) if known.group is not None else None
        if number is None:
            return "dim"  # a key no other line shares
        palette = self.palette()
        return f"bold {palette[number % len(palette)]}"
