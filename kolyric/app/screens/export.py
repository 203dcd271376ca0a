"""Export the draft to a plain .txt file, with how it was made in a ``.kolyric.json`` beside it
(model, controls, and each accepted line's settings and seed). A failure is shown in the
dialog, which stays open.

The dialog offers a dated name in the folder of the last export this session, else in
``config.export_dir()`` (the documents folder's ``kolyric/``, made on the first export); a
name without a folder goes there too, and the notice names both files written. A browser
session (``KOLYRIC_CONFINED_DIR``) may export only inside its folder."""

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

from kolyric.app.config import export_dir, outside_confinement, user_path
from kolyric.app.drafts import export_record, export_text
from kolyric.app.file_safety import describe_os_error
from kolyric.app.guard import Guarded


def default_export_path(folder: Path | None = None) -> str:
    return str((folder or export_dir()) / f"kolyric-{time.strftime('%Y%m%d-%H%M')}.txt")


def export_target(raw: str, folder: Path | None = None) -> Path:
    """The file a typed name means: ``~`` expanded, a name without a folder in the export
    folder, ``.txt`` added when it has no suffix."""
    typed = Path(raw).expanduser()
    path = user_path(typed if typed.is_absolute() else (folder or export_dir()) / typed)
    return path if path.suffix else path.with_suffix(".txt")


class ExportScreen(Guarded, ModalScreen[str | None]):
    """Dismisses with the written path, or None when cancelled."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(
        self, text: str, path: str | None = None, record: dict | None = None, folder: Path | None = None
    ) -> None:
        super().__init__()
        self.text = text
        self.folder = folder or export_dir()  # where a name without a folder goes
        self.path = path or default_export_path(self.folder)
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
        path = export_target(raw, self.folder)
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
                also = f", and how it was made to {export_record(written, self.record).name} beside it"
            except OSError as exc:  # the lyrics are out: say what is missing, do not undo that
                self.notify(
                    f"The settings record beside it could not be written: {describe_os_error(exc)}",
                    title="Record not written",
                    severity="warning",
                    timeout=10,
                )
        self.notify(f"Exported to {written}{also}", title="Draft exported", markup=False)
        self.dismiss(str(written))
