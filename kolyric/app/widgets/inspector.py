"""The token inspector: the selected token's top-k alternatives with their probabilities (k is
the ``alternatives`` control, 5 by default, up to 20; a long list scrolls), and how much
probability the rest of the vocabulary holds.

Choosing an alternative (Enter on it, or a click) posts ``AlternativeChosen``; the playground
then rewrites that candidate from the token on, starting with the alternative. Columns are
measured in terminal cells (a Hangul syllable takes two), so the bars line up.
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from kolyric.app.guard import Guarded
from kolyric.app.messages import AlternativeChosen
from kolyric.app.widgets.fit import ellipsize, pad_cells

BAR_WIDTH = 10
TEXT_CELLS = 10  # a token's text, cut or padded to this many cells
HINT = "focus a candidate, then ←/→"


def bar(prob: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar of ``prob`` (0..1) in eighths of a cell."""
    eighths = round(max(0.0, min(1.0, prob)) * width * 8)
    full, rest = divmod(eighths, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[rest] if rest else "")).ljust(width)


def shown(text: str) -> str:
    """A token's text made visible: spaces as ␣, empty as ∅."""
    return text.replace(" ", "␣").replace("\n", "↵") if text else "∅"


def fit_cells(text: str, cells: int = TEXT_CELLS) -> str:
    """``text`` in exactly ``cells`` terminal cells: cut with … after a whole syllable when
    longer, padded when shorter."""
    return pad_cells(text, cells)


def alternative_label(k: int, alt: Any, chosen: bool, excluded: bool = False) -> Text:
    """ "3• ␣사랑 ████▌      45.2%": its key (1-9, then 0), whether it was chosen, text, bar, p;
    an alternative the constraints exclude is dimmed and marked ✗."""
    key = str(k + 1) if k < 9 else "0" if k == 9 else " "
    mark = "✗" if excluded else "•" if chosen else " "
    label = Text.assemble(
        f"{key}{mark}", (f" {fit_cells(shown(alt.text))} ", "bold"), (bar(alt.prob), "green"), f" {alt.prob:6.1%}"
    )
    if excluded:
        label.stylize("dim strike")
    return label


TITLE = "Token · alternatives"


class TokenInspector(Guarded, Vertical):
    """Shows one token (slot, index, TokenInfo) at a time."""

    DEFAULT_CSS = """
    TokenInspector {
        height: 10;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
    }
    TokenInspector:focus-within { border: round $primary; }
    TokenInspector #inspector-title { color: $text-muted; padding: 0 1; height: 1; }
    TokenInspector OptionList { border: none; height: 1fr; padding: 0; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = TITLE
        self.slot: int | None = None
        self.index: int | None = None
        self.token: Any = None

    def compose(self) -> ComposeResult:
        yield Static(HINT, id="inspector-title")
        yield OptionList(id="alternatives")

    def show(self, slot: int, index: int, token: Any, excluded: frozenset[int] = frozenset()) -> None:
        """Token ``index`` of card ``slot``; ``excluded``: alternatives the constraints rule out
        (step mode), marked ✗."""
        self.slot, self.index, self.token = slot, index, token
        title = self.query_one("#inspector-title", Static)
        alternatives = token.alternatives
        rest = max(0.0, 1.0 - sum(alt.prob for alt in alternatives))
        # the numbers first, then the token's text in the cells left (cut on a whole syllable)
        head = f"#{slot + 1} token {index + 1} · p {token.prob:.1%}: "
        room = title.content_size.width - cell_len(head)
        text = shown(token.text)
        title.update(Text.assemble(head, (ellipsize(text, room) if room > 0 else text, "bold"), no_wrap=True))
        self.border_title = f"Token · top {len(alternatives)}"
        self.border_subtitle = f"the rest {rest:.1%}"  # the mass of every token not listed
        options = self.query_one("#alternatives", OptionList)
        options.clear_options()
        options.add_options(
            [
                Option(
                    alternative_label(k, alt, alt.token_id == token.token_id, alt.token_id in excluded), id=f"alt-{k}"
                )
                for k, alt in enumerate(alternatives)
            ]
        )

    def clear(self, hint: str = HINT) -> None:
        self.slot = self.index = self.token = None
        self.border_title, self.border_subtitle = TITLE, ""  # no "top 5" over an empty list
        self.query_one("#inspector-title", Static).update(hint)
        self.query_one("#alternatives", OptionList).clear_options()

    @on(OptionList.OptionSelected, "#alternatives")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if self.token is None or self.slot is None or self.index is None:
            return
        alt = self.token.alternatives[event.option_index]
        self.post_message(AlternativeChosen(self.slot, self.index, alt.token_id))
