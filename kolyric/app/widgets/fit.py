"""Text cut to a number of terminal cells, measured with Rich's ``cell_len`` (a Hangul syllable
takes two cells): a cut ends on a whole character followed by "…", never half a syllable."""

from __future__ import annotations

from rich.cells import cell_len
from textual.reactive import reactive
from textual.widget import Widget

ELLIPSIS = "…"


def ellipsize(text: str, cells: int) -> str:
    """``text`` in at most ``cells`` cells: whole as it is when it fits, else its longest run of
    whole characters that leaves a cell for "…", then "…"."""
    if cell_len(text) <= cells:
        return text
    if cells <= 0:
        return ""
    room, used, end = cells - cell_len(ELLIPSIS), 0, 0
    for ch in text:
        width = cell_len(ch)
        if used + width > room:
            break
        used += width
        end += 1
    return text[:end].rstrip() + ELLIPSIS


def ellipsize_start(text: str, cells: int) -> str:
    """``text`` in at most ``cells`` cells, cut at its start ("…/runs/model"): for a path,
    whose end names it."""
    if cell_len(text) <= cells:
        return text
    return ellipsize(text[::-1], cells)[::-1].lstrip() if cells > 0 else ""


def pad_cells(text: str, cells: int) -> str:
    """``text`` ellipsized to ``cells`` cells, then padded with spaces to exactly that many."""
    text = ellipsize(text, cells)
    return text + " " * (cells - cell_len(text))


class FittedText(Widget):
    """One line of plain text ellipsized to the widget's width (``width: auto`` asks for the
    whole text; a ``max-width`` then decides where it is cut). Repaints without a layout pass
    unless its length changes."""

    DEFAULT_CSS = "FittedText { height: 1; width: auto; }"

    text: reactive[str] = reactive("", layout=True)

    def get_content_width(self, container: object, viewport: object) -> int:
        return cell_len(self.text)

    def render(self) -> str:
        return ellipsize(self.text.replace("\n", " "), self.content_size.width)


def fold_long_words(text: str, cells: int, *, markup: bool = False) -> str:
    """``text`` with each word of wide characters (Hangul) wider than ``cells`` broken into
    lines of whole characters at most ``cells`` wide. Textual wraps at spaces well, but folding
    such a word drops the syllable at the fold; a path or a word holding markup (``[b]``) is
    left whole."""
    if cells < 2:
        return text
    lines = []
    for line in text.split("\n"):
        words = []
        for word in line.split(" "):
            # Textual folds narrow text well: only a word holding wide characters is broken here,
            # and never a path, which stays one piece to be copied
            whole = cell_len(word) == len(word) or "/" in word or "\\" in word or (markup and "[" in word)
            if whole or cell_len(word) <= cells:
                words.append(word)
                continue
            chunks, chunk, used = [], "", 0
            for ch in word:
                width = cell_len(ch)
                if used + width > cells:
                    chunks.append(chunk)
                    chunk, used = "", 0
                chunk += ch
                used += width
            words.append("\n".join([*chunks, chunk]))
        lines.append(" ".join(words))
    return "\n".join(lines)


class NameFirstText(FittedText):
    """ "NAME · DETAIL · DETAIL" (a model, its size, its device) fitted to the widget's width:
    the details stay whole while the name, cut at its start, can keep a few cells."""

    def render(self) -> str:
        width = self.content_size.width
        name, sep, rest = self.text.replace("\n", " ").partition(" · ")
        tail = sep + rest
        room = width - cell_len(tail)
        if not rest or room < 8:
            return ellipsize(self.text.replace("\n", " "), width)
        return ellipsize_start(name, room) + tail
