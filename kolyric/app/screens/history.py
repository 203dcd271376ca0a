"""This session's candidates, newest first; Enter puts one into the draft again."""

from __future__ import annotations

import time

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList, Static
from textual.widgets.option_list import Option

from kolyric.app.guard import Guarded
from kolyric.app.session import HistoryEntry


class HistoryScreen(Guarded, ModalScreen[int | None]):
    """Dismisses with the index (in ``entries``) of the candidate to accept, or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Close")]
    DEFAULT_CSS = """
    /* the dialog (90% of the screen) keeps its title and help line: the list scrolls within */
    HistoryScreen OptionList { height: auto; max-height: 50vh; border: none; }
    """

    def __init__(self, entries: list[HistoryEntry]) -> None:
        super().__init__()
        self.entries = entries

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Candidates of this session", classes="dialog-title")
            if not self.entries:
                yield Static("Nothing generated yet.", classes="dialog-help")
            options = OptionList(id="history")
            for index in range(len(self.entries) - 1, -1, -1):
                entry = self.entries[index]
                label = Text.assemble(
                    ("✓ " if entry.accepted else "  ", "green"),
                    (entry.text, "bold"),
                    "\n",
                    (
                        f"  {time.strftime('%H:%M:%S', time.localtime(entry.at))} · "
                        f"{entry.polarity or 'no polarity'} · {entry.summary}",
                        "dim",
                    ),
                )
                options.add_option(Option(label, id=f"entry-{index}"))
            yield options
            yield Static("Enter: add to the draft again · Esc: close", classes="dialog-help")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        if options.option_count:
            options.highlighted = 0
        options.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        option_id = event.option.id or ""
        self.dismiss(int(option_id.removeprefix("entry-")))
