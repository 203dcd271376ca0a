"""Export the draft to a plain .txt file, with how it was made in a ``.kolyric.json`` beside it
(model, controls, and each accepted line's settings and seed). A failure is shown in the
dialog, which stays open. A browser session (``KOLYRIC_CONFINED_DIR``) may export only inside
its folder; a relative name is taken there."""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from kolyric.app.config import confined_dir, outside_confinement, user_path
from kolyric.app.drafts import export_record, export_text
from kolyric.app.file_safety import describe_os_error
from kolyric.app.guard import Guarded


def default_export_path() -> str:
    return str((confined_dir() or Path.cwd()) / f"kolyric-{time.strftime('%Y%m%d-%H%M')}.txt")


class ExportScreen(Guarded, ModalScreen[str | None]):
    """Dismisses with the written path, or None when cancelled."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, text: str, path: str | None = None, record: dict | None = None) -> None:
        super().__init__()
        self.text = text
        self.path = path or default_export_path()
        self.record = record

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Export the draft as text", classes="dialog-title")
            yield Input(self.path, id="export-path")
            yield Static("", classes="dialog-error", id="export-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="export-cancel")
                yield Button("Export", id="export-ok", variant="primary")

    def on_mount(self) -> None:
        self.app.settle_cursors(self)

    @on(Button.Pressed, "#export-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted, "#export-path")
    @on(Button.Pressed, "#export-ok")
    def _export(self) -> None:
        raw = self.query_one("#export-path", Input).value.strip()
        error = self.query_one("#export-error", Static)
        if not raw:
            error.update("Give a file name.")
            return
        path = user_path(raw)
        if path.suffix == "":
            path = path.with_suffix(".txt")
        refusal = outside_confinement(path)
        if refusal:
            error.update(Text(f"Not exported: {refusal}."))
            return
        try:
            written = export_text(path, self.text)
        except OSError as exc:
            error.update(Text(f"Could not write {path}: {describe_os_error(exc)}"))
            return
        also = ""
        if self.record is not None:
            try:
                also = f"; how it was made: {export_record(written, self.record).name}"
            except OSError as exc:  # the lyrics are out: say what is missing, do not undo that
                self.notify(
                    f"The settings record beside it could not be written: {describe_os_error(exc)}",
                    title="Record not written",
                    severity="warning",
                    timeout=10,
                )
        self.notify(f"Exported to {written}{also}", title="Draft exported", markup=False)
        self.dismiss(str(written))
