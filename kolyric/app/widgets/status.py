"""The status bar: which model (size, device), what is happening, and whether the draft is saved.

It shows the app's ``status_*`` reactives, so every screen's bar stays in step.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import ProgressBar, Static


class ActivityText(Widget):
    """One line of text that changes often (tokens/s): repaints without a layout pass, which a
    ``Static.update`` would cost on every change."""

    text: reactive[str] = reactive("", layout=False)

    def render(self) -> str:
        return self.text


class StatusBar(Horizontal):
    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; color: $text-muted; }
    StatusBar > Static { width: auto; padding: 0 1; }
    StatusBar #status-model { color: $text; text-style: bold; }
    StatusBar #status-activity { width: 1fr; height: 1; padding: 0 1; }
    StatusBar #status-draft.-unsaved { color: $error; text-style: bold; }
    StatusBar ProgressBar { width: 22; display: none; }
    StatusBar.-busy ProgressBar { display: block; }
    StatusBar ProgressBar Bar { width: 20; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", id="status-model")
        yield ProgressBar(total=None, show_eta=False, show_percentage=False, id="status-progress")
        yield ActivityText(id="status-activity")
        yield Static("", id="status-draft")

    def on_mount(self) -> None:
        app = self.app
        self.watch(app, "status_model", lambda v: self.query_one("#status-model", Static).update(v))
        self.watch(app, "status_activity", lambda v: setattr(self.query_one(ActivityText), "text", v))
        self.watch(app, "status_busy", lambda v: self.set_class(v, "-busy"))
        self.watch(app, "status_draft", self._draft)
        self.watch(app, "status_draft_ok", self._draft)

    def _draft(self, _value: object) -> None:
        draft = self.query_one("#status-draft", Static)
        draft.update(self.app.status_draft)  # type: ignore[attr-defined]
        draft.set_class(not self.app.status_draft_ok, "-unsaved")  # type: ignore[attr-defined]
