"""The bottom bars: the status bar (which model, what is happening, whether the draft is saved)
and a footer of keys that fits the terminal's width.

The status bar shows the app's ``status_*`` reactives, so every screen's bar stays in step.
"""

from __future__ import annotations

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Footer, ProgressBar

from kolyric.app.guard import Guarded
from kolyric.app.widgets.fit import FittedText, NameFirstText, ellipsize

PALETTE_CELLS = 12  # the command palette's key, docked right: "▏^p palette "


class ActivityText(Guarded, Widget):
    """One line of text that changes often (tokens/s): repaints without a layout pass, which a
    ``Static.update`` would cost on every change; cut with "…" to its width."""

    text: reactive[str] = reactive("", layout=False)

    def render(self) -> str:
        return ellipsize(self.text.replace("\n", " "), self.content_size.width)


class StatusBar(Guarded, Horizontal):
    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; color: $text-muted; }
    StatusBar > FittedText { padding: 0 1; }
    StatusBar #status-model { color: $text; text-style: bold; max-width: 45%; }
    StatusBar #status-draft { max-width: 30%; }
    StatusBar #status-activity { width: 1fr; height: 1; padding: 0 1; }
    StatusBar #status-draft.-unsaved { color: $error; text-style: bold; }
    StatusBar ProgressBar { width: 22; display: none; }
    StatusBar.-busy ProgressBar { display: block; }
    StatusBar ProgressBar Bar { width: 20; }
    """

    def compose(self) -> ComposeResult:
        yield NameFirstText(id="status-model")
        yield ProgressBar(total=None, show_eta=False, show_percentage=False, id="status-progress")
        yield ActivityText(id="status-activity")
        yield FittedText(id="status-draft")

    def on_mount(self) -> None:
        app = self.app
        self.watch(app, "status_model", lambda v: setattr(self.query_one("#status-model", FittedText), "text", v))
        self.watch(app, "status_activity", lambda v: setattr(self.query_one(ActivityText), "text", v))
        self.watch(app, "status_busy", lambda v: self.set_class(v, "-busy"))
        self.watch(app, "status_draft", self._draft)
        self.watch(app, "status_draft_ok", self._draft)

    def _draft(self, _value: object) -> None:
        draft = self.query_one("#status-draft", FittedText)
        draft.text = self.app.status_draft  # type: ignore[attr-defined]
        draft.set_class(not self.app.status_draft_ok, "-unsaved")  # type: ignore[attr-defined]


class FittingFooter(Guarded, Footer):
    """A compact footer that leaves out its least needed keys (``DROP_FIRST``, in order) when
    they would not all fit: Textual's footer would run them under the palette key, garbled.
    Every key stays in the command palette (Ctrl+P)."""

    DROP_FIRST = ("target_line", "history", "pick_model", "switch_mode", "export", "regenerate", "stop")

    def __init__(self) -> None:
        super().__init__(compact=True)
        self._fitted_width = 0

    def compose(self) -> ComposeResult:
        keys = list(super().compose())
        room = self.size.width - PALETTE_CELLS
        if room <= 0:
            yield from keys
            return

        # Footer's keys (FooterKey, not exported by Textual) carry key_display, description and action
        def cells(key: Widget) -> int:  # compact: key, space, description, one cell of margin
            display, description = getattr(key, "key_display", None), getattr(key, "description", "")
            if display is None or key.has_class("-command-palette"):
                return 0
            return cell_len(display) + (1 + cell_len(description) if description else 0) + 1

        def action(key: Widget) -> str:
            return str(getattr(key, "action", "")).split("(")[0]

        used = sum(cells(key) for key in keys)
        dropped: set[int] = set()
        for name in self.DROP_FIRST:
            if used <= room:
                break
            for n, key in enumerate(keys):
                if action(key) == name and n not in dropped:
                    dropped.add(n)
                    used -= cells(key)
        yield from (key for n, key in enumerate(keys) if n not in dropped)

    def on_resize(self) -> None:
        if self.size.width != self._fitted_width:
            self._fitted_width = self.size.width
            self.refresh(recompose=True)
